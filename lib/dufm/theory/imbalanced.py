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
- ``wins_from``: the depth from which one loss stays strictly below another;
- ``imbalance_sizes``, ``check_step_Ks``, ``check_exponents_below_zero``,
  ``check_lam_below_zero``: the chapter's parameter checks, naming the bad parameter;
- ``fit_domination``: Theorem A1's fit step measured over scales, absolute and relative;
- ``theorem_a2_rows``: Theorem A2's optimum search in each regime of weight decays;
- ``single_layer_minimisers``: Z*_lam on a grid of lam, certified, against SEL, with whether it
  lies in the regime of Theorem A3's proof (rank K - 1, every class fitted);
  ``approach_rate``: how fast its distance to SEL falls with log(1/lam);
- ``generalised_dnc_comparison``: generalised DNC against the proof's rank-r competitor and
  against everything an unrestricted search finds, at every depth and lam of a grid;
  ``grid_thresholds``: the (lam_0, L_0) pairs of Theorem A3 the grid supports.
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


# ----------------------------------------------------------------------------------------------
# The chapter's parameters, Theorem A1's fit step, Theorem A3's measurements and thresholds
# ----------------------------------------------------------------------------------------------


def imbalance_sizes(K: int, imbalances, n_min: int) -> list:
    """The class sizes (``step_class_sizes``) of every (R, rho) of ``imbalances`` (chapter 10).

    ``imbalances`` is a non-empty list of pairs [R, rho]; a bad pair is a ValueError naming
    ``imbalances[i]`` and the rule it breaks. Returns one list of K sizes per pair.
    """
    if not isinstance(imbalances, list | tuple) or not imbalances:
        _fail("imbalances", imbalances, "must be a non-empty list of [R, rho] pairs")
    sizes = []
    for i, pair in enumerate(imbalances):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            _fail(f"imbalances[{i}]", pair, "must be [R, rho]")
        try:
            sizes.append(step_class_sizes(K, pair[0], pair[1], n_min))
        except ValueError as err:
            raise ValueError(f"imbalances[{i}]: {err}") from None
    return sizes


def check_exponents_below_zero(name: str, exponents, imbalances, class_sizes) -> list:
    """Every lam = 2^-e of ``exponents`` must lie below ``ufm_zero_lam`` of every imbalance.

    Generalised DNC (Theorem A3) is a multiple of Z*_lam, which is zero from ``ufm_zero_lam``
    on. ``exponents``: at least two integers >= 1; ``imbalances`` and ``class_sizes`` pair up.
    A violation is a ValueError naming ``name[j]``, the imbalance and the smallest allowed
    exponent. Returns the exponents as ints (chapter 10's parameter check).
    """
    if not isinstance(exponents, list | tuple) or len(exponents) < 2:
        _fail(name, exponents, "give at least two exponents")
    values = [check_int(f"{name}[{j}]", e, 1) for j, e in enumerate(exponents)]
    for i, (pair, sizes) in enumerate(zip(imbalances, class_sizes, strict=True)):
        bound = -math.log2(ufm_zero_lam(sizes))
        for j, e in enumerate(values):
            if e <= bound:
                raise ValueError(
                    f"{name}[{j}]={e} is not allowed with imbalances[{i}]={list(pair)}: at "
                    f"lam = 2^-{e} the single-layer minimiser is zero (from lam = "
                    f"2^-{bound:.2f} on), so there is no generalised DNC; use exponents above "
                    f"{bound:.2f}"
                )
    return values


