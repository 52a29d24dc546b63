"""Each chapter check passes on the theory's own object and fails on a perturbed one."""

import numpy as np
import pytest
import torch

from dufm import theory
from dufm.checks import (
    CheckFailed,
    check_at_least,
    check_at_most,
    check_balance_recursion,
    check_balanced,
    check_close,
    check_critical_point,
    check_dnc_every_layer,
    check_equal,
    check_fit_dominated,
    check_imbalance_identity,
    check_minimal_regulariser,
    check_reduced_loss_identity,
    check_true,
    decay_rates,
    full_gradients,
    gd_step,
    lemma1_runs,
    lemma1_sentences,
    random_refactorisation,
    regulariser,
)
from dufm.losses import forward, mean_cross_entropy
from dufm.structures import dnc_logits, expand_classes, factorize, pair_logits
from dufm.trainer import init_params, make_runs, train


@pytest.fixture
def dnc_point():
    return factorize(dnc_logits(5, 2, 3.0), 2, 7, seed=0)


def test_balance_check_passes_on_lemma1_and_fails_when_a_factor_is_rescaled(dnc_point):
    assert check_balanced(dnc_point) < 1e-13
    unbalanced = [2.0 * dnc_point[0], 0.5 * dnc_point[1], dnc_point[2]]
    with pytest.raises(CheckFailed, match="balancedness"):
        check_balanced(unbalanced)


def test_reduced_loss_check_fails_on_an_unbalanced_point(dnc_point):
    assert check_reduced_loss_identity(dnc_point, 0.01) < 1e-12
    with pytest.raises(CheckFailed, match="reduced loss"):
        check_reduced_loss_identity(random_refactorisation(dnc_point, seed=1), 0.01)


def test_reduced_loss_check_fails_on_a_loss_with_the_wrong_normalisation(dnc_point):
    def summed_loss(params, lam):
        """Sum (not mean) of the cross-entropies, as in a common mis-reading of the paper."""
        Z = forward(params)[-1]
        return float(mean_cross_entropy(Z)) * Z.shape[1] + lam * regulariser(params)

    with pytest.raises(CheckFailed):
        check_reduced_loss_identity(dnc_point, 0.01, loss_fn=summed_loss)


def test_dnc_check_passes_on_dnc_and_fails_on_the_pair_structure(dnc_point):
    check_dnc_every_layer(dnc_point)
    with pytest.raises(CheckFailed, match="DNC1-3"):
        check_dnc_every_layer(factorize(pair_logits(6, 2, 3.0), 2, 7, seed=0))


def test_minimal_regulariser_check_passes_on_lemma1_and_fails_on_a_refactorisation(dnc_point):
    least, drift = check_minimal_regulariser(dnc_point, trials=40)
    assert least > 0 and drift < 1e-12
    moved = random_refactorisation(dnc_point, seed=3, spread=0.05)
    assert (forward(moved)[-1] - forward(dnc_point)[-1]).abs().max() < 1e-12
    with pytest.raises(CheckFailed, match="re-factorisation"):
        check_minimal_regulariser(moved, trials=40)


def test_close_check_reports_measured_and_expected():
    assert check_close(1.0 + 1e-9, 1.0, 1e-8, "x") < 1e-8
    with pytest.raises(CheckFailed, match=r"measured 1\.1, theory 1"):
        check_close(1.1, 1.0, 1e-3, "x")
    with pytest.raises(CheckFailed):
        check_close(float("nan"), 1.0, 1e-3, "x")


def test_balance_recursion_holds_for_the_trainer_step_and_fails_without_decay_on_one_layer():
    params = [P[0] for P in init_params(4, 3, 3, make_runs([0], 6, 0.7, 0.01, 0.5))]
    assert check_balance_recursion(params, 0.01, 0.5) < 1e-12

    def step_without_decay_on_w1(params, lam, lr):
        out = gd_step(params, lam, lr)
        out[1] = out[1] / (1 - lr * lam)
        return out

    with pytest.raises(CheckFailed, match="balance-decay"):
        check_balance_recursion(params, 0.01, 0.5, step=step_without_decay_on_w1)


