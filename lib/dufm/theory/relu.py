"""Theorem 7 (the deep ReLU UFM): the DNC lower bound's rival, its region, and ReLU DNC points.

The deep ReLU UFM is H_2 = W_1 H_1, H_{l+1} = W_l relu(H_l), Z = W_L relu(H_L) (chapter 8).
Under Assumption 1 every ReLU DNC solution costs at least the best linear DNC loss,
``optimal_scale("dnc", K, n, L, lam)`` (the "DNC bound"; it is not written again here). The
theorem then beats that bound with a non-negative low-rank construction, for which ReLU is
inactive in every layer:

- K = 2m: Xbar = blockdiag of m blocks [[1, -1], [-1, 1]], Ybar = 1 1^T;
- K = 2m+1: the same blocks and a trailing 2 on Xbar's diagonal, Ybar = 1 1^T on the first K-1
  classes only;

H_l = phi_l (Xbar + Ybar) kron 1_n^T (entries 0, 1, 2), W_l = psi Xbar + chi Ybar in the middle
layers (chi = 2 psi / K, or 2 psi / (K-1) for odd K), W_L = psi_L [Xbar, 0], and H_1, W_1 the
balanced factorisation of H_2 = W_1 H_1. Xbar^2 = 2 Xbar, Xbar Ybar = Ybar Xbar = 0 and
Ybar^2 = K Ybar (K-1 for odd K) give phi_{l+1} = 2 psi phi_l; all L+1 Frobenius norms are equal
when psi_L and phi_2 are as in ``construction_params``. The output is Z = gamma Xbar kron 1_n^T.

Public names: ``theorem7_construction_wins`` (the equal-scale condition), the stated regions
(main text and appendix), ``construction_matrices``, ``construction_params``,
``construction_scale``, ``construction_fit``, ``construction_loss``, ``optimal_construction``
(float64, in the style of ``optimal_scale``), ``construction_measurements`` and
``check_construction`` (the four checks with the real ReLU forward pass),
``theorem7_maps`` (the region tables) and ``symmetric_params`` (class-permutation-symmetric
parameters, whose gradient descent stays on ReLU DNC points). Chapter 8 uses all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..checks import CheckFailed
from ..losses import forward, full_loss
from ..structures import expand_classes, pair_matrix
from ..validation import check_int, check_nonnegative, check_positive, check_sizes
from .scales import _minimise_over_scale, optimal_scale

DTYPE = torch.float64


def _check_relu_depth(L: object) -> int:
    """L >= 2: the construction needs at least one ReLU (L = 1 is the linear UFM)."""
    if isinstance(L, bool) or not isinstance(L, int) or L < 2:
        raise ValueError(
            f"L={L!r} is not allowed: the ReLU construction needs an integer L >= 2 "
            "(with L = 1 there is no ReLU layer)"
        )
    return L


def _constants(K: int) -> tuple[float, float]:
    """(c, x2) of the construction: ||W_l||_F^2 = 2 c psi^2 for a middle layer, ||Xbar||_F^2 = x2.

    Even K: c = K + 2, x2 = 2K. Odd K: c = K + 3, x2 = 2(K + 1).
    """
    return (K + 2.0, 2.0 * K) if K % 2 == 0 else (K + 3.0, 2.0 * (K + 1))


def theorem7_construction_wins(K: int, L: int) -> bool:
    """Theorem 7's equal-scale condition: the construction beats every DNC point of equal margin.

    Even K: 2(K+2) < (K-1) 2^{2(L-1)/(L+1)} ((K+2)/K)^{3/(L+1)}. Odd K: 2(K+3) < (K-1)
    2^{2(L-1)/(L+1)} ((K+3)^3 / ((K+1) K^2))^{1/(L+1)}. When it holds, the construction's
    output gamma Xbar kron 1_n^T has, at gamma = alpha, a smaller fit and a smaller regulariser
    than the linear DNC reduced loss at scale alpha, for every alpha > 0 (chapter 8's region
    tables). K >= 2, L >= 2.
    """
    check_sizes(K=K)
    _check_relu_depth(L)
    p = 1.0 / (L + 1)
    if K % 2 == 0:
        return 2 * (K + 2) < (K - 1) * 2.0 ** (2 * (L - 1) * p) * ((K + 2) / K) ** (3 * p)
    return 2 * (K + 3) < (K - 1) * 2.0 ** (2 * (L - 1) * p) * ((K + 3) ** 3 / ((K + 1) * K**2)) ** p


def theorem7_stated_region(K: int, L: int) -> bool:
    """The region printed in Theorem 7 (main text): L = 4 and K >= 16, or L >= 5 and K >= 10."""
    check_sizes(K=K)
    _check_relu_depth(L)
    return (L == 4 and K >= 16) or (L >= 5 and K >= 10)


def theorem7_appendix_region(K: int, L: int) -> bool:
    """The region of Theorem 7's appendix proof: L = 4 and K even >= 14 or odd >= 17, or
    L >= 5 and K even >= 10 or odd >= 11."""
    check_sizes(K=K)
    _check_relu_depth(L)
    if L == 4:
        return K >= 14 if K % 2 == 0 else K >= 17
    if L >= 5:
        return K >= 10 if K % 2 == 0 else K >= 11
    return False


def construction_matrices(K: int, dtype=DTYPE, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Xbar, Ybar), both K x K, of Theorem 7's construction (module docstring)."""
    check_sizes(K=K)
    X = pair_matrix(K, dtype, device)
    Y = torch.ones(K, K, dtype=dtype, device=device)
    if K % 2 == 1:
        X[K - 1, K - 1] = 2.0
        Y[K - 1, :] = 0.0
        Y[:, K - 1] = 0.0
    return X, Y


