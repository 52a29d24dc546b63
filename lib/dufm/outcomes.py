"""What a gradient-descent run or a sweep ended in (Figures 1, 2 and 5; chapters 1, 2 and 5).

``run_outcome`` classifies one run's final output and compares its loss with the closed-form
optimum of its structure; ``summarise_runs`` and ``summarise_sweep`` do that for every run of a
``dufm.trainer.train`` or ``dufm.sweep.run_sweep`` result.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from .metrics import classify_structure
from .theory import optimal_mixture, optimal_scale
from .validation import (
    check_int,
)


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
    steps = torch.as_tensor(record_steps)
    losses = torch.as_tensor(losses, dtype=torch.float64)
    back = int(torch.searchsorted(steps, steps[-1] - window).clamp_max(len(steps) - 1))
    final = float(losses[-1])
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
        "plateau_change": abs(float(losses[back]) - final) / abs(final),
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
                result.logits(i),
                result.losses[i],
                result.record_steps,
                result.L,
                run.lam,
                window,
                (result.diverged or [None] * len(result.runs))[i],
            ),
        }
        for i, run in enumerate(result.runs)
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