def fit_domination(X: torch.Tensor, M: torch.Tensor, gamma: float, scales, class_sizes) -> dict:
    """Theorem A1's fit step, g(gamma a M) < g(a X) at every scale a, measured with class sizes.

    X, M: (K, N) logit directions with the class sizes n_c; ``scales`` positive scales a. The
    fits (mean cross-entropies) tend to log K as a -> 0 and to 0 as a grows, so their
    difference tends to 0 at both ends. Returns ``difference`` (the largest g(gamma a M) -
    g(a X)) and ``difference_at`` (its scale), ``relative`` (the largest
    g(gamma a M) / g(a X) - 1, scale-free) and ``relative_at``, and ``fit_at`` (g(a X) where the
    difference is largest). Chapter 10 checks ``relative`` against a stated tolerance.
    """
    from ..losses import mean_cross_entropy

    sizes = check_class_sizes(class_sizes, K=X.shape[0], N=X.shape[1])
    check_positive("gamma", gamma)
    a = torch.as_tensor(scales, dtype=torch.float64)
    if a.dim() != 1 or not len(a) or not bool((a > 0).all()):
        _fail("scales", scales, "must be a non-empty 1-D sequence of positive scales")
    a = a.view(-1, 1, 1)
    fit_m = mean_cross_entropy(gamma * a * M.double().cpu(), sizes)
    fit_x = mean_cross_entropy(a * X.double().cpu(), sizes)
    diff, rel = fit_m - fit_x, fit_m / fit_x - 1
    i, j = int(diff.argmax()), int(rel.argmax())
    return {
        "difference": float(diff[i]), "difference_at": float(a[i]), "fit_at": float(fit_x[i]),
        "relative": float(rel[j]), "relative_at": float(a[j]),
    }  # fmt: skip


def single_layer_minimisers(
    class_sizes,
    exponents: Sequence[int],
    *,
    starts: int = 2,
    steps: int = 600,
    seed: int = 0,
    device="cpu",
    dtype="float64",
) -> list:
    """Z*_lam for lam = 2^-e, e in ``exponents``: certified, and compared with SEL (Theorem A3).

    One row per exponent: ``e``, ``lam``, ``Z`` (K x N), ``means`` (K x K), ``distance``
    (``normalised_distance`` to the SEL matrix), ``residual`` and ``spectral``
    (``ufm_optimality_residual``), ``rank`` (singular values above 1e-8 of the largest),
    ``fitted`` (classes whose mean column has a positive margin), ``minority`` (classes of the
    smallest size), ``minority_fitted`` and ``in_hypothesis``: Z*_lam has rank K - 1 and fits
    every class, as it does once lam is small enough for the proof of Theorem A3 (chapter 10).
    """
    from ..metrics import numerical_rank
    from .superiority import column_margins

    sizes = check_class_sizes(class_sizes)
    K, lams = len(sizes), [2.0 ** -check_int("exponent", e, 1) for e in exponents]
    if not lams or max(lams) >= ufm_zero_lam(sizes):
        _fail(
            "exponents",
            list(exponents),
            "must be non-empty, each above "
            f"{-math.log2(ufm_zero_lam(sizes)):.2f} (Z*_lam is zero from ufm_zero_lam on)",
        )
    res = ufm_minimiser(
        sizes, lams, starts=starts, steps=steps, seed=seed, device=device, dtype=dtype,
        progress=False,
    )  # fmt: skip
    sel, small = sel_matrix(sizes), [c for c in range(K) if sizes[c] == min(sizes)]
    rows = []
    for c, (e, lam) in enumerate(zip(exponents, lams, strict=True)):
        Z, means = res.logits[c], res.best_means[c]
        residual, spectral = ufm_optimality_residual(Z, sizes, lam)
        margins = column_margins(means, K, 1)
        rank = numerical_rank(Z, 1e-8)
        rows.append({
            "e": int(e), "lam": lam, "Z": Z, "means": means,
            "distance": normalised_distance(Z, sel), "residual": residual, "spectral": spectral,
            "rank": rank, "fitted": int((margins > 0).sum()), "minority": len(small),
            "minority_fitted": int((margins[small] > 0).sum()),
            "in_hypothesis": rank == K - 1 and bool((margins > 0).all()),
        })  # fmt: skip
    return rows