def _gamma_per_psi(K: int, n: int, L: int) -> float:
    """gamma at psi = 1: 2^{L-1} sqrt(2c / x2) c / (K sqrt(n))."""
    c, x2 = _constants(K)
    return 2.0 ** (L - 1) * math.sqrt(2 * c / x2) * c / (K * math.sqrt(n))


def construction_scale(K: int, n: int, L: int, psi: float) -> float:
    """The output scale gamma of the construction with middle-layer scale psi:
    Z = gamma Xbar kron 1_n^T, gamma = 2^{L-1} psi^{L+1} sqrt(2c/x2) c / (K sqrt n)
    (even K: 2^{L-1} psi^{L+1} ((K+2)/K)^{3/2} / sqrt(n))."""
    check_sizes(K=K, n=n)
    _check_relu_depth(L)
    check_nonnegative("psi", psi)
    return _gamma_per_psi(K, n, L) * psi ** (L + 1)


def construction_psi(K: int, n: int, L: int, gamma: float) -> float:
    """The psi whose construction has output scale gamma (inverse of ``construction_scale``)."""
    check_sizes(K=K, n=n)
    _check_relu_depth(L)
    check_nonnegative("gamma", gamma)
    return (gamma / _gamma_per_psi(K, n, L)) ** (1.0 / (L + 1))


def construction_params(
    K: int, n: int, L: int, d: int, psi: float = 1.0, dtype=DTYPE, device=None
) -> list:
    """Theorem 7's non-negative construction as parameters [H_1, W_1, ..., W_L].

    Shapes: H_1 (d, Kn), W_l (d, d) for l < L, W_L (K, d); the construction lives in the first
    K coordinates (zero padding beyond). With c, x2 as in the module docstring:
    H_{l} = phi_l (Xbar + Ybar) kron 1_n^T for l >= 2 with phi_2 = psi^2 c / (K sqrt n),
    W_l = psi Xbar + chi Ybar (1 < l < L), W_L = psi sqrt(2c / x2) Xbar, and
    H_2 = U diag(s) V^T split evenly: H_1 = diag(s)^{1/2} V^T, W_1 = U diag(s)^{1/2}. Every matrix
    then has squared Frobenius norm 2 c psi^2, and Z = ``construction_scale`` * Xbar kron 1_n^T.
    """
    check_sizes(K=K, n=n, d=d)
    _check_relu_depth(L)
    check_nonnegative("psi", psi)
    c, x2 = _constants(K)
    X, Y = construction_matrices(K, DTYPE)
    chi = 2.0 / (K if K % 2 == 0 else K - 1)
    phi2 = psi**2 * c / (K * math.sqrt(n))
    H2 = phi2 * expand_classes(X + Y, n)  # (K, Kn)
    U, s, Vh = torch.linalg.svd(H2, full_matrices=False)
    root = s.sqrt()
    H1 = torch.zeros(d, K * n, dtype=DTYPE)
    H1[:K] = root.unsqueeze(1) * Vh
    W1 = torch.zeros(d, d, dtype=DTYPE)
    W1[:K, :K] = U * root
    params = [H1, W1]
    for _ in range(2, L):
        W = torch.zeros(d, d, dtype=DTYPE)
        W[:K, :K] = psi * (X + chi * Y)
        params.append(W)
    WL = torch.zeros(K, d, dtype=DTYPE)
    WL[:, :K] = psi * math.sqrt(2 * c / x2) * X
    params.append(WL)
    return [P.to(dtype=dtype, device=device) for P in params]


