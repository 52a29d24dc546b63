"""Theorem 2 and Definition 3: diagonal superiority and the rank ordering with depth (chapter 3).

``column_margins`` and ``is_diagonally_superior`` (Definition 3), the rank-2 construction
``circle_gram`` (q_K = 2), the gamma and L_0 of the proof (``theorem2_gamma``,
``theorem2_regulariser_holds``, ``theorem2_L0``) and a multi-start search for the best worst-column
margin at a given rank (``max_margin_search``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..losses import class_labels, exact_singular_values
from ..validation import (
    check_device,
    check_dtype,
    check_int,
    check_logits,
    check_positive,
    check_sizes,
)

# ----------------------------------------------------------------------------------------------
# Theorem 2 and Definition 3
# ----------------------------------------------------------------------------------------------


def column_margins(M: torch.Tensor, K: int, n: int) -> torch.Tensor:
    """Per-column margin (m_ic)_c - max_{c' != c} (m_ic)_{c'} of M (K x Kn), shape (Kn,).

    Definition 3: M is diagonally superior exactly when every margin is > 0. Columns are in
    class order (n columns of class 1, then class 2, ...). Leading batch dimensions are allowed.
    """
    check_sizes(K=K, n=n)
    if not isinstance(M, torch.Tensor) or M.dim() < 2 or tuple(M.shape[-2:]) != (K, K * n):
        raise ValueError(
            f"M.shape={tuple(getattr(M, 'shape', ()))} is not allowed: must end in (K, K*n) = "
            f"({K}, {K * n})"
        )
    labels = class_labels(K, n, device=M.device)
    cols = torch.arange(K * n, device=M.device)
    true = M[..., labels, cols]
    others = M.clone()
    others[..., labels, cols] = -torch.inf
    return true - others.amax(dim=-2)


def is_diagonally_superior(M: torch.Tensor, K: int, n: int) -> bool:
    """Definition 3: in every column of M (K x Kn) the true class's entry is the strict maximum."""
    return bool((column_margins(M, K, n) > 0).all())