def approach_rate(lams: Sequence[float], distances: Sequence[float]) -> dict:
    """How fast Z*_lam approaches the SEL direction as lam falls (Theorem A3; chapter 10).

    ``products``: distance * log(1/lam) per lam (constant if the distance falls like
    1/log(1/lam)); ``exponent``: the s of a least-squares fit log d = c - s log log(1/lam), so
    the distance falls like log(1/lam)^-s over the lams given (at least two, each below 1).
    """
    lams = [check_positive("lam", lam) for lam in lams]
    if len(lams) < 2 or len(lams) != len(distances) or max(lams) >= 1:
        raise ValueError(
            f"lams={lams} is not allowed: need at least two weight decays below 1, one per "
            f"distance ({len(distances)} given)"
        )
    logs = torch.tensor([math.log(1 / lam) for lam in lams], dtype=torch.float64)
    d = torch.tensor([float(x) for x in distances], dtype=torch.float64)
    if not bool((d > 0).all()):
        _fail("distances", list(distances), "must be positive")
    x, y = logs.log(), d.log()
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum())
    return {"products": (d * logs).tolist(), "exponent": -slope}


def _best_low_rank_rows(sizes, exponents, depths, low_rank, search):
    """Theorem A3's rank-r search at every (lam, depth) of the grid: losses, ranks, superiority."""
    from .superiority import is_diagonally_superior

    lams = [2.0**-e for e in exponents]
    low = best_low_rank(
        sizes, list(depths) * len(lams), [lam for lam in lams for _ in depths], rank=low_rank,
        progress=False, **search,
    )  # fmt: skip
    out, K = [], len(sizes)
    for i in range(len(lams)):
        idx = [i * len(depths) + j for j in range(len(depths))]
        out.append({
            "low": [float(low.best_loss[c]) for c in idx],
            "low_ranks": [int((low.best_singular_values[c] > 0).sum()) for c in idx],
            "low_superior": [is_diagonally_superior(low.best_means[c], K, 1) for c in idx],
        })  # fmt: skip
    return out


def generalised_dnc_comparison(
    class_sizes,
    single: list,
    exponents: Sequence[int],
    depths: Sequence[int],
    *,
    low_rank: int = 2,
    starts: int = 4,
    steps: int = 400,
    structured: dict | None = None,
    seed: int = 0,
    device="cpu",
    dtype="float64",
) -> list:
    """Theorem A3 at each lam = 2^-e: generalised DNC against everything the searches find.

    ``single``: rows of ``single_layer_minimisers`` holding every exponent. For each lam and
    depth L of ``depths`` (increasing, from 1): ``gdnc``, the deep reduced loss of generalised
    DNC at its best scale (``generalised_dnc_losses``); ``low``, the best matrix of rank <=
    ``low_rank`` (``best_low_rank``: the competitor of the proof); ``best``, the lower of
    ``low`` and the unconstrained search (``search_global_optimum`` from random starts, the
    SEL, pair and circle directions, Z*_lam of every lam and ``structured``, e.g. the class
    means of gradient-descent runs), which runs at the depths below the rank-r crossover (from
    there on ``low`` already wins; at L = 1 it must not beat generalised DNC, the certified
    optimum).
    Per lam also ``best_ranks``, ``best_source``, ``low_from`` and ``beaten_from`` (``wins_from``
    of ``low`` and of ``best`` against ``gdnc``: the depth from which the rank-r matrix, and
    anything found, beats generalised DNC at every larger depth listed), ``proof_L0`` (the L_0
    of Theorem A1's proof for Z*_lam against the circle) and the row of ``single`` (chapter 10).
    """
    from ..structures import pair_matrix
    from .superiority import theorem2_gamma, theorem2_L0

    sizes, depths = check_class_sizes(class_sizes), [check_int("L", L, 1) for L in depths]
    K, by_e = len(sizes), {row["e"]: row for row in single}
    missing = [e for e in exponents if e not in by_e]
    if missing:
        _fail("exponents", list(exponents), f"{missing} have no row in single")
    search = {"starts": starts, "steps": steps, "seed": seed, "device": device, "dtype": dtype}
    low = _best_low_rank_rows(sizes, exponents, depths, low_rank, search)
    circle = circle_gram(K)
    rows = []
    for e, low_e in zip(exponents, low, strict=True):
        z = by_e[e]
        gdnc = generalised_dnc_losses(z["means"], sizes, depths, z["lam"])[1]
        gamma = theorem2_gamma(z["means"], circle)
        rows.append({
            **{k: z[k] for k in ("e", "lam", "rank", "in_hypothesis", "minority_fitted")},
            "minority": z["minority"], "gdnc": gdnc, **low_e,
            "low_from": wins_from(depths, low_e["low"], gdnc),
            "proof_L0": theorem2_L0(z["Z"], expand_classes(circle, sizes), gamma),
            "best": list(low_e["low"]), "best_ranks": list(low_e["low_ranks"]),
            "best_source": [f"rank-{low_rank} search"] * len(depths),
        })  # fmt: skip
    todo = [
        (i, j) for i, row in enumerate(rows) for j, L in enumerate(depths)
        if row["low_from"] is None or L < row["low_from"]
    ]  # fmt: skip
    if todo:
        starts_by_name = {"SEL": simplex_matrix(K), "pair": pair_matrix(K), "circle": circle}
        starts_by_name.update({f"Z* at 2^-{e}": by_e[e]["means"] for e in exponents})
        starts_by_name.update(structured or {})
        res = _search(
            sizes, [depths[j] for _, j in todo], [rows[i]["lam"] for i, _ in todo],
            starts_by_name, None, starts, steps, seed, device, dtype, False,
        )  # fmt: skip
        for c, (i, j) in enumerate(todo):
            loss = float(res.best_loss[c])
            if loss < rows[i]["best"][j]:
                rows[i]["best"][j] = loss
                rows[i]["best_ranks"][j] = int((res.best_singular_values[c] > 0).sum())
                rows[i]["best_source"][j] = res.labels[int(res.best_start[c])]
    for row in rows:
        row["beaten_from"] = wins_from(depths, row["best"], row["gdnc"])
    return rows