def construction_fit(K: int, gamma):
    """Mean cross-entropy of Z = gamma Xbar kron 1_n^T (any n), vectorised over gamma >= 0.

    A paired class beats its partner by 2 gamma and the other K-2 classes by gamma:
    log(1 + e^{-2g} + (K-2) e^{-g}). For odd K the unpaired class beats all by 2 gamma:
    log(1 + (K-1) e^{-2g}), with weight 1/K.
    """
    check_sizes(K=K)
    g = np.asarray(gamma, dtype=np.float64)
    pair = np.log1p(np.exp(-2 * g) + (K - 2) * np.exp(-g))
    if K % 2 == 0:
        out = pair
    else:
        out = ((K - 1) * pair + np.log1p((K - 1) * np.exp(-2 * g))) / K
    return float(out) if out.ndim == 0 else out


def _construction_fit_derivative(K: int, g: np.ndarray) -> np.ndarray:
    e1, e2 = np.exp(-g), np.exp(-2 * g)
    pair = -(2 * e2 + (K - 2) * e1) / (1 + e2 + (K - 2) * e1)
    if K % 2 == 0:
        return pair
    last = -2 * (K - 1) * e2 / (1 + (K - 1) * e2)
    return ((K - 1) * pair + last) / K


def _construction_weight(K: int, n: int, L: int) -> float:
    """w with regulariser (lam/2)(L+1) w gamma^{2/(L+1)}: 2c / gamma(psi=1)^{2/(L+1)}."""
    c, _ = _constants(K)
    return 2 * c * _gamma_per_psi(K, n, L) ** (-2.0 / (L + 1))


def construction_loss(K: int, n: int, L: int, lam: float, gamma):
    """Closed-form deep-UFM loss of the construction with output scale gamma (Theorem 7).

    ``construction_fit(K, gamma) + (lam/2)(L+1) 2 c psi^2`` with psi from gamma: the L+1 matrices
    have equal squared norms 2 c psi^2. Equals ``full_loss(construction_params(...), lam,
    activation="relu")`` (tests/test_theory_relu.py). ``gamma`` may be an array.
    """
    check_sizes(K=K, n=n)
    _check_relu_depth(L)
    check_positive("lam", lam)
    g = np.asarray(gamma, dtype=np.float64)
    reg = 0.5 * lam * (L + 1) * _construction_weight(K, n, L) * g ** (2.0 / (L + 1))
    out = construction_fit(K, g) + reg
    return float(out) if np.ndim(out) == 0 else out


def optimal_construction(K: int, n: int, L: int, lam: float) -> tuple[float, float]:
    """Global minimiser over gamma >= 0 of ``construction_loss``: (gamma, loss), float64.

    The same one-dimensional minimiser as ``optimal_scale`` (dense log bracket, Brent refinement
    of each local minimum, comparison with gamma = 0). Compare with the DNC bound
    ``optimal_scale("dnc", K, n, L, lam)`` (chapter 8's own-scale region table, Figure 6).
    """
    check_sizes(K=K, n=n)
    _check_relu_depth(L)
    check_positive("lam", lam)
    return _minimise_over_scale(
        lambda g: np.asarray(construction_fit(K, g)),
        lambda g: _construction_fit_derivative(K, np.asarray(g)),
        _construction_weight(K, n, L),
        L,
        lam,
    )


def construction_measurements(params: list, lam: float, gamma: float) -> dict:
    """The four measured properties of a construction, with the real ReLU forward pass.

    ``params`` = [H_1, W_1, ..., W_L] (float64, one run); ``gamma`` the claimed output scale.
    Returns
    - ``negative``: the most negative pre-activation entry of H_2..H_L relative to the largest
      entry (0 when ReLU is inactive everywhere);
    - ``norm_spread``: (max - min) / max of the L+1 Frobenius norms;
    - ``output_error``: ||Z - gamma Xbar kron 1_n^T||_F / ||gamma Xbar kron 1_n^T||_F;
    - ``loss_error``: |full_loss(relu) - construction_loss(gamma)| / construction_loss(gamma).
    """
    K, N = params[-1].shape[0], params[0].shape[1]
    n, L = N // K, len(params) - 1
    _check_relu_depth(L)
    feats = forward(params, "relu")
    hidden = torch.cat([H.flatten() for H in feats[1:-1]])
    negative = float((-hidden).clamp_min(0).max() / hidden.abs().max())
    norms = torch.stack([torch.linalg.matrix_norm(P.double()) for P in params])
    X, _ = construction_matrices(K, DTYPE, params[0].device)
    target = gamma * expand_classes(X, n)
    closed = construction_loss(K, n, L, lam, gamma)
    return {
        "negative": negative,
        "norm_spread": float((norms.max() - norms.min()) / norms.max()),
        "output_error": float(
            torch.linalg.matrix_norm(feats[-1].double() - target) / torch.linalg.matrix_norm(target)
        ),
        "loss_error": abs(full_loss(params, lam, activation="relu") - closed) / closed,
    }


