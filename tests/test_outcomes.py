"""Unit tests of dufm.outcomes: a run's structure and its closed-form optimum."""

import math

import pytest

from dufm import theory
from dufm.checks import CheckFailed
from dufm.outcomes import (
    OUTCOMES,
    check_optimal_losses,
    check_recognised,
    check_settled,
    check_structure_ranks,
    check_trend,
    grid_points,
    initial_output_std,
    plateau_change,
    point_summary,
    predicted_initial_output_std,
    structure_ladder,
    summarise_runs,
    summarise_sweep,
    sweep_summary,
    sweep_trend,
)
from dufm.stats import wilson_interval
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


# --- a sweep's grid points, ladder, trends and checks (chapter 5) -------------------------------


def _row(d, lam, seed, structure, rank, loss=1.0, theory_loss=None, change=0.0, m=0, p=0):
    """A hand-made ``summarise_sweep`` row."""
    rel = None if theory_loss is None else abs(loss - theory_loss) / theory_loss
    return {
        "seed": seed, "d": d, "lam": lam, "init_scale": 1.0, "structure": structure, "rank": rank,
        "final_loss": loss, "plateau_change": change, "theory_loss": theory_loss,
        "rel_error": rel, "simplex_classes": m, "pairs": p, "diverged_at": None,
    }  # fmt: skip


def _diverged(d, lam, seed, step=300):
    """A hand-made ``summarise_sweep`` row of a run that diverged at ``step``."""
    row = _row(d, lam, seed, "diverged", math.nan, loss=math.nan, change=math.inf)
    return {**row, "diverged_at": step}


def test_grid_points_groups_the_rows_by_value_in_increasing_order():
    rows = [_row(20, 0.1, 0, "dnc", 9), _row(10, 0.1, 0, "pair", 5), _row(20, 0.1, 1, "pair", 5)]
    points = grid_points(rows, "d")
    assert list(points) == [10, 20]
    assert [r["seed"] for r in points[20]] == [0, 1]
    with pytest.raises(ValueError, match="key='seed'"):
        grid_points(rows, "seed")


def test_point_summary_counts_structures_and_gives_the_wilson_interval_of_the_dnc_fraction():
    runs = [_row(10, 0.1, s, "dnc", 9) for s in range(3)] + [
        _row(10, 0.1, 3, "pair", 5, change=1e-6),
        _row(10, 0.1, 4, "mixture", 7, m=6, p=2),
    ]
    s = point_summary(runs, plateau_rtol=1e-9)
    assert (s["runs"], s["settled"], s["dnc"], s["pair"], s["mixture"], s["other"]) == (
        5, 4, 3, 1, 1, 0,
    )  # fmt: skip
    assert s["p_dnc"] == 0.6 and (s["low"], s["high"]) == wilson_interval(3, 5)
    assert s["ranks"] == [9, 9, 9, 5, 7] and s["mean_rank"] == pytest.approx(39 / 5)
    assert sweep_summary(runs, "d", 1e-9) == {10: s}
    with pytest.raises(ValueError, match="runs=\\[\\]"):
        point_summary([], 1e-9)