def grid_thresholds(exponents: Sequence[int], beaten_from: Sequence) -> list:
    """The (lam_0, L_0) pairs of Theorem A3 that a grid of weight decays lam = 2^-e supports.

    ``beaten_from[j]``: the depth from which generalised DNC is beaten at every larger depth
    measured, at lam = 2^-exponents[j] (None: not beaten at the largest depth). For every grid
    lam_0 = 2^-e such that every grid lam <= lam_0 has a threshold, returns (e, L_0) with
    L_0 = max over those lams of beaten_from - 1, largest lam_0 first; [] if the smallest lam
    has none. On the grid, "no generalised DNC global minimum for lam <= lam_0 and L > L_0"
    (up to the largest depth measured) holds for each pair returned (chapter 10).
    """
    pairs = sorted(zip(exponents, beaten_from, strict=True), key=lambda p: p[0], reverse=True)
    out, worst = [], 0
    for e, L in pairs:  # smallest lam first
        if L is None:
            break
        worst = max(worst, L)
        out.append((int(e), worst - 1))
    return out[::-1]


def theorem_a2_rows(
    class_sizes,
    depths: Sequence[int],
    regimes: dict,
    *,
    starts: int = 6,
    steps: int = 400,
    exchange_steps: int = 0,
    seed: int = 0,
    device="cpu",
    dtype="float64",
) -> dict:
    """The optimum search of Theorem A2 with class sizes, in each regime of weight decays.

    ``regimes`` maps a name to one lam per depth of ``depths``; every (L, lam) of every regime
    is searched in one ``search_global_optimum`` call, with the SEL, pair and circle directions
    as structured starts. Returns {name: rows}, one row per depth: ``L``, ``lam``, ``loss``,
    ``rank`` (exact zeros of the proximal map), ``sv`` (K,), ``superior``, ``source`` (the start
    that first reached the best value), ``known`` (the best of the three directions at its own
    optimal scale) and ``bound`` (``zero_comparison_bound``); chapter 10.
    """
    from ..structures import pair_matrix
    from .optimum import zero_comparison_bound
    from .superiority import is_diagonally_superior

    sizes, depths = check_class_sizes(class_sizes), list(depths)
    K, names = len(sizes), list(regimes)
    for name in names:
        if len(regimes[name]) != len(depths):
            _fail(f"regimes[{name!r}]", regimes[name], f"needs one lam per depth ({len(depths)})")
    structured = {"SEL": simplex_matrix(K), "pair": pair_matrix(K), "circle": circle_gram(K)}
    res = search_global_optimum(
        K, None, depths * len(names), [lam for name in names for lam in regimes[name]],
        starts=starts, structured=structured, steps=steps, exchange_steps=exchange_steps,
        seed=seed, device=device, dtype=dtype, progress=False, class_sizes=sizes,
    )  # fmt: skip
    out = {}
    for r, name in enumerate(names):
        rows = []
        for j, L in enumerate(depths):
            c, sv = r * len(depths) + j, res.best_singular_values[r * len(depths) + j]
            known = [
                optimal_matrix_scale(expand_classes(D, sizes), L, res.lam[c], sizes)[1]
                for D in structured.values()
            ]
            rows.append({
                "L": L, "lam": res.lam[c], "loss": float(res.best_loss[c]),
                "rank": int((sv > 0).sum()), "sv": sv,
                "superior": is_diagonally_superior(res.best_means[c], K, 1),
                "source": res.labels[int(res.best_start[c])], "known": min(known),
                "bound": zero_comparison_bound(K, L, res.lam[c]),
            })  # fmt: skip
        out[name] = rows
    return out


