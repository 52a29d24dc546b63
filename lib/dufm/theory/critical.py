"""Every critical scale of a structure: the roots of Eq. 19 (DNC) and Eq. 27 (pair structure).

Theorems 4(i) and 6; chapters 6 and 7. ``critical_scales`` brackets every root of the derivative
of a structure's reduced loss from its asymptotics at a -> 0 and a -> infinity, in log scale, so it
finds roots far below or above any fixed grid (e.g. 6.4e-17 for DNC, K = 4, n = 1, L = 2,
lam = 1e-6).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ..structures import check_structure
from ..validation import check_positive, check_sizes
from .scales import structure_singular_values


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
            roots.append(
                brentq(
                    lambda t: float(h(np.asarray([t]))[0]),
                    lo,
                    hi,
                    xtol=1e-15,
                    rtol=4 * np.finfo(float).eps,
                    maxiter=500,
                )
            )
    roots = np.unique(np.asarray(roots, dtype=np.float64))
    return roots if log else np.exp(roots)
