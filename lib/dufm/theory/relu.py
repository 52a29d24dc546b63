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
parameters, whose gradient descent stays on ReLU DNC points). What ReLU does at a point:
``relu_clipping`` (the fraction of each layer that ReLU removes), ``relu_dnc_point`` (the
measurements at a ReLU DNC point: DNC residuals, Assumption 1 where ReLU clips, the proof's
t_l, the loss against the linear DNC loss), ``relu_run_summary`` (a Figure-6 run: structure,
distance from DNC, ranks per layer, ReLU activity) and ``figure6_verdict``;
``check_chapter_parameters`` checks chapter 8's parameters. Chapter 8 uses all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..checks import CheckFailed
from ..losses import forward, full_loss
from ..metrics import (
    assumption1_ratios,
    classify_structure,
    critical_point_residual,
    dnc_distance,
    dnc_metrics,
    numerical_rank,
    training_accuracy,
)
from ..structures import expand_classes, pair_matrix, simplex_matrix
from ..validation import (
    check_activation,
    check_choice,
    check_device,
    check_dtype,
    check_each,
    check_int,
    check_int_list,
    check_nonnegative,
    check_number_list,
    check_positive,
    check_sizes,
)
from .scales import _minimise_over_scale, optimal_scale, structure_loss

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


# ----------------------------------------------------------------------------------------------
# What ReLU does at a point, measured (chapter 8: ReLU DNC points and the runs of Figure 6)
# ----------------------------------------------------------------------------------------------


def relu_clipping(params: list) -> list:
    """How much ReLU changes each of its layers: ||H_l - relu(H_l)||_F / ||H_l||_F, l = 2..L.

    ``params`` = [H_1, W_1, ..., W_L] (one run); returns L-1 floats in [0, 1] (0: no entry is
    negative, ReLU is the identity on the layer; nan for H_l = 0). A layer that ReLU changes by
    less than a small fraction behaves as in the linear model: Assumption 1's two ratios then
    differ by at most about that fraction (chapter 8 states its threshold ``clip_rtol``).
    """
    _check_relu_depth(len(params) - 1)
    out = []
    for H in forward(params, "relu")[1:-1]:
        norm = torch.linalg.matrix_norm(H.double())
        removed = torch.linalg.matrix_norm((H - torch.relu(H)).double())
        out.append(float(removed / norm) if norm > 0 else float("nan"))
    return out


def relu_dnc_point(params: list, lam: float, clip_rtol: float, assumption_tol: float) -> dict:
    """Chapter 8's measurements at a ReLU DNC point (a class-symmetric run's parameters).

    ``params`` = [H_1, W_1, ..., W_L] (float64, one run; shapes as ``symmetric_params``).
    Returns a dict:

    - ``alpha``: the scale of Z projected on S kron 1_n^T; ``z_residual``: ||Z - alpha S||/||Z||;
      ``dnc1``, ``dnc2`` (before and after every ReLU), ``dnc3``: the largest over the layers,
      and ``residual`` = max(z_residual, dnc1, dnc2) (Definition 5 without DNC3);
    - ``before``, ``after``, ``shrink``: ``metrics.assumption1_ratios`` (rho before and after
      ReLU and t_l = ||C_after|| / ||C_before||, l = 2..L);
    - ``clip``: ``relu_clipping``; ``clipped``: per layer, clip > ``clip_rtol`` (ReLU changes it);
    - ``holds``: per layer, after >= before - ``assumption_tol``; ``assumption``: in every layer;
      ``assumption_clipped``: in every clipped layer, None where ReLU clips no layer (there the
      comparison says nothing about ReLU);
    - ``shrinks``: t_l <= 1 + ``assumption_tol`` in every layer (what the proof's bound uses);
    - ``loss`` (full ReLU loss), ``linear_dnc_loss`` (the linear DNC reduced loss at this alpha,
      which the proof puts below the loss when ``shrinks``), ``grad``
      (``metrics.critical_point_residual``: 0 at a critical point).
    """
    check_positive("lam", lam)
    check_positive("clip_rtol", clip_rtol)
    check_nonnegative("assumption_tol", assumption_tol)
    K, N = params[-1].shape[0], params[0].shape[1]
    n, L = N // K, len(params) - 1
    _check_relu_depth(L)
    Z = forward(params, "relu")[-1].double()
    S = expand_classes(simplex_matrix(K), n)
    alpha = float((Z * S).sum() / (S * S).sum())
    z_norm = torch.linalg.matrix_norm(Z)
    z_residual = float(torch.linalg.matrix_norm(Z - alpha * S) / z_norm) if z_norm > 0 else 0.0
    ratios = assumption1_ratios(params)
    metrics = dnc_metrics(params, "relu")
    clip = relu_clipping(params)
    clipped = [bool(c > clip_rtol) for c in clip]
    pairs = zip(ratios["after"], ratios["before"], strict=True)
    holds = [bool(a >= b - assumption_tol) for a, b in pairs]
    where = [h for h, c in zip(holds, clipped, strict=True) if c]
    dnc2 = max(ratios["dnc2_before"] + ratios["dnc2_after"])
    return {
        "alpha": alpha,
        "z_residual": z_residual,
        "dnc1": max(metrics["DNC1"]),
        "dnc2": dnc2,
        "dnc3": max(metrics["DNC3"]),
        "residual": max(z_residual, max(metrics["DNC1"]), dnc2),
        "before": ratios["before"],
        "after": ratios["after"],
        "shrink": ratios["centred_shrink"],
        "clip": clip,
        "clipped": clipped,
        "holds": holds,
        "assumption": all(holds),
        "assumption_clipped": all(where) if where else None,
        "shrinks": all(t <= 1.0 + assumption_tol for t in ratios["centred_shrink"]),
        "loss": full_loss(params, lam, activation="relu"),
        "linear_dnc_loss": structure_loss("dnc", K, n, L, lam, max(alpha, 0.0)),
        "grad": critical_point_residual(params, lam, "relu"),
    }


