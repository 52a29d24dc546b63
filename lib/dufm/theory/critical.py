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
- ``threshold_scale``, ``negative_count_bands``: alpha_c or beta_c by structure, and the numbers
  of negative Hessian eigenvalues chapter 6 measures on each stretch of a branch (a conjecture).
- ``inverse_scale_fit``, ``predict_inverse_scale``, ``extrapolated_limit``: least-squares fit of a
  quantity measured along the scale-divergent branch by c_0 + c_1/a + ... + c_m/a^m (optionally
  with c_0 fixed), its prediction at another scale, and the limit c_0 with the change of c_0 when
  the top term is dropped (Theorem 6: the flatness ratio's limit and a prediction that a drift
  would miss).
- ``dnc_softmax_split``, ``lemma2_right_side``, ``lemma2_curvature``: Lemma 2 of Appendix B.6
  (the last step of Theorem 4(ii)): the split Eq. 25 of the cross-entropy Hessian of one DNC logit
  column into e^a/(e^a+K-1)^2 rho'_c + (e^a+K-1)^-2 rho''_c, the lemma's right-hand side
  K s_c s_c^T + S, and the fit curvature along a class-mean logit perturbation that the two give.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import brentq, minimize_scalar

from ..structures import check_structure, simplex_matrix
from ..validation import check_int, check_nonnegative, check_positive, check_sizes
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


def threshold_scale(structure: str, K: int, L: int) -> float | None:
    """alpha_c (``dnc_threshold_scale``) for "dnc", beta_c (``pair_threshold_scale``) for "pair"
    (None at L = 1, where the pair point is a saddle at every scale). Chapter 6."""
    _check_critical_structure(structure, K)
    if structure == "dnc":
        return dnc_threshold_scale(K, L)
    return pair_threshold_scale(K, L) if L >= 2 else None