def test_comparison_checks_name_what_failed_and_by_how_much():
    assert check_at_most(1.0, 2.0, "x") == 1.0
    with pytest.raises(CheckFailed, match=r"depth: measured 5 exceeds the bound 4 by 1"):
        check_at_most(5, 4, "depth")
    assert check_at_least(3.0, 2.0, "y") == 3.0
    with pytest.raises(CheckFailed, match=r"ratio: measured 0.4 is below the bound 0.5 by 0.1"):
        check_at_least(0.4, 0.5, "ratio")
    for check in (check_at_most, check_at_least):
        with pytest.raises(CheckFailed):
            check(float("nan"), 1.0, "nan")
    assert check_equal((9, 2), (9, 2), "ranks") == (9, 2)
    with pytest.raises(CheckFailed, match=r"ranks: measured \(9, 3\), expected \(9, 2\)"):
        check_equal((9, 3), (9, 2), "ranks")
    check_true(True, "ok")
    with pytest.raises(CheckFailed, match="rank-2 search: failed \\(0 found\\)"):
        check_true(False, "rank-2 search", "0 found")


def test_fit_dominated_check_passes_with_the_proofs_gamma_and_fails_with_half_of_it():
    K, n = 10, 2
    X, M = dnc_logits(K, n, 1.0), expand_classes(theory.circle_gram(K), n)
    gamma = theory.theorem2_gamma(X, M)
    scales = torch.linspace(0.01, 30.0, 500)
    assert check_fit_dominated(X, M, gamma, scales) < 0
    with pytest.raises(CheckFailed, match="fit step of Theorem 2"):
        check_fit_dominated(X, M, 0.5 * gamma, scales)


def test_imbalance_identity_holds_at_a_random_point_and_fails_without_weight_decay():
    params = [P[0] for P in init_params(4, 3, 3, make_runs([0], 6, 0.7, 0.01, 0.5))]
    assert check_imbalance_identity(params, 0.01) < 1e-12
    fit_only = full_gradients(params, 1e-300)  # the weight-decay part left out
    with pytest.raises(CheckFailed, match="imbalance"):
        check_imbalance_identity(params, 0.01, grads=fit_only)


def test_decay_rates_recover_an_exponential_and_skip_snapshots_with_a_large_source():
    steps = np.arange(0, 20000, 1000)
    gaps = np.exp(-1e-3 * steps)[:, None] * np.array([[2.0, 3.0]])
    residuals = gaps / 2
    rates = decay_rates(steps, gaps, residuals)
    assert np.allclose(rates, 1e-3, rtol=1e-10)
    sources = np.zeros_like(gaps)
    sources[:, 1] = 1.0  # the source term dominates run 1 throughout
    rates = decay_rates(steps, gaps, residuals, sources, max_source=0.05)
    assert np.isclose(rates[0], 1e-3) and np.isnan(rates[1])


def test_critical_point_check_passes_at_the_optimal_dnc_scale_and_fails_off_it():
    K, n, L, lam = 4, 2, 2, 2.0**-6
    alpha, _ = theory.optimal_scale("dnc", K, n, L, lam)
    assert check_critical_point(factorize(dnc_logits(K, n, alpha), L, K), lam, 1e-8) < 1e-8
    with pytest.raises(CheckFailed, match="gradient of the deep-UFM loss"):
        check_critical_point(factorize(dnc_logits(K, n, 1.1 * alpha), L, K), lam, 1e-3)


