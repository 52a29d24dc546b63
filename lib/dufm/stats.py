"""Counting statistics for the gradient-descent sweeps (Figures 2 and 5).

A sweep gives, per grid point, how many of its runs ended in a structure; these helpers turn the
counts into a proportion with a confidence interval and test whether an outcome increases along
the grid, without assuming a model of the dependence.
"""

from __future__ import annotations

import math

import torch

from .validation import check_int


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z = 1.96); Figure 2's error bars.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or ``trials``
    successes, which is where most grid points of a sweep sit.
    """
    check_int("trials", trials, 1)
    check_int("successes", successes, 0)
    if successes > trials:
        raise ValueError(f"successes={successes} is not allowed: at most trials={trials}")
    if not z > 0:
        raise ValueError(f"z={z} is not allowed: must be > 0")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def increasing_trend_pvalue(x, y, permutations: int = 20000, seed: int = 0) -> float:
    """One-sided permutation p-value for "y tends to increase with x" (Figures 2 and 5 trends).

    The statistic is the covariance-type sum sum_i x_i y_i (for a 0/1 outcome this is the
    Cochran-Armitage trend statistic); the p-value is the fraction of random reassignments of
    the outcomes to the runs whose statistic is at least the observed one, counting the
    observed assignment itself, so it is never 0. Small p: the outcome rises with x.
    """
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    y = torch.as_tensor(y, dtype=torch.float64).flatten()
    if x.numel() != y.numel() or x.numel() < 2:
        raise ValueError(
            f"x and y have {x.numel()} and {y.numel()} entries: they need the same number, >= 2"
        )
    check_int("permutations", permutations, 1)
    gen = torch.Generator().manual_seed(seed)
    observed = float(x @ y)
    shuffled = torch.stack(
        [y[torch.randperm(y.numel(), generator=gen)] for _ in range(permutations)]
    )
    at_least = int((shuffled @ x >= observed - 1e-9 * max(1.0, abs(observed))).sum())
    return (at_least + 1) / (permutations + 1)