def relu_run_summary(params: list, rank_rtol: float, clip_rtol: float) -> dict:
    """What a gradient-descent run of the deep ReLU UFM ended in (chapter 8, Figure 6's table).

    ``params`` = [H_1, W_1, ..., W_L] (one run; H_1 (d, Kn), W_L (K, d)). Returns a dict:
    ``structure`` and ``dnc_distance`` (``metrics.classify_structure`` and ``metrics.dnc_distance``
    of Z), ``z_rank`` and ``feature_ranks`` (``metrics.numerical_rank`` at ``rank_rtol`` of Z and
    of the feature matrices H_1, ..., H_L, before ReLU), ``relu_ranks`` (of relu(H_2), ...,
    relu(H_L)), ``low_rank`` (per matrix H_1, ..., H_L, Z: rank below K - 1, the rank of DNC's
    centred means, which every layer of a DNC point has at least), ``clip``
    (``relu_clipping``), ``relu_active`` (some layer clipped by more than ``clip_rtol``),
    ``accuracy`` (``metrics.training_accuracy`` of Z; below 1 some class is not yet separated),
    ``zero`` (||Z|| < 1e-8) and ``construction`` (the pair structure with ReLU clipping no layer
    by more than ``clip_rtol``: the theorem's construction up to that tolerance).
    """
    check_positive("rank_rtol", rank_rtol)
    check_positive("clip_rtol", clip_rtol)
    _check_relu_depth(len(params) - 1)
    feats = forward(params, "relu")
    Z = feats[-1].double()
    K = Z.shape[0]
    zero = bool(torch.linalg.matrix_norm(Z) < 1e-8)
    structure = classify_structure(Z).name
    feature_ranks = [numerical_rank(H, rank_rtol) for H in feats[:-1]]
    z_rank = numerical_rank(Z, rank_rtol)
    clip = relu_clipping(params)
    active = any(c > clip_rtol for c in clip)
    return {
        "structure": structure,
        "dnc_distance": float("nan") if zero else dnc_distance(Z),
        "z_rank": z_rank,
        "feature_ranks": feature_ranks,
        "relu_ranks": [numerical_rank(torch.relu(H), rank_rtol) for H in feats[1:-1]],
        "low_rank": [r < K - 1 for r in feature_ranks + [z_rank]],
        "clip": clip,
        "relu_active": active,
        "accuracy": training_accuracy(Z),
        "zero": zero,
        "construction": structure == "pair" and not active,
    }


def figure6_verdict(runs: Sequence[dict], dnc_bound: float) -> str:
    """Figure 6's verdict from its runs: gradient descent finds a low-rank solution below the
    DNC bound.

    Each run is a ``relu_run_summary`` with ``final`` (its last loss) and ``settled``
    (``dufm.checks.loss_settled``). A run is live when it is nonzero and separates every class
    (accuracy 1; a run that does not is stuck on a plateau). "reproduced" when a settled live
    run ends below ``dnc_bound`` with every feature matrix H_1, ..., H_L of rank below K - 1;
    otherwise "not settled" while a nonzero run still moves, else "not reproduced".
    """
    live = [r for r in runs if not r["zero"] and r["accuracy"] == 1.0]
    if any(r["settled"] and r["final"] < dnc_bound and all(r["low_rank"][:-1]) for r in live):
        return "reproduced"
    if any(not r["zero"] and not r["settled"] for r in runs):
        return "not settled"
    return "not reproduced"


CHAPTER_PARAMETERS = (
    "K", "n", "L", "d", "lam", "lr", "activation", "steps", "init", "init_scales", "seeds",
    "record_every", "dnc_seeds", "dnc_init_scale", "dnc_early_steps", "dnc_steps", "check_Ks",
    "check_Ls", "region_K_max", "region_L_max", "construction_tol", "dnc_rtol", "assumption_tol",
    "rank_rtol", "clip_rtol", "settle_rtol", "torch_threads", "device", "dtype",
)  # fmt: skip