def negative_count_bands(structure: str, K: int, n: int, L: int, scale: float) -> tuple:
    """The numbers of negative Hessian eigenvalues chapter 6 measures at a critical point.

    Read off the measurements (a conjecture of the book, checked there at every point of the grid
    and at probes beside the fold and the threshold), for L >= 2, in the order they occur as the
    scale grows along the stretch that contains ``scale``: below ``fold_scale`` (the small root)
    (K(K-1)/2,) for DNC and (m(m+1)/2,) for the pair structure (m = K/2); between the fold and
    ``threshold_scale`` (K(K-1)/2 - 1, K(K-3)/2) for DNC and (m(m-1)/2,) for the pair structure;
    from the threshold on (0,). For L = 1 the DNC point has (0,); the pair point is a saddle,
    and this returns None for it (the count is not predicted).
    """
    _check_critical_structure(structure, K)
    check_sizes(K=K, n=n, L=L)
    check_positive("scale", scale)
    if L == 1:
        return (0,) if structure == "dnc" else None
    fold, threshold = fold_scale(structure, K, n, L), threshold_scale(structure, K, L)
    m = K // 2
    if scale < fold:
        return (K * (K - 1) // 2,) if structure == "dnc" else (m * (m + 1) // 2,)
    if scale >= threshold:
        return (0,)
    return (K * (K - 1) // 2 - 1, K * (K - 3) // 2) if structure == "dnc" else (m * (m - 1) // 2,)


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


def inverse_scale_fit(scales, values, order: int = 2, limit: float | None = None) -> np.ndarray:
    """Coefficients c_0..c_order of the least-squares fit values ~ sum_k c_k scale^{-k}.

    Theorem 6's proof gives each Hessian norm as lam (a x const + const + O(1/a)) along the
    scale-divergent branch, so the ratio of two of them is c_0 + c_1/a + O(1/a^2): c_0 is the
    limit. ``scales`` and ``values`` are 1-D of equal length, at least order + 1 points. With
    ``limit`` given, c_0 is fixed to it and only c_1..c_order are fitted (a hypothesis about the
    limit, tested by the prediction of ``predict_inverse_scale`` beyond the data).
    """
    check_int("order", order, 0)
    if limit is not None:
        if order < 1:
            raise ValueError(f"order={order} is not allowed with a fixed limit: must be >= 1")
        shifted = np.asarray(values, dtype=np.float64) - float(limit)
        inverse_scale_fit(scales, shifted, order)  # the same argument checks
        design = np.vander(1.0 / np.asarray(scales, dtype=np.float64), order + 1, increasing=True)
        tail = np.linalg.lstsq(design[:, 1:], shifted, rcond=None)[0]
        return np.concatenate([[float(limit)], tail])
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


def extrapolated_limit(scales, values, far_scale: float, order: int = 3) -> dict:
    """The limit of a quantity measured along the scale-divergent branch (Theorem 6; chapter 6).

    Fits ``inverse_scale_fit`` of ``order`` and of ``order`` - 1 to (scales, values) and returns
    "limit" (c_0 of the higher order), "spread" (|change of c_0 when the top term is dropped|:
    a truncation spread of the extrapolation, not a statistical error, as the data carry only
    rounding noise), "predicted" (the higher-order fit at ``far_scale``, beyond the data) and
    "predicted_one" (the prediction at ``far_scale`` of the same fit with c_0 fixed to 1, the
    hypothesis that the limit is exactly 1).
    """
    check_int("order", order, 1)
    check_positive("far_scale", far_scale)
    high = inverse_scale_fit(scales, values, order)
    low = inverse_scale_fit(scales, values, order - 1)
    one = inverse_scale_fit(scales, values, order, limit=1.0)
    return {
        "limit": float(high[0]),
        "spread": float(abs(high[0] - low[0])),
        "predicted": predict_inverse_scale(high, far_scale),
        "predicted_one": predict_inverse_scale(one, far_scale),
    }


def _check_class(K: int, c: int) -> None:
    check_sizes(K=K)
    check_int("c", c, 0)
    if c >= K:
        raise ValueError(f"c={c} is not allowed: a class index must be below K={K}")


def dnc_softmax_split(K: int, c: int, alpha: float, dtype=torch.float64, device=None) -> tuple:
    """The split (Eq. 25) of the softmax Hessian of one DNC logit column (Lemma 2, Thm 4(ii)).

    At a DNC point the logits of a class-c sample are z = alpha s_c (s_c = column c of S), and
    the Hessian of its cross-entropy -log softmax(z)_c with respect to z is
    rho_c = diag(p) - p p^T, p = softmax(z): p_c = e^a / D, p_j = 1 / D (j != c),
    D = e^a + K - 1. Entry by entry, rho_c = w1 rho'_c + w2 rho''_c with
    w1 = e^a / D^2, w2 = 1 / D^2 and

    - rho'_c: K - 1 at (c, c), -1 at (c, j) and (j, c), 1 at (j, j) for j != c, 0 elsewhere;
    - rho''_c: (K - 1) I - 1 1^T on the K - 1 indices other than c, 0 on row and column c
      (positive semi-definite: eigenvalues 0, 0 and K - 1 with multiplicity K - 2).

    Returns (w1, rho'_c, w2, rho''_c): two floats (computed without overflow for any alpha) and
    two K x K matrices built from the entries above. Chapter 6 measures rho_c by automatic
    differentiation against w1 rho'_c + w2 rho''_c.
    """
    _check_class(K, c)
    check_nonnegative("alpha", alpha)
    others = torch.ones(K, dtype=dtype, device=device)
    others[c] = 0.0
    rho1 = torch.diag(others.clone())
    rho1[c, c] = K - 1.0
    rho1[c, :] -= others
    rho1[:, c] -= others
    rho2 = (K - 1.0) * torch.diag(others) - torch.outer(others, others)
    q = (K - 1) * math.exp(-alpha)  # w1 = e^-a / (1 + q)^2, w2 = e^-2a / (1 + q)^2
    return math.exp(-alpha) / (1 + q) ** 2, rho1, math.exp(-2 * alpha) / (1 + q) ** 2, rho2


def lemma2_right_side(K: int, c: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """K s_c s_c^T + S (K x K), the right-hand side of Lemma 2: S rho'_c S = K s_c s_c^T + S.

    S = I_K - (1/K) 1 1^T and s_c its column c. Chapter 6 compares S rho'_c S, with rho'_c from
    ``dnc_softmax_split``, with this matrix, and uses it in ``lemma2_curvature``.
    """
    _check_class(K, c)
    S = simplex_matrix(K, dtype=dtype, device=device)
    return K * torch.outer(S[:, c], S[:, c]) + S


def lemma2_curvature(Y: torch.Tensor, alpha: float) -> float:
    """The fit term's curvature at a DNC point of scale alpha along a class-mean perturbation.

    When the logits of every class-c sample move by t Y s_c (Y: K x K; s_c = column c of S), the
    mean cross-entropy's second derivative in t is (1/K) sum_c (Y s_c)^T rho_c (Y s_c). The split
    of ``dnc_softmax_split``, Lemma 2 (with rho'_c = S rho'_c S, as rho'_c 1 = 0) and
    sum_c s_c s_c^T = S turn it into the closed form of the proof of Theorem 4(ii):

        (1/K) [ w1 (K sum_c (s_c^T Y s_c)^2 + ||S Y S||_F^2) + w2 sum_c (Y s_c)^T rho''_c (Y s_c) ],

    w1 = e^a/(e^a+K-1)^2, w2 = (e^a+K-1)^-2. Chapter 6 compares it with the Hessian of the full
    loss along one weight matrix (where the output is linear, so only this term and lam remain).
    """
    if not isinstance(Y, torch.Tensor) or Y.dim() != 2 or Y.shape[0] != Y.shape[1]:
        raise ValueError(
            f"Y={getattr(Y, 'shape', Y)} is not allowed: must be a square K x K tensor"
        )
    K = Y.shape[0]
    check_sizes(K=K)
    check_nonnegative("alpha", alpha)
    Y = Y.detach().double()
    S = simplex_matrix(K, device=Y.device)
    M = S @ Y @ S  # column c: S Y s_c; rho'_c and rho''_c annihilate 1, so only S Y s_c counts
    w1, w2 = dnc_softmax_split(K, 0, alpha)[0::2]
    psd = sum(float(M[:, c] @ dnc_softmax_split(K, c, alpha)[3] @ M[:, c]) for c in range(K))
    first = K * float(torch.diagonal(M).pow(2).sum()) + float(torch.linalg.matrix_norm(M) ** 2)
    return (w1 * first + w2 * psd) / K