def test_a_diverged_run_is_counted_as_diverged_and_left_out_of_the_ranks():
    runs = [_row(10, 0.1, 0, "dnc", 9), _row(10, 0.1, 1, "zero", 0), _diverged(10, 0.1, 2)]
    s = point_summary(runs, plateau_rtol=1e-9)
    assert (s["runs"], s["settled"], s["dnc"], s["zero"], s["diverged"]) == (3, 2, 1, 1, 1)
    assert sum(s[name] for name in OUTCOMES) == s["runs"]
    assert s["p_dnc"] == pytest.approx(1 / 3) and s["ranks"] == [9, 0] and s["mean_rank"] == 4.5
    assert math.isnan(point_summary([_diverged(10, 0.1, 3)], 1e-9)["mean_rank"])
    rows = [_row(d, 0.1, s, "pair", d // 10) for d in (10, 20, 30) for s in (0, 1, 2)]
    assert sweep_trend([*rows, _diverged(30, 0.1, 3)], "d", "rank", permutations=2000) < 0.01
    with pytest.raises(CheckFailed, match="1 of 4 runs diverged .*seed=2.* at step 300"):
        check_settled([*runs[:1], _diverged(10, 0.1, 2), *runs[:2]], 1e-9)


def test_structure_ladder_orders_the_structures_by_rank_with_their_optimal_losses():
    K, n, L, lam = 6, 2, 2, 1e-2
    dnc_loss = theory.optimal_scale("dnc", K, n, L, lam)[1]
    pair_loss = theory.optimal_scale("pair", K, n, L, lam)[1]
    mix_loss = theory.optimal_mixture(K, n, L, lam, [0, 1, 2, 3], [(4, 5)])[2]
    rows = [
        _row(8, lam, 0, "pair", 3, loss=pair_loss),
        _row(8, lam, 1, "dnc", 5, loss=dnc_loss),
        _row(8, lam, 2, "mixture", 4, loss=mix_loss, m=4, p=1),
        _row(8, lam, 3, "other", 4),
        _row(8, 2 * lam, 4, "dnc", 5),  # another weight decay: left out
    ]
    ladder = structure_ladder(rows, K, n, L, lam)
    assert [(s["name"], s["rank"]) for s in ladder] == [
        ("DNC", 5), ("4-class simplex + 1 pair(s)", 4), ("pair", 3),
    ]  # fmt: skip
    for step, loss in zip(ladder, (dnc_loss, mix_loss, pair_loss), strict=True):
        assert step["optimum"] == pytest.approx(loss, rel=1e-10) and step["losses"] == [loss]


def test_sweep_trend_detects_a_rise_with_the_width_and_not_a_fall():
    rising = [
        _row(d, 0.1, s, "dnc" if d > 20 else "pair", 9) for d in (10, 20, 30, 40) for s in (0, 1, 2)
    ]
    falling = [
        _row(d, 0.1, s, "dnc" if d < 30 else "pair", 9) for d in (10, 20, 30, 40) for s in (0, 1, 2)
    ]
    assert sweep_trend(rising, "d", "dnc", permutations=2000) < 0.01
    assert sweep_trend(falling, "d", "dnc", permutations=2000) > 0.9
    with pytest.raises(ValueError, match="along='width'"):
        sweep_trend(rising, "width", "dnc")
    with pytest.raises(ValueError, match="outcome='loss'"):
        sweep_trend(rising, "d", "loss")


def test_sweep_trend_along_minus_log2_lam_reads_a_rise_as_the_weight_decay_falls():
    rows = [_row(70, 2.0**-e, s, "mixture", e, m=2, p=2) for e in (6, 8, 10) for s in (0, 1, 2)]
    assert sweep_trend(rows, "minus_log2_lam", "rank", permutations=2000) < 0.01


def test_predicted_initial_output_std_matches_the_measured_one_for_every_scheme():
    K, n, L, d, scale = 4, 3, 2, 16, 1.2
    for init in ("normal", "fan_in", "fixed_output"):
        measured = initial_output_std(K, n, L, d, init, scale, range(400))
        assert measured == pytest.approx(predicted_initial_output_std(L, d, init, scale), rel=0.05)
    with pytest.raises(ValueError, match="init='he'"):
        predicted_initial_output_std(L, d, "he", scale)


def test_sweep_checks_pass_on_good_rows_and_fail_naming_the_run_and_the_size():
    good = [
        _row(10, 0.1, 0, "dnc", 9, loss=2.0, theory_loss=2.0),
        _row(10, 0.1, 1, "mixture", 7, loss=1.5, theory_loss=1.5, m=6, p=2),
        _row(10, 0.1, 2, "pair", 5, loss=1.0, theory_loss=1.0),
    ]
    assert check_settled(good, 1e-9) == 0.0
    assert check_recognised(good) == 3
    assert check_optimal_losses(good, 1e-6) == 0.0
    assert check_structure_ranks(good, 10) == 3
    with pytest.raises(CheckFailed, match="1 of 4 runs still moving.*seed=7.*2.000e-03"):
        check_settled([*good, _row(10, 0.1, 7, "dnc", 9, change=2e-3)], 1e-9)
    with pytest.raises(CheckFailed, match="no recognised structure.*seed=8"):
        check_recognised([*good, _row(10, 0.1, 8, "other", 6)])
    with pytest.raises(CheckFailed, match="seed=9.*relative error 1.000e-03"):
        check_optimal_losses([*good, _row(10, 0.1, 9, "dnc", 9, loss=1.001, theory_loss=1.0)], 1e-6)
    with pytest.raises(CheckFailed, match="measured rank 8, the structure's rank is 9"):
        check_structure_ranks([*good, _row(10, 0.1, 4, "dnc", 8)], 10)
    assert check_trend(0.001, 0.01, "rises") == 0.001
    with pytest.raises(CheckFailed, match="not supported: rises.*p = 0.2"):
        check_trend(0.2, 0.01, "rises")


def test_plateau_change_is_the_relative_change_over_the_last_window():
    steps = [0, 10, 20, 30, 40, 50]
    losses = [9.0, 5.0, 4.0, 2.5, 2.2, 2.0]
    assert plateau_change(losses, steps, 10) == pytest.approx(0.1)  # from step 40 to 50
    assert plateau_change(losses, steps, 25) == pytest.approx(0.25)  # step 30 is the first >= 25
    assert plateau_change(losses, steps, 1000) == pytest.approx(3.5)  # the whole curve
    assert plateau_change([1.0, 1.0], [0, 5], 5) == 0.0
    assert plateau_change([1.0, math.nan], [0, 5], 5) == math.inf
    with pytest.raises(ValueError, match="window=0 is not allowed"):
        plateau_change(losses, steps, 0)
    with pytest.raises(ValueError, match="same length"):
        plateau_change(losses, steps[:-1], 10)
