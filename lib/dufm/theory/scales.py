"""Theorem 1 and the scale problem of Theorems 4(i) and 6: the two structures in closed form.

Everything works on the reduced loss of Lemma 1,
Lred_L(Z) = (1/(Kn)) g(Z) + (lam/2)(L+1) sum_i s_i(Z)^{2/(L+1)}, for logit matrices Z (K x Kn).

- closed-form fit and regulariser of the DNC structure (Definition 2) and of the pair structure of
  Eq. (5) (``structure_fit``, ``structure_regulariser``, ``structure_loss``), the equal-scale
  inequality of Theorem 1 (``theorem1_holds``) and its stated region;
- the global minimisation of a structure over its own scale (``optimal_scale``, ``theorem1_maps``;
  chapters 2 and 5), of any fixed direction (``optimal_matrix_scale``; chapter 3) and of a mixture's
  blocks (``optimal_mixture``; chapter 5);
- every critical scale of a structure, the roots of Eq. 19 and Eq. 27 (``critical_scales``;
  chapter 6).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import brentq

from ..losses import class_labels, exact_singular_values, mean_cross_entropy, reduced_loss
from ..structures import check_structure, expand_classes, mixture_components
from ..validation import (
    check_int,
    check_logits,
    check_nonnegative,
    check_positive,
    check_sizes,
)

GRID_POINTS = 4000  # log-spaced scales in the dense bracket of the 1-D minimisations


def _scales(scale) -> np.ndarray:
    """A float64 array of scales >= 0 (a scalar gives a 0-d array); errors name `scale`."""
    arr = np.asarray(scale, dtype=np.float64)
    bad = arr[~(np.isfinite(arr) & (arr >= 0))]
    if bad.size:
        check_nonnegative("scale", float(bad.flat[0]))
    return arr


def _out(arr: np.ndarray):
    return float(arr) if arr.ndim == 0 else arr


# ----------------------------------------------------------------------------------------------
# Theorem 1: the two structures in closed form
# ----------------------------------------------------------------------------------------------


def theorem1_holds(K: int, L: int) -> bool:
    """The equal-scale inequality of Theorem 1's proof: m 2^{2/(L+1)} < 2m - 1, m = floor(K/2).

    When it holds, the pair structure of Eq. (5) has a smaller fit and a smaller regulariser than
    DNC at every common scale, so no DNC solution is a global minimum (both parities of K).
    """
    check_sizes(K=K, L=L)
    m = K // 2
    return m * 2.0 ** (2.0 / (L + 1)) < 2 * m - 1


def theorem1_stated_region(K: int, L: int) -> bool:
    """The region printed in Theorem 1: K >= 4 and L >= 3, or K >= 6 and L = 2."""
    check_sizes(K=K, L=L)
    return (K >= 4 and L >= 3) or (K >= 6 and L == 2)


def structure_fit(structure: str, K: int, scale):
    """Closed-form fit term (1/(Kn)) g(Z) of a structure at a scale (Theorem 1's proof).

    DNC (Definition 2): log(1 + (K-1) e^{-a}). Pair structure (Eq. 5), K = 2m:
    log(1 + e^{-2b} + (K-2) e^{-b}); K = 2m+1: [(K-1) log(1 + e^{-2b} + (K-2) e^{-b})
    + log(1 + (K-1) e^{-b})] / K. Independent of n. ``scale`` may be an array.
    """
    check_structure(structure)
    check_sizes(K=K)
    a = _scales(scale)
    dnc = np.log1p((K - 1) * np.exp(-a))
    if structure == "dnc":
        return _out(dnc)
    pair = np.log1p(np.exp(-2 * a) + (K - 2) * np.exp(-a))
    if K % 2 == 0:
        return _out(pair)
    return _out(((K - 1) * pair + dnc) / K)


def _structure_fit_derivative(structure: str, K: int, a: np.ndarray) -> np.ndarray:
    e = np.exp(-a)
    dnc = -(K - 1) * e / (1 + (K - 1) * e)  # = -(K-1)/(e^a + K - 1), without overflow
    if structure == "dnc":
        return dnc
    e1, e2 = np.exp(-a), np.exp(-2 * a)
    pair = -(2 * e2 + (K - 2) * e1) / (1 + e2 + (K - 2) * e1)
    return pair if K % 2 == 0 else ((K - 1) * pair + dnc) / K


def structure_singular_values(structure: str, K: int, n: int) -> np.ndarray:
    """Nonzero singular values of the structure's Z (K x Kn) at scale 1.

    DNC: sqrt(n), K-1 times. Pair structure: 2 sqrt(n), floor(K/2) times, plus sqrt(n) for odd K.
    """
    check_structure(structure)
    check_sizes(K=K, n=n)
    root = math.sqrt(n)
    if structure == "dnc":
        return np.full(K - 1, root)
    values = [2 * root] * (K // 2) + ([root] if K % 2 else [])
    return np.asarray(values)


def _structure_weight(structure: str, K: int, n: int, L: int) -> float:
    """sum_i s_i^{2/(L+1)} over the structure's nonzero singular values at scale 1."""
    return float(np.sum(structure_singular_values(structure, K, n) ** (2.0 / (L + 1))))


def structure_regulariser(structure: str, K: int, n: int, L: int, lam: float, scale):
    """Closed-form regulariser (lam/2)(L+1) sum_i s_i(Z)^{2/(L+1)} of a structure at a scale.

    DNC: (lam/2)(L+1)(K-1)(a sqrt n)^{2/(L+1)}. Pair structure: (lam/2)(L+1)[m (2b sqrt n)^{2/(L+1)}
    + (b sqrt n)^{2/(L+1)} for odd K] (Theorem 1's proof). ``scale`` may be an array.
    """
    check_sizes(K=K, n=n, L=L)
    check_positive("lam", lam)
    a = _scales(scale)
    p = 2.0 / (L + 1)
    weight = _structure_weight(structure, K, n, L)
    return _out(0.5 * lam * (L + 1) * weight * a**p)


def structure_loss(structure: str, K: int, n: int, L: int, lam: float, scale):
    """Reduced loss of the structure at a scale: ``structure_fit + structure_regulariser``."""
    fit = structure_fit(structure, K, scale)
    return _out(np.asarray(fit + structure_regulariser(structure, K, n, L, lam, scale)))


# ----------------------------------------------------------------------------------------------
# One-dimensional global minimisation over the scale
# ----------------------------------------------------------------------------------------------


def _scale_problem(fit, dfit, weight: float, L: int, lam: float, grid_points: int = GRID_POINTS):
    """(grid, loss, slope) of the 1-D problem fit(a) + c a^p, c = (lam/2)(L+1) weight,
    p = 2/(L+1): a dense log grid that holds every critical scale, the loss and its derivative
    (both vectorised over a).

    The regulariser alone exceeds fit(0) beyond a_max = (fit(0)/c)^{1/p}, so every minimiser
    lies in [0, a_max]; the grid covers [1e-12 min(1, a_max), 2 a_max] with at least 150 points a
    decade (beyond a_max the loss only grows: fit is decreasing and bounded below by 0).
    """
    p = 2.0 / (L + 1)
    c = 0.5 * lam * (L + 1) * weight
    upper = (float(fit(np.zeros(1))[0]) / c) ** (1.0 / p)
    lower = 1e-12 * min(1.0, upper)
    points = max(grid_points, int(150 * math.log10(2 * upper / lower)))

    def loss(a):
        return fit(a) + c * np.asarray(a) ** p

    def slope(a):
        return dfit(np.asarray(a)) + c * p * np.asarray(a) ** (p - 1)

    return np.geomspace(lower, 2 * upper, points), loss, slope


def _root(slope, lo: float, hi: float) -> float:
    """The root of ``slope`` in [lo, hi] (a sign change) to machine precision, Brent's method."""
    return brentq(
        lambda x: float(slope(np.asarray([x]))[0]),
        lo,
        hi,
        xtol=1e-300,
        rtol=4 * np.finfo(float).eps,
        maxiter=500,
    )


def _minimise_over_scale(
    fit: Callable[[np.ndarray], np.ndarray],
    dfit: Callable[[np.ndarray], np.ndarray],
    weight: float,
    L: int,
    lam: float,
) -> tuple[float, float]:
    """Global minimum over a >= 0 of fit(a) + c a^p (``_scale_problem``).

    Every local minimum on the grid (there can be one near 0 and one at a large scale) is
    refined by Brent's method on the derivative and the best is compared with a = 0, which wins
    ties.
    """
    grid, loss, slope = _scale_problem(fit, dfit, weight, L, lam)
    values = loss(grid)
    inner = np.flatnonzero((values[1:-1] <= values[:-2]) & (values[1:-1] <= values[2:])) + 1
    best_scale, best_loss = 0.0, float(fit(np.zeros(1))[0])
    for i in inner[np.argsort(values[inner])][:8]:
        lo, hi = grid[i - 1], grid[i + 1]
        x = grid[i]
        if slope(np.asarray([lo]))[0] < 0 < slope(np.asarray([hi]))[0]:
            x = _root(slope, lo, hi)
        value = float(loss(np.asarray([x]))[0])
        if value < best_loss:
            best_scale, best_loss = float(x), value
    return best_scale, best_loss


def critical_scales(structure: str, K: int, n: int, L: int, lam: float) -> np.ndarray:
    """Every scale > 0 at which the structure is a critical point (Theorem 4(i); Eq. 19, 27).

    The roots, in increasing order, of d/da of the structure's reduced loss: sign changes of the
    derivative on the grid of ``_scale_problem``, refined by Brent's method. For DNC with L >= 2
    and small lam there are two, a small one and a large one that diverges like -log(lam) as
    lam -> 0; for L = 1 there is one; none when lam is too large.
    """
    check_structure(structure)
    check_sizes(K=K, n=n, L=L)
    check_positive("lam", lam)
    grid, _, slope = _scale_problem(
        lambda a: np.asarray(structure_fit(structure, K, a)),
        lambda a: _structure_fit_derivative(structure, K, a),
        _structure_weight(structure, K, n, L),
        L,
        lam,
    )
    values = slope(grid)
    changes = np.flatnonzero(np.sign(values[:-1]) != np.sign(values[1:]))
    return np.asarray([_root(slope, grid[i], grid[i + 1]) for i in changes])


def optimal_scale(structure: str, K: int, n: int, L: int, lam: float) -> tuple[float, float]:
    """Global minimiser over scale >= 0 of the structure's reduced loss: (scale, loss).

    ``structure`` is "dnc" (Definition 2, scale alpha) or "pair" (the pair structure of
    Eq. 5, scale beta). The scale is 0 (and the loss log K) when the zero matrix is best. Serves
    Theorem 1 (comparison after optimising each structure over its own scale) and Figure 1's
    reference lines; the large root satisfies the critical-point equations (Eq. 19, Eq. 27).
    """
    check_structure(structure)
    check_sizes(K=K, n=n, L=L)
    check_positive("lam", lam)
    weight = _structure_weight(structure, K, n, L)
    return _minimise_over_scale(
        lambda a: np.asarray(structure_fit(structure, K, a)),
        lambda a: _structure_fit_derivative(structure, K, a),
        weight,
        L,
        lam,
    )


def optimal_matrix_scale(M: torch.Tensor, L: int, lam: float) -> tuple[float, float]:
    """Global minimiser over a >= 0 of Lred_L(a M) for a fixed direction M (K x Kn): (a, loss).

    The min_alpha Lred_L(alpha X) of Theorem 2, for any X. Scale 0 (loss log K) when zero wins.
    """
    check_logits(M, "M")
    check_int("L", L, 1)
    check_positive("lam", lam)
    Md = M.detach().double().cpu()
    K, N = Md.shape
    labels = class_labels(K, N // K)
    true = Md[labels, torch.arange(N)]  # (N,)

    def fit(a):
        Z = torch.as_tensor(a, dtype=torch.float64).view(-1, 1, 1) * Md
        return mean_cross_entropy(Z).numpy()

    def dfit(a):
        Z = torch.as_tensor(a, dtype=torch.float64).view(-1, 1, 1) * Md
        P = torch.softmax(Z, dim=-2)
        return ((P * Md).sum(dim=-2) - true).mean(dim=-1).numpy()

    sv = exact_singular_values(Md)
    sv = sv[sv > 0]
    if sv.numel() == 0:
        return 0.0, math.log(K)
    weight = float(sv.pow(2.0 / (L + 1)).sum())
    return _minimise_over_scale(fit, dfit, weight, L, lam)


def optimal_mixture(
    K: int, n: int, L: int, lam: float, simplex_classes, pairs
) -> tuple[float, float, float]:
    """Optimal block scales (a, b) and loss of the mixture a T_S + b T_P (Figure 5's ranks).

    The reduced loss of a mixture separates: the blocks sit on disjoint classes, so the singular
    values are those of a T_S (a sqrt(n), m - 1 times) and of b T_P (2 b sqrt(n), once per pair),
    and a simplex class's cross-entropy depends on a alone (its logits on the paired classes are
    0), a paired class's on b alone. Each scale is therefore the optimum of its own component
    (``optimal_matrix_scale``), and the loss is the reduced loss of the combined matrix.
    """
    check_sizes(K=K, n=n, L=L)
    check_positive("lam", lam)
    T_S, T_P = mixture_components(K, simplex_classes, pairs)
    a = optimal_matrix_scale(expand_classes(T_S, n), L, lam)[0] if len(simplex_classes) > 1 else 0.0
    b = optimal_matrix_scale(expand_classes(T_P, n), L, lam)[0] if len(pairs) else 0.0
    return a, b, reduced_loss(expand_classes(a * T_S + b * T_P, n), lam, L)


def theorem1_maps(
    Ks: Sequence[int], Ls: Sequence[int], n: int, lam: float, tie_rtol: float = 1e-10
) -> dict:
    """The (K, L) maps of Theorem 1 (rows K, columns L).

    Returns a dict of arrays of shape (len(Ks), len(Ls)):
    ``equal_scale`` (bool, ``theorem1_holds``), ``stated`` (bool, the printed region),
    ``gap`` (optimal DNC loss minus optimal pair-structure loss, each over its own scale) and
    ``outcome`` (int: 1 pair structure better, 0 DNC better, 2 equal within ``tie_rtol``
    (relative; K = 2, where the two structures coincide up to scale), -1 both optima are the
    zero matrix).
    """
    check_sizes(n=n)
    check_positive("lam", lam)
    check_positive("tie_rtol", tie_rtol)
    shape = (len(Ks), len(Ls))
    out = {
        "equal_scale": np.zeros(shape, dtype=bool),
        "stated": np.zeros(shape, dtype=bool),
        "gap": np.zeros(shape),
        "outcome": np.zeros(shape, dtype=int),
    }
    for i, K in enumerate(Ks):
        for j, L in enumerate(Ls):
            out["equal_scale"][i, j] = theorem1_holds(K, L)
            out["stated"][i, j] = theorem1_stated_region(K, L)
            a_dnc, loss_dnc = optimal_scale("dnc", K, n, L, lam)
            a_lr, loss_lr = optimal_scale("pair", K, n, L, lam)
            out["gap"][i, j] = loss_dnc - loss_lr
            if a_dnc == 0.0 and a_lr == 0.0:
                out["outcome"][i, j] = -1
            elif abs(loss_dnc - loss_lr) <= tie_rtol * loss_dnc:
                out["outcome"][i, j] = 2
            else:
                out["outcome"][i, j] = int(loss_lr < loss_dnc)
    return out
