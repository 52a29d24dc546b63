"""Chapter 6's measurements over its grid of critical points (Theorems 4 and 6, Lemma 2).

Built on ``dufm.geometry`` (the exact Hessian at a structure's critical point) and
``dufm.theory.critical`` (the critical scales, the fold, the thresholds, the flatness fit):

- ``CriticalGrid``, ``critical_structures``: the grid (classes, samples per class, depths, weight
  decays 2^-e, width K + extra_width, seed, eigenvalue tolerance, device) and the structures
  with a critical point of one scale at K classes (DNC, and the pair structure for even K).
- ``critical_points``: ``dufm.geometry.critical_point_summary`` at every small and
  scale-divergent root of the grid (Theorem 4's negative-eigenvalue counts, the local minima).
- ``threshold_brackets``, ``count_table_rows``: the bisection brackets of the scale above which
  no negative eigenvalue is left, and the table of counts per (structure, K, L).
- ``PROBE_SIDES``, ``threshold_probes``: the counts at (1 -+ r) times the fold and the threshold,
  predicted by ``negative_count_bands`` and measured at several widths.
- ``lemma2_over_grid``: Lemma 2 at every DNC critical scale of the grid.
- ``flatness_limits``, ``flatness_summary``, ``per_norm_sentence``: Theorem 6's flatness ratios,
  their extrapolated limits and predictions beyond the grid, and what the chapter says of them.
- ``sign_change_points``, ``flatness_ratio_series``: the data of the chapter's two figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from .geometry import (
    attraction_threshold,
    critical_point_summary,
    lemma2_errors,
    lemma2_hessian_errors,
    negative_count,
    spectral_norms,
    structure_spectrum,
)
from .theory.critical import (
    branch_scale,
    extrapolated_limit,
    fold_scale,
    negative_count_bands,
    threshold_scale,
)
from .validation import check_int, check_int_list, check_positive

NORMS = ("frobenius", "spectral", "trace")

# Where the probes sit: (the scale probed, the side (-1 below, +1 above), which count of
# ``negative_count_bands`` is predicted there: the first of the stretch above a point, the
# last just below the threshold).
PROBE_SIDES = {
    "fold (1 - r)": ("fold", -1, 0),
    "fold (1 + r)": ("fold", 1, 0),
    "threshold (1 - r)": ("threshold", -1, -1),
    "threshold (1 + r)": ("threshold", 1, 0),
}


def critical_structures(K: int) -> tuple:
    """The structures with a critical point of one scale at K classes: ("dnc",) for odd K,
    ("dnc", "pair") for even K (the pair structure needs partner classes; chapter 6)."""
    check_int("K", K, 2)
    return ("dnc", "pair") if K % 2 == 0 else ("dnc",)


@dataclass(frozen=True)
class CriticalGrid:
    """Chapter 6's grid of critical points (Theorems 4 and 6).

    Every K of ``Ks`` (>= 3), n samples per class, every depth L of ``depths``, the weight
    decays 2^-e for e in ``lam_exponents``, width K + ``extra_width``; ``seed`` draws the
    orthogonal factors of the Lemma-1 factorisation, ``rtol`` is the relative tolerance below
    which an eigenvalue counts as negative (``dufm.geometry.negative_count``), ``device`` the
    torch device of the Hessians.
    """

    Ks: tuple
    n: int
    depths: tuple
    lam_exponents: tuple
    extra_width: int = 2
    seed: int = 0
    rtol: float = 1e-10
    device: str = "cpu"

    def __post_init__(self):
        object.__setattr__(self, "Ks", tuple(check_int_list("Ks", self.Ks, 3)))
        object.__setattr__(self, "depths", tuple(check_int_list("depths", self.depths, 1)))
        exponents = tuple(check_int_list("lam_exponents", self.lam_exponents, 1))
        object.__setattr__(self, "lam_exponents", exponents)
        check_int("n", self.n, 1)
        check_int("extra_width", self.extra_width, 0)
        check_int("seed", self.seed, 0)
        check_positive("rtol", self.rtol)

    def keys(self, min_depth: int = 1) -> list:
        """(K, L, structure) for every K, every depth L >= ``min_depth`` and every structure of
        ``critical_structures``(K), in that nesting order."""
        return [
            (K, L, s)
            for K in self.Ks
            for L in self.depths
            if L >= min_depth
            for s in critical_structures(K)
        ]


def critical_points(grid: CriticalGrid) -> list:
    """Chapter 6's measurement at every critical point of the grid (Theorem 4).

    For every (K, L, structure) of ``grid.keys()``, every weight decay 2^-e and both roots of
    ``branch_scale`` that exist ("small", "large"), the row of ``critical_point_summary`` at
    width K + extra_width (with the orbit test at the large roots), extended by K, L, e,
    structure, root, scale and "lam_gap" (|lam(scale) / 2^-e - 1|, how far the critical-point
    equation's lam is from the grid's). Rows in that order.
    """
    records = []
    for K, L, structure in grid.keys():
        for e in grid.lam_exponents:
            for branch in ("small", "large"):
                scale = branch_scale(structure, K, grid.n, L, 2.0**-e, branch)
                if scale is None:
                    continue
                row = critical_point_summary(
                    structure,
                    K,
                    grid.n,
                    L,
                    scale,
                    K + grid.extra_width,
                    grid.seed,
                    grid.rtol,
                    orbit=branch == "large",
                    device=grid.device,
                )
                row.update(
                    K=K,
                    L=L,
                    e=e,
                    structure=structure,
                    root=branch,
                    scale=scale,
                    lam_gap=abs(row["lam"] / 2.0**-e - 1),
                )
                records.append(row)
    return records


def _rows_of(records: list, K: int, L: int, structure: str, root: str) -> list:
    return [
        r for r in records if (r["K"], r["L"], r["structure"], r["root"]) == (K, L, structure, root)
    ]


def threshold_brackets(grid: CriticalGrid, records: list, steps: int = 30) -> dict:
    """Brackets of the scale at which the scale-divergent point loses its last negative
    eigenvalue (Theorem 4(ii) and the pair structure's analogue; chapter 6's table and check 5).

    For every (K, L, structure) whose large roots in ``records`` (``critical_points``) include
    a saddle and, above the largest saddle, a point without negative eigenvalue,
    ``dufm.geometry.attraction_threshold`` bisects between the two (``steps`` halvings).
    Returns {(structure, K, L): (saddle end, attractive end)}.
    """
    brackets = {}
    for K, L, s in grid.keys():
        large = sorted(_rows_of(records, K, L, s, "large"), key=lambda r: r["scale"])
        saddles = [r["scale"] for r in large if r["negative"] > 0]
        above = [r["scale"] for r in large if saddles and r["scale"] > max(saddles)]
        if saddles and above:
            brackets[s, K, L] = attraction_threshold(
                s,
                K,
                grid.n,
                L,
                max(saddles),
                min(above),
                K + grid.extra_width,
                steps,
                grid.seed,
                grid.rtol,
                grid.device,
            )
    return brackets


def count_table_rows(grid: CriticalGrid, records: list, brackets: dict) -> list:
    """Chapter 6's table of negative-eigenvalue counts, one row per (structure, K, L).

    Columns: structure, K, L, the counts at the small roots ("—" where there is none) and at the
    large roots (largest lam first in both), the fold scale (5 decimals, "—" at L = 1), the
    bracket of ``threshold_brackets`` and the closed form ``threshold_scale`` (6 decimals, or
    "—").
    """
    table = []
    for K, L, s in grid.keys():
        small = sorted(_rows_of(records, K, L, s, "small"), key=lambda r: r["e"])
        large = sorted(_rows_of(records, K, L, s, "large"), key=lambda r: r["e"])
        formula, bracket = threshold_scale(s, K, L), brackets.get((s, K, L))
        table.append(
            [
                s,
                K,
                L,
                " ".join(str(r["negative"]) for r in small) or "—",
                " ".join(str(r["negative"]) for r in large),
                "—" if L == 1 else f"{fold_scale(s, K, grid.n, L):.5f}",
                "—" if bracket is None else f"{bracket[0]:.6f} – {bracket[1]:.6f}",
                "—" if formula is None else f"{formula:.6f}",
            ]
        )
    return table


def threshold_probes(grid: CriticalGrid, width_extras, rtol: float = 1e-3) -> tuple:
    """Negative-eigenvalue counts beside the fold and the threshold (Theorem 4(ii); chapter 6's
    probe table and checks 4 and 5 of the width argument).

    For every (K, L >= 2, structure) and every probe of ``PROBE_SIDES`` at (1 -+ ``rtol``) times
    the fold or ``threshold_scale``: the count predicted by ``negative_count_bands`` and those
    measured at width K + extra_width (with ``critical_point_summary``) and at K + each of
    ``width_extras``. Returns (probes, points, rows): probes {(structure, K, L, probe):
    (counts, predicted)}, counts at the widths in that order; points, the summaries at
    K + extra_width with K, L, structure, scale and probe added; rows, one per (structure, K,
    L): structure, K, L, the threshold (5 decimals) and "measured (predicted)" per probe.
    """
    check_positive("rtol", rtol)
    probes, points, rows = {}, [], []
    for K, L, s in grid.keys(min_depth=2):
        d = K + grid.extra_width
        where_scale = {"fold": fold_scale(s, K, grid.n, L), "threshold": threshold_scale(s, K, L)}
        for where, (point, side, pick) in PROBE_SIDES.items():
            scale = where_scale[point] * (1 + side * rtol)
            expected = negative_count_bands(s, K, grid.n, L, scale)[pick]
            main = critical_point_summary(
                s, K, grid.n, L, scale, d, grid.seed, grid.rtol, device=grid.device
            )
            main.update(K=K, L=L, structure=s, scale=scale, probe=where)
            points.append(main)
            counts = [main["negative"]] + [
                negative_count(
                    structure_spectrum(s, K, grid.n, L, scale, K + extra, grid.seed, grid.device)[
                        2
                    ],
                    grid.rtol,
                )
                for extra in width_extras
            ]
            probes[s, K, L, where] = (counts, expected)
        cells = [f"{probes[s, K, L, w][0][0]} ({probes[s, K, L, w][1]})" for w in PROBE_SIDES]
        rows.append([s, K, L, f"{where_scale['threshold']:.5f}", *cells])
    return probes, points, rows


def lemma2_over_grid(grid: CriticalGrid, trials: int = 3) -> tuple:
    """Lemma 2 over chapter 6's grid (the last step of Theorem 4(ii); its check 8 and record).

    (i, ii) ``dufm.geometry.lemma2_errors`` for every K, every class c and every distinct DNC
    critical scale (small and large roots of every depth and weight decay of the grid); (iii)
    ``dufm.geometry.lemma2_hessian_errors`` (``trials`` directions per matrix) at the
    scale-divergent DNC points of the largest and the smallest lam of each (K, L). Returns
    (errors, columns, points, alphas): errors {"split", "lemma": largest; "psd": smallest;
    "hessian": largest}; columns, the number of (c, alpha) pairs; points, the (K, L, alpha) of
    (iii); alphas, every DNC critical scale per (K, L), concatenated.
    """
    check_int("trials", trials, 1)
    n, exponents = grid.n, grid.lam_exponents
    dnc_scales = {}
    for K in grid.Ks:
        for L in grid.depths:
            roots = [
                branch_scale("dnc", K, n, L, 2.0**-e, branch)
                for e in exponents
                for branch in ("small", "large")
            ]
            dnc_scales[K, L] = sorted(a for a in roots if a is not None)
    errors = {"split": 0.0, "lemma": 0.0, "psd": 1.0}
    for K in grid.Ks:
        alphas = sorted({a for L in grid.depths for a in dnc_scales[K, L]})
        for c in range(K):
            for alpha in alphas:
                one = lemma2_errors(K, c, alpha)
                errors["split"] = max(errors["split"], one["split"])
                errors["lemma"] = max(errors["lemma"], one["lemma"])
                errors["psd"] = min(errors["psd"], one["psd"])
    large_roots = {
        (K, L): [branch_scale("dnc", K, n, L, 2.0**-e, "large") for e in exponents]
        for K, L in dnc_scales
    }
    points = [
        (K, L, a)
        for (K, L), roots in large_roots.items()
        for a in {min(a for a in roots if a), max(a for a in roots if a)}
    ]
    errors["hessian"] = max(
        lemma2_hessian_errors(K, n, L, a, K + grid.extra_width, trials, grid.seed, grid.device)
        for K, L, a in points
    )
    columns = sum(K * len({a for L in grid.depths for a in dnc_scales[K, L]}) for K in grid.Ks)
    every = [a for scales in dnc_scales.values() for a in scales]
    return errors, columns, points, every


def _large_branch(records: list, K: int, L: int, structure: str) -> dict:
    return {r["e"]: r for r in _rows_of(records, K, L, structure, "large")}


def flatness_limits(
    grid: CriticalGrid, records: list, fit_points: int = 5, probe_e: int = 20
) -> tuple:
    """Theorem 6 over chapter 6's grid: the flatness ratios F_DNC / F_LR, their limits and
    predictions beyond the grid (the chapter's flatness table, figure and check 9).

    For every even K, every L and every norm of ``NORMS``: ``extrapolated_limit`` of the ratio
    (and of F_DNC / (lam alpha)) over the ``fit_points`` smallest lam at which both large roots
    exist in ``records``, in alpha (the DNC scale), predicting the value at lam = 2^-``probe_e``,
    where both points are then measured. Returns (flat, rows, exponents): flat {(K, L, norm):
    the dict of ``extrapolated_limit`` with "measured", "scaled_predicted", "scaled_measured",
    "last" (the ratio at the grid's smallest lam), "drop" and "lam_drop" (the factors by which
    F_DNC and lam fall between the two smallest lam of the fit), "one" (the limit within twice
    its spread of 1), K, L, norm}; rows, the table's; exponents, the fit's e of the last case.
    """
    check_int("fit_points", fit_points, 2)
    n, lam_far = grid.n, 2.0**-probe_e
    flat, rows, both = {}, [], []
    for K in (k for k in grid.Ks if k % 2 == 0):
        d = K + grid.extra_width
        for L in grid.depths:
            dnc, pair = (_large_branch(records, K, L, s) for s in ("dnc", "pair"))
            both = sorted(set(dnc) & set(pair))[-fit_points:]
            alphas = [dnc[e]["scale"] for e in both]
            far = {s: branch_scale(s, K, n, L, lam_far, "large") for s in ("dnc", "pair")}
            far_norms = {
                s: spectral_norms(
                    structure_spectrum(s, K, n, L, far[s], d, grid.seed, grid.device)[2]
                )
                for s in far
            }
            for norm in NORMS:
                series = [dnc[e][norm] / pair[e][norm] for e in both]
                scaled = [dnc[e][norm] / (dnc[e]["lam"] * dnc[e]["scale"]) for e in both]
                f = extrapolated_limit(alphas, series, far["dnc"])
                f["measured"] = far_norms["dnc"][norm] / far_norms["pair"][norm]
                f["scaled_predicted"] = extrapolated_limit(alphas, scaled, far["dnc"])["predicted"]
                f["scaled_measured"] = far_norms["dnc"][norm] / (lam_far * far["dnc"])
                f.update(
                    last=series[-1],
                    drop=dnc[both[-2]][norm] / dnc[both[-1]][norm],
                    lam_drop=dnc[both[-2]]["lam"] / dnc[both[-1]]["lam"],
                    one=abs(f["limit"] - 1) <= 2 * f["spread"],
                    K=K,
                    L=L,
                    norm=norm,
                )
                flat[K, L, norm] = f
                rows.append(
                    [
                        K,
                        L,
                        norm,
                        " ".join(f"{x:.4f}" for x in series),
                        f"{f['predicted']:.5f}",
                        f"{f['measured']:.5f}",
                        f"{f['limit']:.3f}",
                        f"{f['spread']:.3f}",
                    ]
                )
    return flat, rows, both


def per_norm_sentence(flat: dict) -> str:
    """Per norm, how many of the limits of ``flatness_limits`` are consistent with 1, and their
    range, at L >= 2 and at L = 1 (chapter 6's Theorem 6 paragraph), e.g. "Frobenius norm: 1 of
    the 2 at L ≥ 2 (0.950 to 1.010) and 0 of the 1 at L = 1 (1.200 to 1.200); spectral ..."."""
    per_norm = []
    for norm in NORMS:
        parts = []
        for name, deep in (("at L ≥ 2", True), ("at L = 1", False)):
            group = [f for f in flat.values() if f["norm"] == norm and (f["L"] >= 2) == deep]
            if group:
                c = [f["limit"] for f in group]
                parts.append(
                    f"{sum(f['one'] for f in group)} of the {len(group)} {name} "
                    f"({min(c):.3f} to {max(c):.3f})"
                )
        per_norm.append(f"{norm.replace('frobenius', 'Frobenius')} norm: " + " and ".join(parts))
    return "; ".join(per_norm)


def flatness_summary(flat: dict, probe_e: int) -> dict:
    """What chapter 6 says of the limits of ``flatness_limits`` (its glued "flat-*" values and
    the Theorem 6 record).

    "moved" (largest relative change of a ratio from the grid's smallest lam to 2^-``probe_e``),
    "cases", "away" (limits not consistent with 1), "pred" (the largest relative miss of a
    prediction, ratio or F_DNC / (lam alpha)), "min", "max", "below", "above" (limits below and
    above 1), "probe" ("2^-probe_e"), "drop", "lam-drop" and "first" (of the smallest even K at
    the largest L, Frobenius norm), "one-pred" (the largest miss of the fit with the limit fixed
    to 1 among the limits consistent with 1; nan if none), "one-miss" (the smallest among the
    others; nan if none) and "per-norm" (``per_norm_sentence``).
    """
    if not flat:
        raise ValueError("flat={} is not allowed: no flatness ratio (no even K)")
    limits = [f["limit"] for f in flat.values()]
    worst_pred = max(
        max(
            abs(f["predicted"] / f["measured"] - 1),
            abs(f["scaled_predicted"] / f["scaled_measured"] - 1),
        )
        for f in flat.values()
    )
    one_miss = {
        ok: [abs(f["predicted_one"] / f["measured"] - 1) for f in flat.values() if f["one"] == ok]
        for ok in (True, False)
    }
    first = flat[min(K for K, _, _ in flat), max(L for _, L, _ in flat), "frobenius"]
    return {
        "moved": max(abs(f["last"] / f["measured"] - 1) for f in flat.values()),
        "cases": len(flat),
        "away": sum(not f["one"] for f in flat.values()),
        "pred": worst_pred,
        "min": min(limits),
        "max": max(limits),
        "below": sum(c < 1 for c in limits),
        "above": sum(c > 1 for c in limits),
        "probe": f"2^-{probe_e}",
        "drop": first["drop"],
        "lam-drop": first["lam_drop"],
        "first": f"K = {first['K']}, L = {first['L']}",
        "one-pred": max(one_miss[True], default=float("nan")),
        "one-miss": min(one_miss[False], default=float("nan")),
        "per-norm": per_norm_sentence(flat),
    }


def sign_change_points(records: list, probe_points: list) -> list:
    """The points of chapter 6's Hessian figure: every large root of ``critical_points`` and
    every probe of ``threshold_probes`` except those below the fold, at L >= 2.

    Returns (structure, K, L, scale / threshold_scale, value) in that order; value is
    "normal_rel" where measured (a point without negative eigenvalue), else "min_rel" (the most
    negative eigenvalue over the largest).
    """
    on_branch = [r for r in records if r["root"] == "large"] + [
        r for r in probe_points if r["probe"] != "fold (1 - r)"
    ]
    return [
        (
            r["structure"],
            r["K"],
            r["L"],
            r["scale"] / threshold_scale(r["structure"], r["K"], r["L"]),
            r.get("normal_rel", r["min_rel"]),
        )
        for r in on_branch
        if r["L"] >= 2
    ]


def flatness_ratio_series(records: list, flat: dict, norm: str) -> list:
    """The curves of chapter 6's flatness figure for one norm: per (K, L) of ``flat``, a dict
    with K, L, "lams" and "ratios" (F_DNC / F_LR at every lam of the grid at which both large
    roots exist in ``records``, largest lam first), "measured" (the ratio beyond the grid) and
    "limit" (extrapolated)."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not allowed: one of {NORMS}")
    curves = []
    for (K, L, name), f in flat.items():
        if name != norm:
            continue
        dnc = {e: r[norm] for e, r in _large_branch(records, K, L, "dnc").items()}
        pair = {e: r[norm] for e, r in _large_branch(records, K, L, "pair").items()}
        es = sorted(set(dnc) & set(pair))
        curves.append(
            {
                "K": K,
                "L": L,
                "lams": [2.0**-e for e in es],
                "ratios": [dnc[e] / pair[e] for e in es],
                "measured": f["measured"],
                "limit": f["limit"],
            }
        )
    return curves