def circle_gram(K: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """X^T X for the K unit vectors x_c = (cos 2 pi c/K, sin 2 pi c/K): the rank-2 construction.

    Entry (c', c) = cos(2 pi (c - c')/K); diagonally superior with margin 1 - cos(2 pi/K) in
    every column, so q_K <= 2 (Section 3.2). Rank 2 for K >= 3 (rank 1 for K = 2).
    """
    check_sizes(K=K)
    theta = 2 * math.pi * torch.arange(K, dtype=torch.float64) / K
    X = torch.stack([torch.cos(theta), torch.sin(theta)])
    return (X.T @ X).to(dtype=dtype, device=device)


def _largest_gap(X: torch.Tensor, K: int, n: int) -> float:
    """max over columns and c' != c of (x_ic)_c - (x_ic)_{c'}: X's largest logit gap."""
    labels = torch.arange(K).repeat_interleave(n)
    cols = torch.arange(K * n)
    true = X[labels, cols]
    others = X.clone()
    others[labels, cols] = torch.inf
    return float((true - others.amin(dim=0)).max())


def theorem2_gamma(X: torch.Tensor, M: torch.Tensor) -> float:
    """The gamma of Theorem 2's proof: the least gamma with gamma * margins(M) >= every gap of X.

    gamma = max_{i,c,c'!=c} [(x_ic)_c - (x_ic)_c'] / min_{i,c,c'!=c} [(m_ic)_c - (m_ic)_c'].
    Then every exponent of the fit of gamma a M is at most every exponent of a X in the same
    column, so g(gamma a M) <= g(a X) for all a >= 0 (strictly for a > 0 as soon as one gap of
    gamma M is strictly larger). M (K x Kn) must be diagonally superior. X, M: (K, Kn).
    """
    K, n = check_logits(X, "X")
    if tuple(M.shape) != tuple(X.shape):
        raise ValueError(f"M.shape={tuple(M.shape)} is not allowed: must equal X.shape")
    worst = float(column_margins(M.double().cpu(), K, n).min())
    if worst <= 0:
        raise ValueError(
            f"M is not allowed: not diagonally superior (worst column margin {worst:.3g} <= 0)"
        )
    return max(_largest_gap(X.double().cpu(), K, n), 0.0) / worst


def _nonzero_singular_values(A: torch.Tensor) -> np.ndarray:
    s = exact_singular_values(A.double().cpu()).numpy()
    return s[s > 0]


def theorem2_regulariser_holds(X: torch.Tensor, M: torch.Tensor, gamma: float, L: int) -> bool:
    """Theorem 2's regulariser comparison at depth L: sum_{i<=q}(gamma nu_i)^{2/(L+1)} <
    sum_{i<=p} mu_i^{2/(L+1)}, nu and mu the nonzero singular values of M and X (the common
    factor a^{2/(L+1)} cancels, so this decides the comparison at every scale a > 0)."""
    check_int("L", L, 1)
    check_positive("gamma", gamma)
    p = 2.0 / (L + 1)
    nu, mu = _nonzero_singular_values(M), _nonzero_singular_values(X)
    return float(np.sum((gamma * nu) ** p)) < float(np.sum(mu**p))


def theorem2_L0(X: torch.Tensor, M: torch.Tensor, gamma: float) -> int:
    """The L_0 of Theorem 2's proof: the last L >= 1 at which the regulariser comparison fails.

    For every L > L_0, g(gamma a M) <= g(a X) and R_L(gamma a M) < R_L(a X) for all a > 0, so
    min_beta Lred_L(beta M) <= min_alpha Lred_L(alpha X). Returns 0 when it never fails. The scan
    stops at a depth beyond which the comparison provably holds: with A = max(1, gamma nu_max),
    B = min(1, mu_min), it holds whenever (2/(L+1)) log(A/B) < log(p/q). Needs rank(M) < rank(X).
    """
    check_positive("gamma", gamma)
    nu, mu = _nonzero_singular_values(M), _nonzero_singular_values(X)
    q, p = len(nu), len(mu)
    if not q < p:
        raise ValueError(f"M is not allowed: rank(M)={q} must be smaller than rank(X)={p}")
    spread = math.log(max(1.0, gamma * nu.max())) - math.log(min(1.0, mu.min()))
    safe = 1 if spread == 0 else max(1, math.floor(2 * spread / math.log(p / q)))
    failing = [L for L in range(1, safe + 1) if not theorem2_regulariser_holds(X, M, gamma, L)]
    return max(failing, default=0)


def max_margin_search(
    K: int,
    rank: int,
    *,
    starts: int = 256,
    steps: int = 1500,
    lr: float = 0.05,
    temperature: float = 0.01,
    seed: int = 0,
    device="cpu",
    dtype="float64",
) -> torch.Tensor:
    """Best normalised worst-column margin of K x K matrices of rank <= ``rank`` (for q_K).

    Maximises a soft minimum (temperature ``temperature``) of the column margins of
    M / ||M||_F over M = U V^T (U, V: K x rank), from ``starts`` Gaussian starts at once (Adam,
    one tensor program). Returns the exact worst-column margin of each start's final
    M / ||M||_F, shape (starts,), float64 on the CPU. A positive value certifies a diagonally
    superior matrix of that rank (Definition 3); for rank 1 and K >= 3 none exists.
    """
    check_sizes(K=K)
    check_int("rank", rank, 1)
    check_int("starts", starts, 1)
    check_int("steps", steps, 0)
    check_positive("lr", lr)
    check_positive("temperature", temperature)
    dev, dt = check_device(device), check_dtype(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    U = torch.randn(starts, K, rank, generator=gen, dtype=torch.float64).to(dev, dt)
    V = torch.randn(starts, K, rank, generator=gen, dtype=torch.float64).to(dev, dt)
    U.requires_grad_(True)
    V.requires_grad_(True)
    eye = torch.eye(K, dtype=torch.bool, device=dev)

    def margins(U, V):
        M = U @ V.transpose(-2, -1)
        M = M / torch.linalg.matrix_norm(M).clamp_min(1e-300).view(-1, 1, 1)
        gaps = torch.diagonal(M, dim1=-2, dim2=-1).unsqueeze(-2) - M  # (m_c - m_c') in column c
        return gaps.masked_fill(eye, torch.inf)

    opt = torch.optim.Adam([U, V], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        gaps = margins(U, V).flatten(1)
        soft_min = -temperature * torch.logsumexp(-gaps / temperature, dim=-1)
        (-soft_min.sum()).backward()
        opt.step()
    with torch.no_grad():
        return margins(U, V).flatten(1).amin(dim=-1).double().cpu()
