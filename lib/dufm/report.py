"""Text and tables for the chapters: HTML tables and (K, L) cells in prose.

``html_table`` renders a notebook table in every book renderer (all chapters);
``describe_cells`` names the cells of a (K, L) map in words (chapter 2's Theorem-1 maps).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
from IPython.display import HTML


class Markup(str):
    """A table cell that is already HTML (a link, say): ``html_table`` does not escape it."""


def link(text: str, href: str) -> Markup:
    """An HTML link as a ``Markup`` cell."""
    return Markup(f'<a href="{escape(href, quote=True)}">{escape(text)}</a>')


def html_table(headers, rows, caption: str = ""):
    """An HTML table (IPython ``HTML``) for a notebook output: rendered by any book renderer.

    ``headers`` is a list of column titles; ``rows`` a list of lists of cell values, shown with
    ``str`` (format them first) and escaped, except ``Markup`` cells. Numbers are right-aligned.
    """

    def cell(value, tag):
        align = "right" if isinstance(value, int | float) or _numeric(value) else "left"
        text = value if isinstance(value, Markup) else escape(str(value))
        return f'<{tag} style="text-align: {align}">{text}</{tag}>'

    head = "".join(cell(h, "th") for h in headers)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return HTML(
        f'<table class="table">{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _numeric(text) -> bool:
    try:
        float(str(text).replace("×", ""))
    except ValueError:
        return False
    return True


def describe_cells(mask, Ks: Sequence[int], Ls: Sequence[int]) -> str:
    """Text naming the True cells of a (len(Ks), len(Ls)) map by depth: "K = 4, 5 at L = 2; ...".

    Returns "none" for an empty mask. Used to put the cells of the Theorem-1 maps into prose.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(Ks), len(Ls)):
        raise ValueError(f"mask.shape={mask.shape} is not allowed: must be ({len(Ks)}, {len(Ls)})")
    parts = []
    for j, L in enumerate(Ls):
        ks = [str(K) for i, K in enumerate(Ks) if mask[i, j]]
        if ks:
            parts.append(f"K = {', '.join(ks)} at L = {L}")
    return "; ".join(parts) if parts else "none"


# ----------------------------------------------------------------------------------------------
# Chapter 10 (imbalanced classes, Theorems A1-A3): sentences and tables from its measurements
# ----------------------------------------------------------------------------------------------

_STRUCTURE_WORDS = {
    "dnc": "DNC",
    "pair": "the pair structure",
    "mixture": "a mixture of rank {rank}",
    "other": "another structure of rank {rank}",
    "zero": "zero",
    "diverged": "divergence",
}


def _g(value) -> str:
    return f"{value:g}"


def structure_groups(rows: Sequence[dict]) -> str:
    """The structures a set of runs ended in, grouped, for prose (chapter 10's balanced runs).

    ``rows``: dicts with ``structure``, ``rank``, ``init_scale`` and ``seed``
    (``outcomes.summarise_runs``). Groups by structure (and rank, for mixtures and others) in
    order of first appearance, e.g. "DNC in 2 runs (init 0.3: seeds 0, 4); the pair structure
    in 1 (init 0.05: seed 0)".
    """
    groups: dict = {}
    for row in rows:
        word = _STRUCTURE_WORDS.get(row["structure"], row["structure"])
        groups.setdefault(word.format(rank=row["rank"]), {}).setdefault(
            row["init_scale"], []
        ).append(row["seed"])
    parts = []
    for k, (word, inits) in enumerate(groups.items()):
        count = sum(len(seeds) for seeds in inits.values())
        where = "; ".join(
            f"init {_g(init)}: seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
            for init, seeds in inits.items()
        )
        noun = (" run" if count == 1 else " runs") if k == 0 else ""
        parts.append(f"{word} in {count}{noun} ({where})")
    return "; ".join(parts) if parts else "no runs"


def sel_rate_text(names: Sequence[str], rates: Sequence[dict], tol: float) -> str:
    """How fast Z*_lam approaches SEL, in words (chapter 10, Theorem A3).

    ``rates``: ``theory.approach_rate`` per imbalance (``names``, e.g. "(4, 0.5)"). States the
    range of distance * log(1/lam), the fitted exponent s of distance ~ log(1/lam)^-s, and
    compares s with 1 (the rate 1/log(1/lam)) with tolerance ``tol``.
    """
    ranges = "; ".join(
        f"{min(r['products']):.3f} to {max(r['products']):.3f} for {name}"
        for name, r in zip(names, rates, strict=True)
    )
    s = [r["exponent"] for r in rates]
    fits = ", ".join(f"{value:.2f}" for value in s)
    if all(abs(value - 1) <= tol for value in s):
        how = f"as 1/log(1/λ) (s within {tol:g} of 1)"
    elif all(value < 1 - tol for value in s):
        how = f"more slowly than 1/log(1/λ) (s below 1 − {tol:g})"
    elif all(value > 1 + tol for value in s):
        how = f"faster than 1/log(1/λ) (s above 1 + {tol:g})"
    else:
        how = "at rates that differ between the imbalances"
    return (
        f"the distance times log(1/λ) runs from {ranges}; a least-squares fit of "
        f"distance ∝ log(1/λ)^(−s) gives s = {fits} (in the same order), so the distance falls "
        f"{how}"
    )