def check_lam_below_zero(name: str, lam: float, class_sizes) -> float:
    """``lam`` must be a weight decay below ``ufm_zero_lam(class_sizes)``, where generalised DNC
    exists (Theorem A3); a ValueError names ``name`` and the bound. Returns lam (chapter 10)."""
    check_positive(name, lam)
    bound = ufm_zero_lam(class_sizes)
    if lam >= bound:
        _fail(name, lam, f"the single-layer minimiser is zero from lam = {bound:.4g} on")
    return lam


def check_step_Ks(name: str, Ks, R: float, rho: float, n_min: int) -> list:
    """Every number of classes of ``Ks`` (integers >= 3) admits the (R, rho)-STEP imbalance
    (``step_class_sizes``); a bad one is a ValueError naming ``name[i]``. Returns the sizes per
    K (chapter 10's Theorem A2 search)."""
    if not isinstance(Ks, list | tuple) or not Ks:
        _fail(name, Ks, "must be a non-empty list of integers >= 3")
    sizes = []
    for i, K in enumerate(Ks):
        check_int(f"{name}[{i}]", K, 3)
        try:
            sizes.append(step_class_sizes(K, R, rho, n_min))
        except ValueError as err:
            raise ValueError(f"{name}[{i}]={K}: {err}") from None
    return sizes


