"""What a gradient-descent run or a sweep ended in (Figures 1, 2 and 5; chapters 1, 2 and 5).

``run_outcome`` classifies one run's final output and compares its loss with the closed-form
optimum of its structure; ``summarise_runs`` and ``summarise_sweep`` do that for every run of a
``dufm.trainer.train`` or ``dufm.sweep.run_sweep`` result. For a sweep's rows: ``grid_points``,
``point_summary`` and ``sweep_summary`` count the structures of each grid point (with Wilson
intervals), ``structure_ladder`` lists the critical points reached with their optimal losses,
``sweep_trend`` tests a trend along the grid, and the ``check_*`` functions raise
``dufm.checks.CheckFailed`` naming the run and the size of a disagreement.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from .checks import CheckFailed
from .losses import forward
from .metrics import classify_structure
from .stats import increasing_trend_pvalue, wilson_interval
from .theory import optimal_mixture, optimal_scale
from .trainer import INIT_SCHEMES, init_params, make_runs
from .validation import check_int, check_nonnegative, check_positive, check_sizes


def plateau_change(losses, record_steps, window: int) -> float:
    """Relative change of one loss curve over its last ``window`` steps (the settling test).

    |loss(t_0) - loss(T)| / |loss(T)| with T the last of ``record_steps`` and t_0 the first
    recorded step at or after T - ``window`` (``losses`` and ``record_steps`` of the same length,
    steps increasing). A run has settled when this is below a stated tolerance; with ``window``
    a tenth of the steps it is "the relative change over the last tenth of training" of chapters
    5, 8 and 9. Infinite when the final loss is not finite.
    """
    check_int("window", window, 1)
    steps = torch.as_tensor(record_steps)
    losses = torch.as_tensor(losses, dtype=torch.float64)
    if steps.dim() != 1 or losses.shape != steps.shape or len(steps) == 0:
        raise ValueError(
            f"losses of shape {tuple(losses.shape)} and record_steps of shape "
            f"{tuple(steps.shape)} are not allowed: need two 1-D sequences of the same length"
        )
    final = float(losses[-1])
    if not math.isfinite(final):
        return math.inf
    back = int(torch.searchsorted(steps, steps[-1] - window).clamp_max(len(steps) - 1))
    return abs(float(losses[back]) - final) / abs(final)


def run_outcome(
    Z: torch.Tensor, losses, record_steps, L: int, lam: float, window: int, diverged_at=None
) -> dict:
    """Where one gradient-descent run ended (Figures 1, 2 and 5).

    ``structure`` and ``rank`` (``classify_structure`` of the final output Z), the final loss,
    ``plateau_change`` (relative loss change over the last ``window`` recorded steps), and for a
    run that ends in DNC, the pair structure or a mixture the optimal loss of that structure
    (``optimal_scale``, ``optimal_mixture``) with the relative error of the final loss against it
    (None otherwise), and a mixture's number of simplex classes and pairs. ``diverged_at`` is the
    step of the run's first NaN or infinite loss (None: it did not diverge); a diverged run, or
    one whose Z or final loss is not finite, has structure ``"diverged"``, rank NaN and an
    infinite ``plateau_change`` (never settled).
    """
    check_int("window", window, 1)
    final = float(torch.as_tensor(losses, dtype=torch.float64)[-1])
    if diverged_at is not None or not math.isfinite(final) or not bool(torch.isfinite(Z).all()):
        return {
            "structure": "diverged",
            "rank": math.nan,
            "final_loss": final,
            "plateau_change": math.inf,
            "theory_loss": None,
            "rel_error": None,
            "simplex_classes": 0,
            "pairs": 0,
            "diverged_at": diverged_at,
        }
    verdict = classify_structure(Z)
    theory = None
    K, N = Z.shape
    if verdict.name in ("dnc", "pair"):
        theory = optimal_scale(verdict.name, K, N // K, L, lam)[1]
    elif verdict.name == "mixture":
        theory = optimal_mixture(K, N // K, L, lam, verdict.simplex_classes, verdict.pairs)[2]
    return {
        "structure": verdict.name,
        "rank": verdict.rank,
        "final_loss": final,
        "plateau_change": plateau_change(losses, record_steps, window),
        "theory_loss": theory,
        "rel_error": None if theory is None else abs(final - theory) / theory,
        "simplex_classes": len(verdict.simplex_classes),
        "pairs": len(verdict.pairs),
        "diverged_at": None,
    }


def summarise_runs(result, window: int = 2000) -> list[dict]:
    """``run_outcome`` of every run of a ``dufm.trainer.train`` result, with its seed and init
    scale (Figure 1)."""
    check_int("window", window, 1)
    return [
        {
            "seed": run.seed,
            "init_scale": run.init_scale,
            **run_outcome(
                result.logits[i],
                result.losses[i],
                result.record_steps,
                result.L,
                run.lam,
                window,
                (result.diverged or [None] * len(result.configs))[i],
            ),
        }
        for i, run in enumerate(result.configs)
    ]


def summarise_sweep(result, window: int = 2000) -> list[dict]:
    """``run_outcome`` of every run of a ``dufm.sweep.run_sweep`` result, with its seed, width,
    weight decay and init scale (Figures 2 and 5)."""
    check_int("window", window, 1)
    L = result.feature_svals.shape[1]
    return [
        {
            **asdict(run),
            **run_outcome(
                result.logits[i],
                result.losses[i],
                result.record_steps[i],
                L,
                run.lam,
                window,
                (result.diverged or [None] * len(result.configs))[i],
            ),
        }
        for i, run in enumerate(result.configs)
    ]


def initial_output_std(
    K: int, n: int, L: int, d: int, init: str, init_scale: float, seeds
) -> float:
    """Standard deviation of the entries of the initial output Z = W_L ... W_1 H_1 (K x Kn, mean
    0), pooled over the runs with the given seeds at width d, as ``dufm.trainer.init_params``
    draws them (the output scale a width sweep starts from; chapter 5's width control)."""
    check_sizes(K=K, n=n, L=L, d=d)
    runs = make_runs(seeds, d, init_scale, 1.0, 1.0)  # lam and lr do not enter the start
    Z = forward(init_params(K, n, L, runs, init))[-1]
    return float(Z.pow(2).mean().sqrt())


def predicted_initial_output_std(L: int, d: int, init: str, init_scale: float) -> float:
    """The standard deviation of the initial output's entries that ``dufm.trainer.init_params``
    implies at width d (chapter 5's width control), with s = init_scale: each entry of
    Z = W_L ... W_1 H_1 is a sum over d^L paths of products of L + 1 independent entries, so its
    variance is d^L times the product of the entries' variances: s^(L+1) d^(L/2) for "normal",
    s^(L+1) d^(-1/2) for "fan_in" and s^L at every width for "fixed_output" (H_1 at unit scale)."""
    check_sizes(L=L, d=d)
    check_nonnegative("init_scale", init_scale)
    if init not in INIT_SCHEMES:
        raise ValueError(f"init={init!r} is not allowed: must be one of {INIT_SCHEMES}")
    s = init_scale
    return {"normal": s ** (L + 1) * d ** (L / 2), "fan_in": s ** (L + 1) / d**0.5,
            "fixed_output": s**L}[init]  # fmt: skip


# --- a sweep's grid points, ladder and trends (Figures 2 and 5; chapter 5) ----------------------

# What a run can end in: classify_structure's names, and "diverged" (run_outcome).
OUTCOMES = ("dnc", "mixture", "pair", "other", "zero", "diverged")
TREND_AXES = ("d", "minus_log2_lam")  # the width, or -log2 of the weight decay ("as lam falls")
TREND_OUTCOMES = ("dnc", "rank")  # 1 for a run ending in DNC (else 0), or the rank of its Z


def grid_points(rows: list[dict], key: str) -> dict:
    """The rows of each grid point of a sweep, ``{value of key: [row, ...]}``, in increasing order
    of the value (``key`` "d" or "lam"; Figures 2 and 5, chapter 5)."""
    if key not in ("d", "lam"):
        raise ValueError(f"key={key!r} is not allowed: must be 'd' or 'lam'")
    return {v: [r for r in rows if r[key] == v] for v in sorted({r[key] for r in rows})}


def point_summary(runs: list[dict], plateau_rtol: float) -> dict:
    """What the runs of one grid point ended in (Figures 2 and 5, chapter 5).

    ``runs`` are ``summarise_sweep`` rows. Returns ``runs`` (their number), ``settled`` (runs whose
    ``plateau_change`` is below ``plateau_rtol``), the count of each of ``OUTCOMES`` (so they sum
    to ``runs``), ``p_dnc`` (the fraction of all runs ending in DNC; a diverged run did not) with
    its 95% Wilson interval ``low``, ``high`` (``dufm.stats.wilson_interval``), ``ranks`` (one per
    run that did not diverge) and ``mean_rank`` (their mean; nan if every run diverged).
    """
    if not runs:
        raise ValueError("runs=[] is not allowed: a grid point has at least one run")
    check_positive("plateau_rtol", plateau_rtol)
    count = {s: sum(r["structure"] == s for r in runs) for s in OUTCOMES}
    low, high = wilson_interval(count["dnc"], len(runs))
    ranks = [r["rank"] for r in runs if r["structure"] != "diverged"]
    return {
        "runs": len(runs),
        "settled": sum(r["plateau_change"] < plateau_rtol for r in runs),
        **count,
        "p_dnc": count["dnc"] / len(runs),
        "low": low,
        "high": high,
        "ranks": ranks,
        "mean_rank": sum(ranks) / len(ranks) if ranks else math.nan,
    }


def sweep_summary(rows: list[dict], key: str, plateau_rtol: float) -> dict:
    """``point_summary`` of every grid point of a sweep, ``{value of key: summary}`` in increasing
    order of the value (the points of Figures 2 and 5, chapter 5)."""
    return {v: point_summary(runs, plateau_rtol) for v, runs in grid_points(rows, key).items()}


def structure_blocks(row: dict, K: int) -> tuple[int, int]:
    """(m, p): the simplex classes and pairs of a run that ended in DNC (K, 0), the pair structure
    (0, K/2) or a mixture (chapter 5's ladder); its output's rank is then max(m - 1, 0) + p."""
    name = row["structure"]
    if name == "dnc":
        return K, 0
    if name == "pair":
        return 0, K // 2
    if name == "mixture":
        return row["simplex_classes"], row["pairs"]
    raise ValueError(f"row structure {name!r} is not allowed: must be 'dnc', 'pair' or 'mixture'")


def structure_ladder(rows: list[dict], K: int, n: int, L: int, lam: float) -> list[dict]:
    """The critical points that the runs at weight decay ``lam`` ended in (Figure 5's ranks).

    One dict per structure reached, in decreasing order of rank: ``simplex_classes`` m, ``pairs``
    p, ``rank`` max(m - 1, 0) + p, ``name`` ("DNC", "pair" or "m-class simplex + p pair(s)"),
    ``optimum`` (the optimal loss of that structure, ``dufm.theory.optimal_mixture``) and
    ``losses`` (the final losses of its runs). Runs in no recognised structure are left out.
    """
    reached: dict = {}
    for r in rows:
        if r["lam"] == lam and r["structure"] in ("dnc", "pair", "mixture"):
            reached.setdefault(structure_blocks(r, K), []).append(r["final_loss"])
    ladder = []
    for (m, p), losses in sorted(reached.items(), reverse=True):
        pairs = [(m + 2 * j, m + 2 * j + 1) for j in range(p)]
        optimum = optimal_mixture(K, n, L, lam, list(range(m)), pairs)[2]
        name = "DNC" if p == 0 else "pair" if m == 0 else f"{m}-class simplex + {p} pair(s)"
        ladder.append(
            {
                "simplex_classes": m,
                "pairs": p,
                "rank": max(m - 1, 0) + p,
                "name": name,
                "optimum": optimum,
                "losses": losses,
            }
        )
    return ladder


def sweep_trend(
    rows: list[dict], along: str, outcome: str, permutations: int = 20000, seed: int = 0
) -> float:
    """One-sided permutation p-value for "``outcome`` rises along ``along``" over the runs of a
    sweep (the trends of Figures 2 and 5, chapter 5): ``dufm.stats.increasing_trend_pvalue`` with
    x the width d ("d") or -log2 lam ("minus_log2_lam"), and y 1 for a DNC run, else 0 ("dnc"),
    or the rank of the run's output ("rank", over the runs that did not diverge)."""
    if along not in TREND_AXES:
        raise ValueError(f"along={along!r} is not allowed: must be one of {TREND_AXES}")
    if outcome not in TREND_OUTCOMES:
        raise ValueError(f"outcome={outcome!r} is not allowed: must be one of {TREND_OUTCOMES}")
    if outcome == "rank":
        rows = [r for r in rows if r["structure"] != "diverged"]
    x = [r["d"] if along == "d" else -math.log2(r["lam"]) for r in rows]
    y = [float(r["structure"] == "dnc") if outcome == "dnc" else r["rank"] for r in rows]
    return increasing_trend_pvalue(x, y, permutations=permutations, seed=seed)


# --- the checks chapter 5 asserts on a sweep's rows (each raises CheckFailed) -------------------


def _where(row: dict) -> str:
    return f"run d={row['d']} lam={row['lam']:.6g} seed={row['seed']} ({row['structure']})"


def check_settled(rows: list[dict], plateau_rtol: float) -> float:
    """Every run has settled: none diverged and its ``plateau_change`` is below ``plateau_rtol``
    (chapter 5: the counts describe end points). Returns the largest change; fails naming how
    many runs diverged or still move, and the first diverged or the worst moving one."""
    check_positive("plateau_rtol", plateau_rtol)
    diverged = [r for r in rows if r["structure"] == "diverged"]
    if diverged:
        raise CheckFailed(
            f"{len(diverged)} of {len(rows)} runs diverged (NaN or infinite loss): "
            + "; ".join(f"{_where(r)} at step {r['diverged_at']}" for r in diverged[:3])
            + "; a smaller lr avoids this"
        )
    moving = [r for r in rows if not r["plateau_change"] < plateau_rtol]
    if moving:
        worst = max(moving, key=lambda r: r["plateau_change"])
        raise CheckFailed(
            f"{len(moving)} of {len(rows)} runs still moving: {_where(worst)} changed its loss "
            f"by {worst['plateau_change']:.3e} (relative) over the plateau window, above "
            f"{plateau_rtol:.1e}"
        )
    return max(r["plateau_change"] for r in rows)


def check_recognised(rows: list[dict]) -> int:
    """Every run ended in DNC, the pair structure or a mixture (chapter 5, Figure 5's ranks).
    Returns the number of runs; fails naming the runs in no recognised structure."""
    other = [r for r in rows if r["structure"] not in ("dnc", "pair", "mixture")]
    if other:
        raise CheckFailed(
            f"{len(other)} of {len(rows)} runs in no recognised structure: "
            + "; ".join(f"{_where(r)} rank {r['rank']}" for r in other[:5])
        )
    return len(rows)


def check_optimal_losses(rows: list[dict], rtol: float) -> float:
    """Every run that ended in DNC, the pair structure or a mixture has the optimal loss of that
    structure within ``rtol`` (relative): a critical point at its optimal scales (chapter 5).
    Returns the largest relative error (nan if no run qualifies); fails naming the worst run."""
    check_positive("rtol", rtol)
    structured = [r for r in rows if r["rel_error"] is not None]
    if not structured:
        return math.nan
    worst = max(structured, key=lambda r: r["rel_error"])
    if not worst["rel_error"] <= rtol:
        raise CheckFailed(
            f"{_where(worst)}: final loss {worst['final_loss']:.12f} vs the optimum of its "
            f"structure {worst['theory_loss']:.12f}, relative error {worst['rel_error']:.3e} "
            f"exceeds the tolerance {rtol:.1e}"
        )
    return worst["rel_error"]


def check_structure_ranks(rows: list[dict], K: int) -> int:
    """The measured rank of every DNC, pair or mixture run is that of its structure,
    max(m - 1, 0) + p (``structure_blocks``; K - 1 for DNC, K/2 for the pairs; chapter 5).
    Returns the number of runs checked; fails naming the first mismatch."""
    checked = 0
    for r in rows:
        if r["structure"] not in ("dnc", "pair", "mixture"):
            continue
        m, p = structure_blocks(r, K)
        expected = max(m - 1, 0) + p
        if r["rank"] != expected:
            raise CheckFailed(
                f"{_where(r)}: measured rank {r['rank']}, the structure's rank is {expected} "
                f"(off by {r['rank'] - expected})"
            )
        checked += 1
    return checked


def check_trend(pvalue: float, alpha: float, claim: str) -> float:
    """A trend of Figures 2 or 5 is significant: its one-sided p-value (``sweep_trend``) is below
    ``alpha`` (chapter 5). Returns the p-value; fails naming the claim, p and alpha."""
    check_positive("alpha", alpha)
    if not pvalue < alpha:
        raise CheckFailed(f"not supported: {claim} (one-sided p = {pvalue:.3g} >= {alpha:g})")
    return pvalue


def imbalanced_run_outcomes(
    result, reference: torch.Tensor, reference_loss: float, best_loss: float, window: int
) -> list[dict]:
    """Where each run of a ``train`` result with class sizes ended (Theorem A3; chapter 10).

    ``reference`` (K x N): generalised DNC's logit matrix Z*_lam, with loss ``reference_loss``
    at its best scale; ``best_loss``: the best loss a search found at the runs' (L, lam). One
    row per run: ``seed``, ``init_scale``, ``loss`` (final), ``change`` (relative loss change
    over the last ``window`` steps), ``rank`` (``numerical_rank``), ``distance`` (normalised
    Frobenius distance of Z to ``reference``), ``superior`` (every class mean has its largest
    entry in its own row), ``vs_reference`` and ``vs_best`` (loss / that loss - 1).
    """
    from .metrics import class_means, numerical_rank
    from .theory import is_diagonally_superior, normalised_distance

    check_int("window", window, 1)
    if result.class_sizes is None:
        raise ValueError("result is not allowed: it was trained without class_sizes")
    steps = torch.as_tensor(result.record_steps)
    back = int(torch.searchsorted(steps, steps[-1] - window).clamp_max(len(steps) - 1))
    rows = []
    for i, run in enumerate(result.configs):
        Z, final = result.logits[i], float(result.losses[i, -1])
        means = class_means(Z, result.K, result.class_sizes)
        rows.append({
            "seed": run.seed, "init_scale": run.init_scale, "loss": final,
            "change": abs(float(result.losses[i, back]) - final) / abs(final),
            "rank": numerical_rank(Z), "distance": normalised_distance(Z, reference),
            "superior": is_diagonally_superior(means, result.K, 1),
            "vs_reference": final / reference_loss - 1, "vs_best": final / best_loss - 1,
        })  # fmt: skip
    return rows