def minimiser_rank_text(cases: Sequence[tuple], K: int) -> str:
    """Where Z*_lam leaves the hypothesis of Theorem A3, in one sentence (chapter 10).

    ``cases``: (name, row) pairs, ``row`` from ``theory.single_layer_minimisers`` with
    ``in_hypothesis`` False.
    """
    if not cases:
        return f"At every λ computed, Z*_λ has rank K − 1 = {K - 1} and fits every class."
    what = "; ".join(
        f"{name} at λ = 2^-{row['e']}: rank {row['rank']}, {row['minority_fitted']} of its "
        f"{row['minority']} minority classes fitted (positive margin)"
        for name, row in cases
    )
    return (
        f"Where λ is large and the minority classes small, Z*_λ falls short of rank K − 1 or "
        f"leaves classes unfitted, outside the regime of the theorem's proof: {what}."
    )


def grid_threshold_text(names: Sequence[str], pairs: Sequence[list], exponents) -> str:
    """The (lam_0, L_0) that a grid of weight decays supports, per imbalance (chapter 10).

    ``pairs``: ``theory.grid_thresholds`` per imbalance (largest lam_0 first). When every
    imbalance has L_0 = 1 over the whole grid, says so: the smallest L_0 there can be, since
    generalised DNC is the global minimiser at L = 1.
    """
    parts = []
    for name, found in zip(names, pairs, strict=True):
        if not found:
            parts.append(f"{name}: none (generalised DNC is not beaten at the smallest λ)")
            continue
        e0, L0 = found[0]
        whole = " (the whole grid)" if e0 == min(exponents) else ""
        parts.append(f"{name}: L₀ = {L0} for every λ ≤ 2^-{e0}{whole}")
    text = "; ".join(parts)
    if all(found and found[0] == (min(exponents), 1) for found in pairs):
        text += (
            ". So at every λ of the grid generalised DNC stops being a global minimum at L = 2, "
            "the smallest depth at which it can, and the grid does not reach λ₀"
        )
    return text


def _count(k: int, n: int) -> str:
    return f"all {n}" if k == n else f"none of the {n}" if k == 0 else f"{k} of {n}"


def _span(values) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low} to {high}"


def _depths(values) -> str:
    values = [v for v in values if v is not None]
    return f"L = {_span(values)}" if values else "no depth"


def a3_cases_text(names: Sequence[str], entries: Sequence[Sequence[dict]], L_max: int) -> str:
    """How often generalised DNC is beaten, inside and outside the regime of the proof.

    ``entries``: ``theory.generalised_dnc_comparison`` per imbalance (``names``). Cases where
    Z*_lam has rank K - 1 and fits every class (``in_hypothesis``) are counted apart from the
    others (chapter 10, Theorem A3).
    """
    cases = [(name, row) for name, rows in zip(names, entries, strict=True) for row in rows]
    inside = [row for _, row in cases if row["in_hypothesis"]]
    outside = [(name, row) for name, row in cases if not row["in_hypothesis"]]
    beaten = [row for row in inside if row["beaten_from"] is not None]
    text = (
        f"In {_count(len(beaten), len(inside))} cases of (imbalance, λ) where Z*_λ has rank "
        f"K − 1 and fits every class (the regime of the proof), a matrix the search found "
        f"beats generalised DNC from {_depths(r['beaten_from'] for r in beaten)} on and at "
        f"every larger depth up to L = {L_max}; the best matrix of rank 2 alone does so from "
        f"{_depths(r['low_from'] for r in inside)}."
    )
    if outside:
        what = "; ".join(
            f"{name} at λ = 2^-{row['e']} (rank {row['rank']}, {row['minority_fitted']} of "
            f"{row['minority']} minority classes fitted): "
            + (
                "generalised DNC is not beaten up to the largest depth"
                if row["beaten_from"] is None
                else f"generalised DNC is beaten from L = {row['beaten_from']} as well"
            )
            for name, row in outside
        )
        text += f" Apart from these, outside that regime: {what}."
    return text


