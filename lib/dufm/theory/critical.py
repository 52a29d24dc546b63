"""Theorems 4 and 6 on the critical-scale curve of Eq. 19 (DNC) and Eq. 27 (pair structure).

- ``critical_scales``: every root, bracketed from the asymptotics of the derivative of a
  structure's reduced loss at a -> 0 and a -> infinity, in log scale, so it finds roots far below
  or above any fixed grid (e.g. 6.4e-17 for DNC, K = 4, n = 1, L = 2, lam = 1e-6).
- ``critical_weight_decay``: lam(scale), the weight decay at which a structure at a given scale
  is a critical point (Eq. 19 for DNC, Eq. 27 for the pair structure solved for lam); the inverse
  of ``critical_scales``.
- ``fold_scale``: the scale at which lam(scale) is largest. Below it lie the small critical
  scales, above it the scale-divergent ones (Theorem 4(i)); at larger lam there is none.
- ``branch_scale``: the inverse of lam(scale) on one side of the fold: the small critical scale
  or the scale-divergent one at a given lam.
- ``dnc_threshold_scale``: alpha_c = K(L-1)/(L+1), the DNC scale above which chapter 6 measures
  no negative Hessian eigenvalue (a measured conjecture, not the paper's).
- ``pair_threshold_scale``: beta_c, the root of beta = q (K/2 - 1 + e^{-beta}), q = (L-1)/(L+1),
  the pair structure's scale above which chapter 6 measures no negative Hessian eigenvalue (a
  closed form read off the measurements; it coincides with the fold for K = 4).
- ``inverse_scale_fit``, ``predict_inverse_scale``: least-squares fit of a quantity measured along
  the scale-divergent branch by c_0 + c_1/a + ... + c_m/a^m, and its prediction at another scale
  (Theorem 6: the flatness ratio's limit c_0 and a prediction that a drift would miss).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from ..structures import check_structure
from ..validation import check_int, check_positive, check_sizes
from .scales import (
    _root,
    _scales,
    _structure_fit_derivative,
    _structure_weight,
    structure_singular_values,
)


def _log_fit_slope(structure: str, K: int, a: np.ndarray) -> np.ndarray:
    """log(-fit'(a)) of a structure's closed-form fit, stable for every a >= 0 (no overflow)."""
    a = np.asarray(a, dtype=np.float64)
    log_dnc = math.log(K - 1) - np.logaddexp(a, math.log(K - 1))  # (K-1)/(e^a + K - 1)
    if structure == "dnc":
        return log_dnc
    log_pair = _log_pair_slope(K, a)
    if K % 2 == 0:
        return log_pair
    return np.logaddexp(math.log(K - 1) + log_pair, log_dnc) - math.log(K)


def _log_pair_slope(K: int, a: np.ndarray) -> np.ndarray:
    """log(-d/da) of the fit of one paired column, log(1 + e^{-2a} + (K-2) e^{-a})."""
    e1 = np.exp(-a)
    log_n = -a + (np.log(2 * e1 + K - 2) if K > 2 else math.log(2) - a)
    return log_n - np.log1p(np.exp(-2 * a) + (K - 2) * e1)


def _fit_curvature_ratio(structure: str, K: int, a: np.ndarray) -> np.ndarray:
    """fit''(a) / (-fit'(a)) of a structure's closed-form fit, stable for every a >= 0."""
    a = np.asarray(a, dtype=np.float64)
    ratio_dnc = 1.0 / (1.0 + (K - 1) * np.exp(-a))  # e^a / (e^a + K - 1)
    if structure == "dnc":
        return ratio_dnc
    e1 = np.exp(-a)
    log_pair = _log_pair_slope(K, a)
    # with N = 2 e^{-2a} + (K-2) e^{-a}, D = 1 + e^{-2a} + (K-2) e^{-a}: ratio = -N'/N - N/D
    lead = 2.0 if K == 2 else (4 * e1 + K - 2) / (2 * e1 + K - 2)
    ratio_pair = lead - np.exp(log_pair)
    if K % 2 == 0:
        return ratio_pair
    w_pair = math.log(K - 1) + log_pair
    w_dnc = np.log(K - 1) - np.logaddexp(a, math.log(K - 1))
    share = 1.0 / (1.0 + np.exp(w_dnc - w_pair))  # share of the paired columns in -fit'
    return share * ratio_pair + (1 - share) * ratio_dnc


def critical_scales(structure: str, K: int, n: int, L: int, lam: float, log: bool = False):
    """Every scale a > 0 at which the structure is a critical point (Theorem 4(i); Eq. 19, 27).

    The roots, in increasing order, of d/da [fit(a) + c a^p], c = (lam/2)(L+1) w, p = 2/(L+1),
    w = sum of the structure's singular values at scale 1 to the power p. In t = log a the
    equation is h(t) := log(-fit'(e^t)) + (1-p) t = log(c p). The fit is convex, so
    -fit'(a) <= -fit'(0) and -fit'(a) <= K e^{-a}; hence every root lies in
    [t_lo, t_hi] with h(t) <= log(-fit'(0)) + (1-p) t < log(c p) below t_lo (p < 1) and
    log K - e^t + (1-p) t < log(c p) above t_hi (the asymptotics at a -> 0 and a -> infinity).
    Between the stationary points of h (sign changes of h' on a fine grid of t, refined by
    Brent's method) h is monotone, so each piece holds at most one root, found by Brent's
    method. For DNC with L >= 2 and small lam there are two roots: a small one, about
    (c p K/(K-1))^{1/(1-p)}, and a large one that diverges like -log(lam); for L = 1 at most one.

    Returns a float64 array of the roots (shape (r,), r in {0, 1, 2} for these structures).
    With ``log=True`` it returns log a instead: a root below the smallest float64 (lam tiny at
    small depth) is then still finite, while the plain form returns 0.0 for it. Used by
    chapters 6 and 7.
    """
    check_structure(structure)
    check_sizes(K=K, n=n, L=L)
    check_positive("lam", lam)
    p = 2.0 / (L + 1)
    weight = float(np.sum(structure_singular_values(structure, K, n) ** p))
    target = math.log(0.5 * lam * (L + 1) * weight * p)
    log_top = float(_log_fit_slope(structure, K, np.zeros(1))[0])  # log(-fit'(0))

    def h(t):
        return _log_fit_slope(structure, K, np.exp(t)) + (1 - p) * np.asarray(t) - target

    def dh(t):
        a = np.exp(t)
        return (1 - p) - a * _fit_curvature_ratio(structure, K, a)

    if p < 1:
        t_lo = (target - log_top) / (1 - p) - 1.0
    else:  # L = 1: h decreases from log(-fit'(0)) - log(c); one root iff that is positive
        if log_top <= target:
            return np.zeros(0)
        t_lo = -1.0
        while float(h(np.asarray([t_lo]))[0]) <= 0 and t_lo > -1e4:
            t_lo *= 2
    t_hi = max(1.0, math.log(max(math.log(K) - target, 1.0)))
    while math.log(K) - math.exp(t_hi) + (1 - p) * t_hi >= target:
        t_hi += 1.0
    points = int(min(2_000_000, max(4000, (t_hi - t_lo) / 2e-3)))
    grid = np.linspace(t_lo, t_hi, points)
    slope = dh(grid)
    turns = np.flatnonzero(np.sign(slope[:-1]) * np.sign(slope[1:]) < 0)
    knots = [t_lo]
    for i in turns:
        knots.append(
            brentq(lambda t: float(dh(np.asarray([t]))[0]), grid[i], grid[i + 1], xtol=1e-14)
        )
    knots.append(t_hi)
    roots = []
    for lo, hi in zip(knots[:-1], knots[1:], strict=False):
        f_lo, f_hi = float(h(np.asarray([lo]))[0]), float(h(np.asarray([hi]))[0])
        if f_lo == 0.0:
            roots.append(lo)
        elif f_lo * f_hi < 0:
            roots.append(_root(h, lo, hi))
    roots = np.unique(np.asarray(roots, dtype=np.float64))
    return roots if log else np.exp(roots)


def _check_critical_structure(structure: str, K: int) -> None:
    check_structure(structure)
    if structure == "mixture":
        raise ValueError("structure='mixture' is not allowed: must be 'dnc' or 'pair'")
    if structure == "pair" and K % 2:
        raise ValueError(
            f"K={K} is not allowed for structure='pair': must be even (for odd K the pair "
            "structure at one scale is not a critical point)"
        )


def critical_weight_decay(structure: str, K: int, n: int, L: int, scale):
    """The weight decay lam at which the structure at ``scale`` > 0 is a critical point.

    Setting the derivative of the structure's reduced loss to zero and solving for lam gives
    lam = -fit'(a) / (w a^{(1-L)/(L+1)}), w the structure's sum of s_i^{2/(L+1)} at scale 1. For
    DNC this is Eq. 19, lam n^{1/(L+1)} = a^{(L-1)/(L+1)} / (e^a + K - 1); for the pair structure
    (even K) Eq. 27. ``scale`` may be an array (then an array of the same shape is returned).
    Serves Theorems 4 and 6 (chapter 6: a critical point at any chosen scale).
    """
    _check_critical_structure(structure, K)
    check_sizes(K=K, n=n, L=L)
    a = _scales(scale)
    if np.any(a <= 0):
        raise ValueError(f"scale={scale} is not allowed: must be > 0")
    weight = _structure_weight(structure, K, n, L)
    lam = -_structure_fit_derivative(structure, K, a) / (weight * a ** ((1.0 - L) / (L + 1)))
    return float(lam) if lam.ndim == 0 else lam


def fold_scale(structure: str, K: int, n: int, L: int) -> float:
    """The scale at which ``critical_weight_decay`` is largest (L >= 2), to about 1e-9.

    For L >= 2 the right-hand sides of Eq. 19 and Eq. 27 vanish at 0 and at infinity and have one
    maximum: each lam below the maximum has a small critical scale below this fold and a
    scale-divergent one above it (Theorem 4(i)); the two meet at the fold. Independent of n.
    """
    _check_critical_structure(structure, K)
    check_sizes(K=K, n=n)
    check_int("L", L, 2)

    def log_lam(a):
        return float(np.log(critical_weight_decay(structure, K, n, L, a)))

    rough = minimize_scalar(
        lambda a: -log_lam(a), bounds=(1e-3, 10.0 + np.log(K)), method="bounded",
        options={"xatol": 1e-9},
    ).x  # fmt: skip

    def slope(a):  # central difference of log lam: its root is the maximum, to ~1e-10
        h = 1e-5 * a
        return (log_lam(a + h) - log_lam(a - h)) / (2 * h)

    return float(brentq(slope, 0.9 * rough, 1.1 * rough, xtol=1e-14))


def branch_scale(structure: str, K: int, n: int, L: int, lam: float, branch: str) -> float | None:
    """The critical scale of the structure at weight decay ``lam`` on one branch, or None.

    ``branch`` "small": the root of ``critical_weight_decay`` = lam below ``fold_scale``; "large":
    the scale-divergent one above it (Theorem 4(i); Eq. 19, Eq. 27). None when lam exceeds the
    largest critical weight decay (no critical point). For L = 1 there is one branch, "large"
    (lam(a) decreases from its value at 0+; None for "small"). Each root is found by Brent's
    method on log lam(a) - log lam inside its monotone branch, to machine precision.
    """
    _check_critical_structure(structure, K)
    check_sizes(K=K, n=n, L=L)
    check_positive("lam", lam)
    if branch not in ("small", "large"):
        raise ValueError(f"branch={branch!r} is not allowed: must be 'small' or 'large'")

    def gap(a):
        return float(np.log(critical_weight_decay(structure, K, n, L, a)) - np.log(lam))

    if L == 1:
        if branch == "small":
            return None
        lo = 1e-300
    else:
        lo = fold_scale(structure, K, n, L)
    if gap(lo) < 0:
        return None
    if branch == "small":
        hi, lo = lo, 1e-300
        while gap(lo) > 0:  # lam(a) ~ a^{(L-1)/(L+1)} near 0: a small enough scale is below lam
            lo *= 1e-10
            if lo == 0.0:
                return None
    else:
        hi = 2.0 * lo + 1.0
        while gap(hi) > 0:  # lam(a) ~ a^{(L-1)/(L+1)} e^{-a} decays: doubling reaches below lam
            hi *= 2.0
    return float(brentq(gap, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))


def dnc_threshold_scale(K: int, L: int) -> float:
    """alpha_c = K(L-1)/(L+1): the DNC scale above which the Hessian has no negative eigenvalue.

    Measured in chapter 6 (a conjecture of the book, not a statement of the paper): the DNC critical
    point of Lemma-1 structure has K(K-3)/2 negative Hessian eigenvalues just below alpha_c and
    none above. Zero for L = 1.
    """
    check_sizes(K=K, L=L)
    return K * (L - 1) / (L + 1)


def pair_threshold_scale(K: int, L: int) -> float:
    """beta_c: the root of beta = q (K/2 - 1 + e^{-beta}), q = (L-1)/(L+1) (L >= 2, even K).

    Read off chapter 6's measurements (a conjecture of the book): the pair structure's critical
    point has a negative Hessian eigenvalue below beta_c and none above. For K = 4 the equation is
    the fold's (``fold_scale``), so every scale-divergent pair point is free of them.
    """
    check_sizes(K=K)
    check_int("L", L, 2)
    if K % 2:
        raise ValueError(f"K={K} is not allowed: must be even (the pair structure)")
    q = (L - 1) / (L + 1)
    gap = lambda b: b - q * (K / 2 - 1 + np.exp(-b))  # noqa: E731  increasing, < 0 at 0
    return float(brentq(gap, 0.0, q * K / 2 + 1.0, xtol=1e-15))


def inverse_scale_fit(scales, values, order: int = 2) -> np.ndarray:
    """Coefficients c_0..c_order of the least-squares fit values ~ sum_k c_k scale^{-k}.

    Theorem 6's proof gives each Hessian norm as lam (a x const + const + O(1/a)) along the
    scale-divergent branch, so the ratio of two of them is c_0 + c_1/a + O(1/a^2): c_0 is the
    limit. ``scales`` and ``values`` are 1-D of equal length, at least order + 1 points.
    """
    check_int("order", order, 0)
    a = np.asarray(scales, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.shape != y.shape or a.size < order + 1:
        raise ValueError(
            f"scales and values of shapes {a.shape} and {y.shape} are not allowed: must be 1-D "
            f"of equal length, at least order + 1 = {order + 1}"
        )
    if np.any(~np.isfinite(a) | (a <= 0)) or np.any(~np.isfinite(y)):
        raise ValueError("scales must be finite and > 0 and values finite")
    design = np.vander(1.0 / a, order + 1, increasing=True)
    return np.linalg.lstsq(design, y, rcond=None)[0]


def predict_inverse_scale(coefficients, scale) -> float:
    """The fit of ``inverse_scale_fit`` evaluated at ``scale`` (> 0)."""
    c = np.asarray(coefficients, dtype=np.float64)
    x = 1.0 / float(scale)
    return float(sum(ck * x**k for k, ck in enumerate(c)))