def check_chapter_parameters(p) -> dict:
    """Check every parameter of chapter 10 (Theorems A1-A3) by its own name; derive the sizes.

    ``p``: a mapping holding the chapter's parameters (its ``globals()``). A bad value is a
    ValueError naming the parameter, its value and the rule, raised before anything is computed.
    Returns ``class_sizes`` (one list per imbalance), ``sizes`` and ``N`` of the main imbalance,
    ``R_main``, ``rho_main``, ``a2_sizes`` ({K: sizes}) and ``names`` ("(R, rho)" per imbalance).
    """
    from ..validation import (
        check_device,
        check_dtype,
        check_each,
        check_int_list,
        check_number_list,
    )

    check_int("K", p["K"], 4)  # Theorem A3 is stated for K >= 4
    ints = ("n_min", "a2_starts", "a2_steps", "ufm_starts", "ufm_steps", "a3_starts")
    ints += ("a3_steps", "gd_steps", "gd_search_starts", "torch_threads", "gd_L", "low_rank")
    check_each(check_int, 1, **{name: p[name] for name in ints})
    zeros = ("a2_exchange_steps", "seed", "main_imbalance")
    check_each(check_int, 0, **{name: p[name] for name in zeros})
    check_int("L_max", p["L_max"], 2)
    imbalances, main = p["imbalances"], p["main_imbalance"]
    class_sizes = imbalance_sizes(p["K"], imbalances, p["n_min"])
    if main >= len(imbalances):
        _fail("main_imbalance", main, f"must index imbalances (0..{len(imbalances) - 1})")
    R, rho = imbalances[main]
    a2_sizes = check_step_Ks("a2_Ks", p["a2_Ks"], R, rho, p["n_min"])
    check_int_list("a2_depths", p["a2_depths"], 1)
    check_number_list("a1_lams", p["a1_lams"], positive=True)
    positive = ("lam_ii_c", "lam_i_c", "gd_lam", "gd_lr", "residual_tol", "fit_rtol")
    positive += ("rate_tol", "plateau_rtol")
    check_each(check_positive, **{name: p[name] for name in positive})
    if not p["lam_ii_power"] < -1 < p["lam_i_power"]:
        raise ValueError(
            f"lam_ii_power={p['lam_ii_power']}, lam_i_power={p['lam_i_power']} are not "
            "allowed: need lam_ii_power < -1 < lam_i_power (Theorem A2's two regimes)"
        )
    if p["low_rank"] >= p["K"] - 1:
        _fail("low_rank", p["low_rank"], f"must be below K-1={p['K'] - 1}")
    # generalised DNC is a multiple of Z*_lam, which is zero from ufm_zero_lam on
    for name in ("sel_lam_exponents", "a3_lam_exponents"):
        check_exponents_below_zero(name, p[name], imbalances, class_sizes)
    check_lam_below_zero("gd_lam", p["gd_lam"], class_sizes[main])
    check_sizes(K=p["K"], d=p["gd_d"], L=p["gd_L"])
    seeds, scales = p["gd_seeds"], p["gd_init_scales"]
    if not isinstance(seeds, list) or not isinstance(scales, list) or len(seeds) != len(scales):
        _fail("gd_seeds", seeds, "must be a list as long as gd_init_scales")
    check_int_list("gd_seeds", seeds, 0)
    check_number_list("gd_init_scales", scales, positive=True)
    check_device(p["device"])
    check_dtype(p["dtype"])
    return {
        "class_sizes": class_sizes, "sizes": class_sizes[main], "N": sum(class_sizes[main]),
        "R_main": R, "rho_main": rho, "a2_sizes": dict(zip(p["a2_Ks"], a2_sizes, strict=True)),
        "names": [f"({R_i:g}, {rho_i:g})" for R_i, rho_i in imbalances],
    }  # fmt: skip


def generalised_dnc_at(
    class_sizes,
    L: int,
    lam: float,
    *,
    runs: dict | None = None,
    ufm_starts: int = 2,
    ufm_steps: int = 600,
    starts: int = 8,
    steps: int = 400,
    seed: int = 0,
    device="cpu",
    dtype="float64",
) -> dict:
    """Generalised DNC at one (L, lam) and the best matrix a search finds there (chapter 10).

    The reference for gradient-descent runs with class sizes: Z*_lam (``ufm_minimiser``), the
    deep reduced loss of generalised DNC at its best scale (``generalised_dnc_losses``) and the
    best of ``search_global_optimum`` at (L, lam) from random starts, generalised DNC, the circle,
    the pair structure and ``runs`` (names mapped to K x K class means, e.g. of the runs, so no
    run can end below the search unnoticed). Returns ``Z`` (K x N), ``means``, ``loss``,
    ``best_loss``, ``best_rank`` and ``best_source`` (the start that first reached it).
    """
    from ..structures import pair_matrix

    sizes = check_class_sizes(class_sizes)
    K, where = len(sizes), {"seed": seed, "device": device, "dtype": dtype}
    ufm = ufm_minimiser(sizes, [lam], starts=ufm_starts, steps=ufm_steps, progress=False, **where)
    loss = generalised_dnc_losses(ufm.best_means[0], sizes, [L], lam)[1][0]
    structured = {"generalised DNC": ufm.best_means[0], "circle": circle_gram(K)}
    structured.update({"pair": pair_matrix(K), **(runs or {})})
    opt = _search(sizes, [L], [lam], structured, None, starts, steps, seed, device, dtype, False)
    return {
        "Z": ufm.logits[0], "means": ufm.best_means[0], "loss": loss,
        "best_loss": float(opt.best_loss[0]),
        "best_rank": int((opt.best_singular_values[0] > 0).sum()),
        "best_source": opt.labels[int(opt.best_start[0])],
    }  # fmt: skip