def gd_outcome_text(rows: Sequence[dict], K: int, near: float) -> str:
    """Whether gradient-descent runs with class sizes end near generalised DNC (chapter 10).

    ``rows``: ``outcomes.imbalanced_run_outcomes``; a run is near when its ``distance`` is
    below ``near``.
    """
    close = sum(row["distance"] < near for row in rows)
    ranks = [row["rank"] for row in rows]
    if close:
        return f"{close} of {len(rows)} runs end near generalised DNC"
    if max(ranks) < K - 1:
        return (
            f"no run ends near generalised DNC: all end at a lower rank ({min(ranks)} to "
            f"{max(ranks)}, against K − 1 = {K - 1})"
        )
    return "no run ends near generalised DNC"


def a3_threshold_table(names: Sequence[str], entries: Sequence[Sequence[dict]], depths):
    """Theorem A3's table: per imbalance and weight decay, where generalised DNC is beaten.

    ``entries``: ``theory.generalised_dnc_comparison`` per imbalance (``names``); ``depths``
    the depths it measured (from 1). An ``html_table`` (chapter 10).
    """
    j2 = list(depths).index(2) if 2 in depths else None
    headers = [
        "(R, ρ)", "λ", "rank of Z*_λ", "minority fitted", "anything found wins from L",
        "its rank there", "rank 2 wins from L", "proof's L₀ + 1",
        "best / gen. DNC at L = 2", f"at L = {depths[-1]}",
    ]  # fmt: skip
    rows = []
    for name, entry in zip(names, entries, strict=True):
        for row in entry:
            at = row["beaten_from"]
            rows.append([
                name, f"2^-{row['e']}", row["rank"],
                f"{row['minority_fitted']} of {row['minority']}",
                "none" if at is None else at,
                "" if at is None else row["best_ranks"][list(depths).index(at)],
                "none" if row["low_from"] is None else row["low_from"], row["proof_L0"] + 1,
                "" if j2 is None else f"{row['best'][j2] / row['gdnc'][j2]:.3f}",
                f"{row['best'][-1] / row['gdnc'][-1]:.3f}",
            ])  # fmt: skip
    return html_table(headers, rows, caption="Theorem A3: where generalised DNC is beaten")


def a2_summary(a2: dict, depths: Sequence[int]) -> dict:
    """Theorem A2's search in words, one text per glued phrase (chapter 10).

    ``a2``: {K: ``theory.theorem_a2_rows``} with regimes "ii" and "i". Returns texts for
    ``ranks-ii`` and ``ranks-i`` (the rank at every depth, per K), ``superior`` (the depth from
    which the regime-(ii) optimum is diagonally superior at every later depth) and ``zero``
    (the depth from which the regime-(i) optimum is zero), each "...(K = 6); ...(K = 10)".
    """
    from .theory import first_depth_holding_onward

    def onward(rows, test):
        L = first_depth_holding_onward(list(depths), [test(row) for row in rows])
        return "no depth" if L is None else f"L = {L}"

    texts = {
        "ranks-ii": lambda rows: ", ".join(str(row["rank"]) for row in rows),
        "ranks-i": lambda rows: ", ".join(str(row["rank"]) for row in rows),
        "superior": lambda rows: onward(rows, lambda row: row["superior"]),
        "zero": lambda rows: onward(rows, lambda row: row["rank"] == 0),
    }
    regime = {"ranks-ii": "ii", "ranks-i": "i", "superior": "ii", "zero": "i"}
    return {
        key: "; ".join(f"{make(a2[K][regime[key]])} (K = {K})" for K in a2)
        for key, make in texts.items()
    }


def settled_text(changes: Sequence[float], rtol: float, window: int) -> str:
    """How many gradient-descent runs have settled, in one sentence (chapter 10).

    ``changes``: each run's relative loss change over its last ``window`` steps; a run has
    settled when that is below ``rtol``.
    """
    k, n = sum(c < rtol for c in changes), len(changes)
    rule = f"relative loss change over the last {window} steps below {rtol:.0e}"
    if k == n:
        return f"{'All' if n > 1 else 'The'} {n} run{'s' if n > 1 else ''} settled ({rule})"
    return (
        f"{k} of {n} runs settled ({rule}); the others still move (largest change "
        f"{max(changes):.1e}), so where they stand is not a certified limit"
    )


def balanced_text(rows: Sequence[dict], n: int, settled: int) -> str:
    """Where the balanced counterparts of chapter 10's runs ended, in one sentence.

    ``rows``: ``outcomes.summarise_runs`` of the runs with ``n`` samples in every class;
    ``settled``: how many of them settled.
    """
    return (
        f"With balanced classes of the same total size ({n} per class), the same "
        f"initialisations end in {structure_groups(rows)} ({settled} of {len(rows)} settled)"
    )


