"""Unit tests of dufm.outcomes: a run's structure and its closed-form optimum."""

import pytest

from dufm import theory
from dufm.outcomes import summarise_runs, summarise_sweep
from dufm.structures import dnc_logits, expand_classes, factorize, mixture_components
from dufm.sweep import grid, run_sweep
from dufm.trainer import train


def test_summarise_runs_recognises_a_trained_dnc_optimum():
    K, n, L, d, lam = 4, 2, 2, 6, 1e-2
    alpha, loss = theory.optimal_scale("dnc", K, n, L, lam)
    start = [P.unsqueeze(0) for P in factorize(dnc_logits(K, n, alpha), L, d, seed=0)]
    result = train(K, n, L, d, lam, seeds=[0], steps=200, params=start, progress=False)
    (row,) = summarise_runs(result, window=100)
    assert row["structure"] == "dnc" and row["rank"] == K - 1
    assert row["theory_loss"] == pytest.approx(loss, rel=1e-12)
    assert row["rel_error"] < 1e-9
    assert row["plateau_change"] < 1e-9


def test_gradient_descent_started_at_the_optimal_mixture_stays_there():
    K, n, L, d, lam = 6, 2, 2, 8, 1e-2
    simplex, pairs = [0, 1, 2, 3], [(4, 5)]
    a, b, loss = theory.optimal_mixture(K, n, L, lam, simplex, pairs)
    T_S, T_P = mixture_components(K, simplex, pairs)
    Z = expand_classes(a * T_S + b * T_P, n)
    start = [P.unsqueeze(0) for P in factorize(Z, L, d, seed=0)]
    result = train(K, n, L, d, lam, seeds=[0], steps=300, params=start, progress=False)
    (row,) = summarise_runs(result, window=100)
    assert (row["structure"], row["simplex_classes"], row["pairs"]) == ("mixture", 4, 1)
    assert row["rel_error"] < 1e-9 and row["plateau_change"] < 1e-9


def test_summarise_sweep_gives_the_rows_of_summarise_runs_for_the_same_runs(tmp_path):
    K, n, L, lam = 4, 2, 2, 1e-2
    configs = grid(seeds=[0, 1, 2], d=6, lam=lam, init_scale=0.5)
    kwargs = dict(steps=3000, record_every=100, progress=False)
    sweep = run_sweep(configs, tmp_path, K=K, n=n, L=L, **kwargs)
    alone = train(K, n, L, 6, lam, seeds=[0, 1, 2], init_scale=0.5, **kwargs)
    rows = summarise_sweep(sweep, window=500)
    for row, expected in zip(rows, summarise_runs(alone, window=500), strict=True):
        assert row["d"] == 6 and row["lam"] == lam
        for key, value in expected.items():
            close = pytest.approx(value, rel=1e-9) if isinstance(value, float) else value
            assert row[key] == close, key


def test_summarise_runs_rejects_a_window_below_one():
    with pytest.raises(ValueError, match="window"):
        summarise_runs(None, window=0)