def check_construction(params: list, lam: float, gamma: float, tol: float = 1e-12) -> dict:
    """Theorem 7's construction checks: ReLU inactive (no negative pre-activation), equal norms,
    Z = gamma Xbar kron 1_n^T and full loss = closed form, each to ``tol`` (relative).

    Returns ``construction_measurements``; raises ``CheckFailed`` naming every failed property.
    """
    check_positive("tol", tol)
    measured = construction_measurements(params, lam, gamma)
    failed = {k: v for k, v in measured.items() if not v <= tol}
    if failed:
        text = ", ".join(f"{k} = {v:.3e}" for k, v in failed.items())
        raise CheckFailed(f"construction checks failed (tolerance {tol:.1e}): {text}")
    return measured


def theorem7_maps(Ks: Sequence[int], Ls: Sequence[int], n: int, lam: float) -> dict:
    """Chapter 8's region tables (rows K, columns L), arrays of shape (len(Ks), len(Ls)).

    ``equal_scale`` (``theorem7_construction_wins``), ``stated`` (main text),
    ``appendix`` (appendix), ``dnc_bound`` and ``construction`` (each at its own optimal scale:
    ``optimal_scale("dnc", ...)``, ``optimal_construction``), ``own_scale`` (bool: the
    construction's optimum is below the DNC bound and nonzero).
    """
    check_sizes(n=n)
    check_positive("lam", lam)
    shape = (len(Ks), len(Ls))
    out = {key: np.zeros(shape, dtype=bool) for key in ("equal_scale", "stated", "appendix")}
    out |= {key: np.zeros(shape) for key in ("dnc_bound", "construction")}
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            out["equal_scale"][i, j] = theorem7_construction_wins(K, L)
            out["stated"][i, j] = theorem7_stated_region(K, L)
            out["appendix"][i, j] = theorem7_appendix_region(K, L)
            out["dnc_bound"][i, j] = optimal_scale("dnc", K, n, L, lam)[1]
            gamma, loss = optimal_construction(K, n, L, lam)
            out["construction"][i, j] = loss if gamma > 0 else np.inf
    out["own_scale"] = out["construction"] < out["dnc_bound"]
    return out


# ----------------------------------------------------------------------------------------------
# ReLU DNC points: parameters symmetric under permutations of the classes
# ----------------------------------------------------------------------------------------------


def symmetric_params(
    K: int, n: int, L: int, copies: int, seed: int, scale: float = 1.0, dtype=DTYPE, device=None
) -> list:
    """Random deep-UFM parameters [H_1, W_1, ..., W_L] equivariant under class permutations.

    The width is d = copies * K: the feature space is ``copies`` copies of R^K, on which a class
    permutation P acts by permuting the coordinates of every copy. Every K x K block of
    H_1's class means and of each W_l is a I + b 1 1^T (random a, b ~ N(0, scale^2)); H_1 has
    collapsed classes (H_1 = M_1 kron 1_n^T); W_L's blocks are centred (1^T W_L = 0).

    Equivariance makes every layer's class-mean Gram matrix, before and after ReLU (which
    commutes with coordinate permutations), of the form a I + b 1 1^T, so the centred means form
    a simplex; with 1^T W_L = 0 the output is Z = a S kron 1_n^T. Gradient descent keeps all of
    this (the loss is permutation invariant and the fit gradient has 1^T G_Z = 0), so its
    critical points are ReLU DNC points (Definition 5, DNC1-2 and Z proportional to S; chapter 8).
    Shapes: H_1 (d, Kn), W_l (d, d), W_L (K, d).
    """
    check_sizes(K=K, n=n, L=L)
    check_int("copies", copies, 1)
    check_int("seed", seed, 0)
    check_positive("scale", scale)
    gen = torch.Generator().manual_seed(seed)
    eye, ones = torch.eye(K, dtype=DTYPE), torch.ones(K, K, dtype=DTYPE)

    def block_matrix(rows: int, cols: int) -> torch.Tensor:
        coef = torch.randn(rows, cols, 2, generator=gen, dtype=DTYPE) * scale
        blocks = coef[..., 0, None, None] * eye + coef[..., 1, None, None] * ones / K
        return blocks.permute(0, 2, 1, 3).reshape(rows * K, cols * K)

    H1 = expand_classes(block_matrix(copies, 1), n)
    Ws = [block_matrix(copies, copies) for _ in range(L - 1)]
    WL = block_matrix(1, copies)
    WL = WL - WL.mean(dim=0, keepdim=True)
    return [P.to(dtype=dtype, device=device) for P in [H1, *Ws, WL]]