def crossover_text(entries: Sequence[Sequence[dict]], depths: Sequence[int]) -> str:
    """The proof's rank-2 crossover against the first depth anything found wins (chapter 10).

    ``entries``: ``theory.generalised_dnc_comparison`` per imbalance; ``depths`` its depths.
    Names the ranks of the matrices that beat generalised DNC at that first depth.
    """
    rows = [row for entry in entries for row in entry]
    low = [row["low_from"] for row in rows if row["low_from"] is not None]
    beaten = [row for row in rows if row["beaten_from"] is not None]
    if not beaten:
        return "Nothing found beats generalised DNC at every depth from some depth on"
    first = [row["beaten_from"] for row in beaten]
    ranks = [row["best_ranks"][list(depths).index(row["beaten_from"])] for row in beaten]
    there = f"with matrices of rank {_span(ranks)} at that depth"
    if low and max(first) < min(low):
        return (
            f"The crossover of the proof's rank-2 competitor ({_depths(low)}) is therefore an "
            f"upper bound on the threshold, not the threshold: generalised DNC loses earlier, "
            f"from {_depths(first)}, {there}"
        )
    return (
        f"Anything found beats generalised DNC from {_depths(first)} ({there}), never later "
        f"than the crossover of the proof's rank-2 competitor ({_depths(low)}), which is "
        f"only an upper bound on the threshold"
    )


def gd_table(rows: Sequence[dict], sizes):
    """Chapter 10's gradient-descent runs with class sizes (``outcomes.imbalanced_run_outcomes``)
    as an ``html_table``: loss, settling, rank, distance to generalised DNC, superiority."""
    headers = [
        "init", "seed", "final loss", "change, last tenth", "rank", "distance to gen. DNC",
        "diag. superior", "loss / gen. DNC − 1", "loss / best found − 1",
    ]  # fmt: skip
    body = [
        [
            _g(r["init_scale"]), r["seed"], f"{r['loss']:.8f}", f"{r['change']:.1e}", r["rank"],
            f"{r['distance']:.3f}", "yes" if r["superior"] else "no",
            f"{r['vs_reference']:+.4f}", f"{r['vs_best']:+.2e}",
        ]
        for r in rows
    ]  # fmt: skip
    return html_table(headers, body, caption=f"gradient descent, class sizes {list(sizes)}")


def balanced_table(rows: Sequence[dict], n: int):
    """The balanced counterparts of chapter 10's runs (``outcomes.summarise_runs``) as an
    ``html_table``: structure, rank, loss against the structure's optimum, settling."""
    headers = ["init", "seed", "structure", "rank", "final loss", "vs its optimum", "change"]
    body = [
        [
            _g(r["init_scale"]), r["seed"], r["structure"], r["rank"], f"{r['final_loss']:.8f}",
            "" if r["rel_error"] is None else f"{r['rel_error']:.1e}",
            f"{r['plateau_change']:.1e}",
        ]
        for r in rows
    ]  # fmt: skip
    return html_table(headers, body, caption=f"the same runs with balanced classes, n = {n}")


def sel_table(names: Sequence[str], singles: Sequence[Sequence[dict]]):
    """Chapter 10's single-layer minimisers (``theory.single_layer_minimisers`` per imbalance)
    as an ``html_table``: distance to SEL, its product with log(1/lam), rank, fitted classes."""
    import math

    headers = ["(R, ρ)", "λ", "distance to SEL", "× log(1/λ)", "rank", "classes fitted"]
    headers.append("residual")
    body = [
        [
            name, f"2^-{r['e']}", f"{r['distance']:.4f}",
            f"{r['distance'] * math.log(1 / r['lam']):.3f}", r["rank"], r["fitted"],
            f"{r['residual']:.1e}",
        ]
        for name, rows in zip(names, singles, strict=True)
        for r in rows
    ]  # fmt: skip
    caption = "the single-layer minimiser Z*_λ, certified, against the SEL matrix"
    return html_table(headers, body, caption=caption)


def a2_table(rows: Sequence[dict], K: int, sizes, regime: str):
    """One regime of chapter 10's Theorem A2 search (``theory.theorem_a2_rows``) as a table."""
    headers = ["L", "lam_L", "best loss", "rank", "diag. superior", "first reached from"]
    body = [
        [
            r["L"], f"{r['lam']:.2e}", f"{r['loss']:.8f}", r["rank"],
            "yes" if r["superior"] else "no", r["source"],
        ]
        for r in rows
    ]  # fmt: skip
    caption = f"K = {K}, sizes {list(sizes)}, regime ({regime})"
    return html_table(headers, body, caption=caption)
