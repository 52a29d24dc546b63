"""Each chapter check passes on the theory's own object and fails on a perturbed one."""

import pytest

from dufm.checks import (
    CheckFailed,
    check_balance_recursion,
    check_balanced,
    check_close,
    check_dnc_every_layer,
    check_minimal_regulariser,
    check_reduced_loss_identity,
    gd_step,
    random_refactorisation,
    regulariser,
)
from dufm.losses import forward, mean_cross_entropy
from dufm.structures import dnc_logits, factorize, pair_logits
from dufm.trainer import init_params, make_runs


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