def check_chapter_parameters(values) -> None:
    """Check chapter 8's parameters (its ``parameters`` cell) by their own names.

    ``values`` is a mapping holding every name of ``CHAPTER_PARAMETERS`` (e.g. the notebook's
    ``globals()``). A bad value raises ``ValueError`` naming the parameter, its value and what is
    allowed; a missing name is an error too. Nothing is computed before this passes.
    """
    missing = [name for name in CHAPTER_PARAMETERS if name not in values]
    if missing:
        raise ValueError(f"chapter 8's parameters {missing} are missing: give every one")
    v = {name: values[name] for name in CHAPTER_PARAMETERS}
    check_sizes(K=v["K"], n=v["n"], d=v["d"])
    _check_relu_depth(v["L"])  # Theorem 7 needs a ReLU layer: L >= 2
    check_each(check_positive, lam=v["lam"], lr=v["lr"], dnc_init_scale=v["dnc_init_scale"])
    if check_activation(v["activation"]) != "relu":
        raise ValueError(f"activation={v['activation']!r} is not allowed: chapter 8 needs 'relu'")
    check_choice("init", v["init"], ("normal", "fan_in"))
    check_each(check_int, 1, steps=v["steps"], record_every=v["record_every"])
    check_each(check_int, 1, dnc_steps=v["dnc_steps"], torch_threads=v["torch_threads"])
    check_int("dnc_early_steps", v["dnc_early_steps"], 1)
    if v["dnc_early_steps"] >= v["dnc_steps"]:
        raise ValueError(
            f"dnc_early_steps={v['dnc_early_steps']!r} is not allowed: must be below "
            f"dnc_steps={v['dnc_steps']!r} (the runs are measured there and at the end)"
        )
    scales = check_number_list("init_scales", v["init_scales"], positive=True)
    seeds = check_int_list("seeds", v["seeds"], 0)
    if len(scales) != len(seeds):
        raise ValueError(
            f"init_scales has {len(scales)} entries and seeds {len(seeds)}: "
            "give one init scale per seed"
        )
    check_int_list("dnc_seeds", v["dnc_seeds"], 0)
    if v["d"] % v["K"]:
        raise ValueError(
            f"d={v['d']!r} is not allowed: the class-symmetric starts need a multiple of "
            f"K={v['K']!r}"
        )
    Ks = check_int_list("check_Ks", v["check_Ks"], 2)
    if len({K % 2 for K in Ks}) < 2:
        raise ValueError(f"check_Ks={Ks!r} is not allowed: give at least one even and one odd K")
    check_int_list("check_Ls", v["check_Ls"], 2)
    check_int("region_K_max", v["region_K_max"], 4)
    check_int("region_L_max", v["region_L_max"], 2)
    tolerances = ("construction_tol", "dnc_rtol", "rank_rtol", "clip_rtol", "settle_rtol")
    check_each(check_positive, **{name: v[name] for name in tolerances})
    check_nonnegative("assumption_tol", v["assumption_tol"])
    check_device(v["device"])
    check_dtype(v["dtype"])


def dnc_point_summary(mid: Sequence[dict], end: Sequence[dict], zero_alpha: float = 1e-6) -> dict:
    """Chapter 8's counts over the class-symmetric runs, measured mid-way and at the end.

    ``mid`` and ``end``: ``relu_dnc_point`` dicts (``end`` with ``settled`` and ``moved`` from
    ``dufm.checks``); points with alpha <= ``zero_alpha`` are the zero point and left out.
    Returns ``nonzero`` (every nonzero point of both stages), ``mid`` and ``ends`` (the nonzero
    ones of each stage), ``mid_clipped`` (ReLU clips a layer), ``mid_failed`` (Assumption 1
    fails in a clipped layer), ``largest_drop`` ((rho before, rho after) of the largest drop in a
    clipped layer, or None), ``settled`` and ``moving`` (end points), ``settled_clipped`` (settled
    points where ReLU clips a layer), ``shrinking`` (t_l <= 1: the points the bound covers) and
    ``assumed`` (Assumption 1 in every layer), all lists of the given dicts.
    """
    mid_nonzero = [p for p in mid if p["alpha"] > zero_alpha]
    ends = [p for p in end if p["alpha"] > zero_alpha]
    nonzero = mid_nonzero + ends
    mid_clipped = [p for p in mid_nonzero if p["assumption_clipped"] is not None]
    drops = [
        (b - a, b, a)
        for p in mid_clipped
        for b, a, c, h in zip(p["before"], p["after"], p["clipped"], p["holds"], strict=True)
        if c and not h
    ]
    settled = [p for p in ends if p["settled"]]
    return {
        "nonzero": nonzero,
        "mid": mid_nonzero,
        "ends": ends,
        "mid_clipped": mid_clipped,
        "mid_failed": [p for p in mid_clipped if p["assumption_clipped"] is False],
        "largest_drop": max(drops)[1:] if drops else None,
        "settled": settled,
        "moving": [p for p in ends if not p["settled"]],
        "settled_clipped": [p for p in settled if p["assumption_clipped"] is not None],
        "shrinking": [p for p in nonzero if p["shrinks"]],
        "assumed": [p for p in nonzero if p["assumption"]],
    }
