"""Counting statistics of the sweeps (Figures 2 and 5)."""

import math

import pytest
import torch

from dufm.stats import increasing_trend_pvalue, wilson_interval


def test_wilson_interval_matches_the_closed_form_values():
    # 5 of 10 at 95%: centre 0.5, half-width 1.96 sqrt(0.025 + 0.0096) / 1.384 (Wilson 1927)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)


def test_wilson_interval_is_not_empty_at_zero_or_all_successes():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1.96**2 / (10 + 1.96**2), rel=1e-12)
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(10 / (10 + 1.96**2), rel=1e-12)


def test_wilson_interval_covers_the_true_proportion_about_95_percent_of_the_time():
    gen = torch.Generator().manual_seed(0)
    p, trials = 0.3, 10
    draws = (torch.rand(4000, trials, generator=gen) < p).sum(dim=1).tolist()
    covered = sum(lo <= p <= hi for lo, hi in (wilson_interval(k, trials) for k in draws))
    assert 0.93 < covered / len(draws) < 0.99


def test_perfect_increasing_trend_gets_the_exact_permutation_probability():
    x = [1, 1, 1, 2, 2, 2]
    y = [0, 0, 0, 1, 1, 1]
    exact = 1 / math.comb(6, 3)  # only one of the 20 assignments puts all ones at x = 2
    p = increasing_trend_pvalue(x, y, permutations=40000, seed=1)
    assert p == pytest.approx(exact, abs=0.005)


def test_decreasing_trend_is_not_called_increasing():
    x = list(range(10)) * 3
    y = [9 - v for v in range(10)] * 3
    assert increasing_trend_pvalue(x, y, permutations=2000) > 0.99


def test_unrelated_outcomes_give_roughly_uniform_p_values():
    gen = torch.Generator().manual_seed(3)
    ps = [
        increasing_trend_pvalue(torch.arange(20.0), torch.rand(20, generator=gen), 500, seed=s)
        for s in range(60)
    ]
    assert 0.3 < sum(ps) / len(ps) < 0.7


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: wilson_interval(11, 10), "successes=11"),
        (lambda: wilson_interval(1, 0), "trials=0"),
        (lambda: wilson_interval(1, 3, z=0.0), "z=0.0"),
        (lambda: increasing_trend_pvalue([1, 2], [1, 2, 3]), "2 and 3 entries"),
        (lambda: increasing_trend_pvalue([1, 2], [0, 1], permutations=0), "permutations=0"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
