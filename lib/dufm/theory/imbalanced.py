"""Imbalanced classes: Theorems A1-A3 of the appendix (chapter 10).

Classes have sizes n_1..n_K (N = sum n_c), the fit is (1/N) g(Z) and Lemma 1 is unchanged, so
the reduced loss is ``dufm.losses.reduced_loss_imbalanced`` and every optimisation reuses the
class-size options of ``optimal_matrix_scale`` and ``search_global_optimum``. This module adds:

- ``step_class_sizes``: the (R, rho)-STEP imbalance (majority classes first);
- ``sel_matrix``: the simplex-encoded-label (SEL) matrix, column i of class c equal to column c
  of S = I - (1/K) 1 1^T (rank K-1);
- ``ufm_minimiser``: the global minimiser Z*_lam of the single-layer UFM (L = 1, a convex
  problem), batched over lam, with ``ufm_optimality_residual``, a certificate of its optimality;
- ``ufm_zero_lam``: the weight decay from which Z*_lam is zero (no generalised DNC there);
- ``normalised_distance``: ||Z/||Z|| - T/||T|| ||_F, how far Z*_lam is from the SEL matrix;
- ``generalised_dnc_losses``: the deep reduced loss of "generalised DNC" (Z proportional to
  Z*_lam) at its best scale, for several depths;
- ``best_low_rank``: the best matrix of rank <= r under the deep reduced loss (a rank-constrained
  search), which Theorem A3 compares with generalised DNC;
- ``wins_from``: the depth from which one loss stays strictly below another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..losses import one_hot_labels
from ..structures import expand_classes, simplex_matrix
from ..validation import (
    check_class_sizes,
    check_int,
    check_positive,
    check_sizes,
)
from .optimum import OptimumSearch, search_global_optimum
from .scales import optimal_matrix_scale
from .superiority import circle_gram


def _fail(name: str, value: object, rule: str) -> None:
    raise ValueError(f"{name}={value!r} is not allowed: {rule}")


def step_class_sizes(K: int, R: float, rho: float, n_min: int) -> list:
    """Class sizes of the (R, rho)-STEP imbalance (Appendix A; Theorem A3, chapter 10).

    (1 - rho) K majority classes of size R n_min, then rho K minority classes of size n_min.
    Needs K >= 2, R >= 1, 0 < rho < 1 with rho K a whole number of classes between 1 and K - 1,
    n_min >= 1 and R n_min a whole number. Returns a list of K ints.
    """
    check_sizes(K=K)
    if isinstance(R, bool) or not isinstance(R, int | float) or not math.isfinite(R) or R < 1:
        _fail("R", R, "must be a finite number >= 1 (the majority-to-minority size ratio)")
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0 < rho < 1:
        _fail("rho", rho, "must lie strictly between 0 and 1 (the fraction of minority classes)")
    check_int("n_min", n_min, 1)
    minority = round(rho * K)
    if abs(rho * K - minority) > 1e-9 or not 1 <= minority <= K - 1:
        _fail("rho", rho, f"rho*K must be a whole number of classes between 1 and K-1 (K={K})")
    major = round(R * n_min)
    if abs(R * n_min - major) > 1e-9:
        _fail("R", R, f"R*n_min must be a whole number of samples (n_min={n_min})")
    return [major] * (K - minority) + [n_min] * minority


def sel_matrix(class_sizes, dtype=torch.float64, device=None) -> torch.Tensor:
    """The SEL matrix (K x N): the columns of S = I - (1/K) 1 1^T repeated n_c times per class.

    Rank K - 1; the direction the single-layer UFM minimiser Z*_lam tends to as lam -> 0
    (Appendix A, Theorem A3; chapter 10).
    """
    sizes = check_class_sizes(class_sizes)
    return expand_classes(simplex_matrix(len(sizes), dtype, device), sizes)


def normalised_distance(Z: torch.Tensor, T: torch.Tensor) -> float:
    """||Z/||Z||_F - T/||T||_F||_F for two nonzero matrices of one shape (in [0, 2]).

    How far the single-layer minimiser Z*_lam is from the SEL direction (chapter 10).
    """
    if tuple(Z.shape) != tuple(T.shape):
        raise ValueError(f"Z.shape={tuple(Z.shape)} is not allowed: must equal {tuple(T.shape)}")
    Z, T = Z.double(), T.double()
    nz, nt = torch.linalg.matrix_norm(Z), torch.linalg.matrix_norm(T)
    if float(nz) == 0 or float(nt) == 0:
        raise ValueError("Z is not allowed: both matrices must be nonzero")
    return float(torch.linalg.matrix_norm(Z / nz - T / nt))


def ufm_minimiser(
    class_sizes,
    lams: Sequence[float],
    *,
    starts: int = 2,
    steps: int = 3000,
    seed: int = 0,
    device="cpu",
    dtype="float64",
    progress: bool = True,
) -> OptimumSearch:
    """Z*_lam, the global minimiser of the single-layer UFM with class sizes n_c, for every lam.

    Theorem A3's generalised DNC (chapter 10). With L = 1 the reduced loss
    (1/N) g(Z) + lam ||Z||_* is convex, so the proximal-gradient search of
    ``search_global_optimum`` (batched over the lams, from ``starts`` random starts and the SEL
    direction at its optimal scale) converges to the global minimiser; ``ufm_optimality_residual``
    certifies it. The result's ``logits[c]`` is Z*_lam (K x N) for lams[c], ``best_means[c]``
    its K x K class means.
    """
    sizes = check_class_sizes(class_sizes)
    lams = [check_positive("lam", lam) for lam in lams]
    start = {"SEL": simplex_matrix(len(sizes))}
    return _search(
        sizes, [1] * len(lams), lams, start, None, starts, steps, seed, device, dtype, progress
    )


def ufm_zero_lam(class_sizes) -> float:
    """The weight decay from which the single-layer minimiser Z*_lam is zero (chapter 10).

    The single-layer loss (1/N) g(Z) + lam ||Z||_* is convex and its fit has gradient
    (P - Y)/N at Z = 0, where P = (1/K) 1 1^T; the subdifferential of ||Z||_* at 0 is the unit
    ball of the spectral norm. So Z = 0 is the minimiser exactly when
    lam >= ||Y - (1/K) 1 1^T||_2 / N, the value returned. With n samples in every class it is
    1 / (K sqrt(n)). Theorem A3's generalised DNC (a multiple of Z*_lam) exists only below it.
    """
    sizes = check_class_sizes(class_sizes)
    Y = one_hot_labels(len(sizes), sizes)
    return float(torch.linalg.matrix_norm(Y - 1.0 / len(sizes), ord=2)) / sum(sizes)


def ufm_optimality_residual(Z: torch.Tensor, class_sizes, lam: float, rtol: float = 1e-8):
    """How far Z (K x N) is from satisfying the optimality condition of the single-layer UFM.

    0 is in (1/N)(P - Y) + lam d||Z||_* exactly when, with Z = U diag(s) V^T (rank r, singular
    values above ``rtol`` s_max) and A = -(P - Y)/(N lam): U^T A = V^T, A V = U and the rest
    W = A - U V^T has spectral norm <= 1. Returns (residual, spectral): residual =
    max(||U^T A - V^T||_F, ||A V - U||_F) / sqrt(r) and spectral = ||W||_2. The problem is
    convex, so a small residual with spectral <= 1 certifies a global minimum (Theorem A3's
    Z*_lam; chapter 10).
    """
    K, N = Z.shape
    sizes = check_class_sizes(class_sizes, K=K, N=N)
    check_positive("lam", lam)
    Z = Z.double().cpu()
    Y = one_hot_labels(K, sizes)
    A = -(torch.softmax(Z, dim=0) - Y) / (N * lam)
    U, s, Vh = torch.linalg.svd(Z, full_matrices=False)
    r = int((s > rtol * s.max()).sum()) if float(s.max()) > 0 else 0
    if r == 0:
        return 0.0, float(torch.linalg.matrix_norm(A, ord=2))
    U, V = U[:, :r], Vh[:r].T
    residual = max(
        float(torch.linalg.matrix_norm(U.T @ A - V.T)), float(torch.linalg.matrix_norm(A @ V - U))
    ) / math.sqrt(r)
    spectral = float(torch.linalg.matrix_norm(A - U @ V.T, ord=2))
    return residual, spectral


def generalised_dnc_losses(
    means: torch.Tensor, class_sizes, depths: Sequence[int], lam: float
) -> tuple[list, list]:
    """Deep reduced loss of generalised DNC (Z proportional to Z*_lam) at its best scale.

    ``means``: the K x K class means of Z*_lam (``ufm_minimiser``); for each depth L the scale a
    minimising Lred_L(a Z*_lam) with the class sizes (``optimal_matrix_scale``). Returns
    (scales, losses), one per depth (Theorem A3; chapter 10).
    """
    sizes = check_class_sizes(class_sizes)
    check_positive("lam", lam)
    Z = expand_classes(means.double().cpu(), sizes)
    Z = Z / torch.linalg.matrix_norm(Z)
    scales, losses = [], []
    for L in depths:
        scale, loss = optimal_matrix_scale(Z, check_int("L", L, 1), lam, sizes)
        scales.append(scale)
        losses.append(loss)
    return scales, losses


def best_low_rank(
    class_sizes,
    depths: Sequence[int],
    lams: Sequence[float],
    rank: int = 2,
    *,
    starts: int = 6,
    steps: int = 600,
    seed: int = 0,
    device="cpu",
    dtype="float64",
    progress: bool = True,
) -> OptimumSearch:
    """The best matrix of rank <= ``rank`` under the deep reduced loss, for every (L, lam) pair.

    Theorem A3 (chapter 10) compares generalised DNC (rank K - 1) with low-rank generalised
    diagonally superior matrices; this is the rank-constrained search of ``search_global_optimum``
    (``max_rank``), with the circle Gram matrix (rank 2, diagonally superior) as a structured
    start besides the random ones. ``depths`` and ``lams`` pair up elementwise; whether the result
    is diagonally superior is for the caller to check (``is_diagonally_superior`` of its class
    means with n = 1).
    """
    sizes = check_class_sizes(class_sizes)
    check_int("rank", rank, 1)
    start = {"circle": circle_gram(len(sizes))}
    return _search(
        sizes, list(depths), list(lams), start, rank, starts, steps, seed, device, dtype, progress
    )


def _search(
    sizes, depths, lams, structured, max_rank, starts, steps, seed, device, dtype, progress
):
    """``search_global_optimum`` with class sizes (n = None), one structured start, a rank cap."""
    return search_global_optimum(
        len(sizes), None, depths, lams, starts=starts, structured=structured, steps=steps,
        seed=seed, device=device, dtype=dtype, progress=progress, class_sizes=sizes,
        max_rank=max_rank,
    )  # fmt: skip


def wins_from(depths: Sequence[int], low, high, rtol: float = 1e-9):
    """The first depth from which ``low`` < ``high`` (1 - rtol) at that depth and every later one,
    or None (the depth from which the low-rank matrix wins in Theorem A3; chapter 10)."""
    depths = list(depths)
    if not (len(depths) == len(low) == len(high)):
        raise ValueError(
            f"depths, low and high have lengths {len(depths)}, {len(low)}, {len(high)}: need equal"
        )
    better = [float(a) < float(b) * (1 - rtol) for a, b in zip(low, high, strict=True)]
    return next((L for j, L in enumerate(depths) if all(better[j:])), None)