def test_lemma1_runs_measure_a_settled_run_as_balanced_dnc_and_a_fresh_one_as_not():
    K, n, L, lam = 3, 2, 2, 0.05
    runs = make_runs([0, 1], 4, 0.5, lam, 0.5)
    starts = [[P[i] for P in init_params(K, n, L, runs)] for i in range(2)]
    fresh = train(K, n, L, 4, lam, seeds=[0, 1], init_scale=0.5, steps=0, progress=False)
    settled = train(K, n, L, 4, lam, seeds=[0, 1], init_scale=0.5, steps=20000, progress=False)
    for row in lemma1_runs(settled, lam, starts):
        assert row["grad"] < 1e-8 and abs(row["excess"]) < 1e-9
        assert row["structure"].name == "dnc" and row["identity"] < 1e-10
    for row in lemma1_runs(fresh, lam, starts):
        assert row["grad"] > 1e-3 and row["excess"] > 1e-3


def test_lemma1_sentences_quote_the_settled_runs_and_the_range_of_the_others():
    runs = [
        {"excess": -3e-13, "grad": 1e-7},
        {"excess": 1e-4, "grad": 2e-3},
        {"excess": 2e-4, "grad": 5e-2},
    ]
    settled = np.array([True, False, False])
    residuals = np.array([4e-12, 1e-3, 2e-2])
    rates_any, fitted = np.array([1.0, 0.5, 0.25]), np.array([True, False, False])
    first, second = lemma1_sentences(runs, settled, residuals, rates_any, fitted, 2.0, 300)
    assert first == (
        "For the 1 settled runs the largest balancedness residual is 4.0e-12 and the loss "
        "equals the reduced loss of the run's own output to 3.0e-13 (relative), as Lemma 1 "
        "says."
    )
    assert second.startswith(
        "The 2 runs that had not settled after 300 steps (gradient between 2.0e-03 and "
        "5.0e-02 times the weight-decay term) end with balancedness residuals between "
        "1.0e-03 and 2.0e-02: Lemma 1 does not apply to them"
    )
    assert " In 2 runs the source term" in second and "decays at 0.12 to 0.25 times" in second
    every_fit = np.ones(3, dtype=bool)
    first, second = lemma1_sentences(runs, ~settled, residuals, rates_any, every_fit, 2.0, 3)
    assert first.startswith("For the 2 settled runs") and "to 2.0e-04 (relative)" in first
    assert "source term" not in second  # every run's first-order rate was fitted
    first, second = lemma1_sentences(runs, settled & False, residuals, rates_any, fitted, 2.0, 9)
    assert first == "No run settled at a critical point, so Lemma 1 itself is not tested here."
    assert second.startswith("The 3 runs that had not settled after 9 steps")
    _, second = lemma1_sentences(runs, settled | True, residuals, rates_any, fitted | True, 2.0, 9)
    assert second == "Every run had settled after 9 steps."


def test_loss_settled_reads_the_movement_over_the_last_tenth_of_training():
    from dufm.checks import loss_settled, loss_tail_change

    steps = np.arange(0, 10001, 500)  # 21 recorded points: the last tenth spans 2 intervals
    flat = 0.2 + np.exp(-steps / 500.0)  # moved by about 2e-8 relative at the end
    falling = 0.2 + 0.01 * (1 - steps / 10000.0)  # still falls linearly
    losses = np.stack([flat, falling])
    change = loss_tail_change(losses, steps)
    assert change[0] < 1e-7 and np.isclose(change[1], 0.001 / 0.2, rtol=1e-12)
    assert loss_settled(losses, 1e-4, steps).tolist() == [True, False]
    # An oscillation is caught by the range over the window, not by the two ends alone.
    wobble = np.full(21, 0.2)
    wobble[-2] = 0.21
    assert loss_tail_change(wobble) > 0.04 and not loss_settled(wobble, 1e-4)
    nan = flat.copy()
    nan[-1] = np.nan
    assert np.isnan(loss_tail_change(nan)) and not loss_settled(nan, 1.0)
    with pytest.raises(ValueError, match="tail=0"):
        loss_tail_change(losses, tail=0)
    with pytest.raises(ValueError, match="tol=0"):
        loss_settled(losses, 0)
    with pytest.raises(ValueError, match="steps has 3 values"):
        loss_tail_change(losses, [0, 1, 2])
