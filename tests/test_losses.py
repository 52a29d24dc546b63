"""The deep-UFM loss and the reduced loss (Lemma 1)."""

import math

import pytest
import torch

from dufm.losses import forward, full_loss, mean_cross_entropy, reduced_loss, schatten_regulariser
from dufm.structures import dnc_logits, factorize, pair_logits


def test_zero_logits_cost_log_K_whatever_n():
    for K, n in [(2, 1), (5, 3), (10, 5)]:
        Z = torch.zeros(K, K * n, dtype=torch.float64)
        assert reduced_loss(Z, 0.1, 2) == pytest.approx(math.log(K), rel=1e-14)


def test_fit_term_is_the_mean_not_the_sum_of_cross_entropies():
    Z = dnc_logits(4, 3, 1.0)
    per_sample = math.log(1 + 3 * math.exp(-1.0))
    assert float(mean_cross_entropy(Z)) == pytest.approx(per_sample, rel=1e-14)


@pytest.mark.parametrize("make", [dnc_logits, pair_logits])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_full_loss_of_a_lemma1_point_equals_the_reduced_loss(make, L):
    lam = 0.02
    Z = make(6, 2, 3.0)
    assert full_loss(factorize(Z, L, 8, seed=2), lam) == pytest.approx(
        reduced_loss(Z, lam, L), rel=1e-12
    )


def test_unbalanced_factorisation_costs_more_than_the_reduced_loss():
    lam, Z = 0.02, dnc_logits(4, 2, 2.0)
    params = factorize(Z, 2, 5, seed=0)
    params[0] = 2.0 * params[0]
    params[1] = 0.5 * params[1]
    assert full_loss(params, lam) > reduced_loss(Z, lam, 2) + 1e-4


def test_relu_forward_has_no_relu_between_h1_and_w1():
    H1 = -torch.ones(3, 6, dtype=torch.float64)
    W1 = torch.eye(3, dtype=torch.float64)
    W2 = torch.eye(3, dtype=torch.float64)
    linear = forward([H1, W1, W2], "linear")
    relu = forward([H1, W1, W2], "relu")
    assert torch.equal(relu[1], linear[1])  # H_2 = W_1 H_1, negative entries kept
    assert torch.equal(relu[2], torch.zeros(3, 6, dtype=torch.float64))  # Z = W_2 relu(H_2)


def test_reduced_loss_rejects_a_matrix_whose_columns_are_not_a_multiple_of_K():
    with pytest.raises(ValueError, match="multiple of K"):
        reduced_loss(torch.zeros(3, 7, dtype=torch.float64), 0.1, 2)


def test_reduced_loss_rejects_nonpositive_lambda():
    with pytest.raises(ValueError, match="lam=0"):
        reduced_loss(dnc_logits(3, 1, 1.0), 0, 2)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -float("inf")])
def test_non_finite_logits_are_a_value_error_not_a_nan_or_a_linalg_error(bad):
    Z = dnc_logits(3, 2, 1.0)
    Z[1, 4] = bad
    with pytest.raises(ValueError, match=r"Z is not allowed: 1 of its 18 entries are NaN or inf"):
        reduced_loss(Z, 0.1, 2)
    with pytest.raises(ValueError, match=r"Z is not allowed: .*first at index \(1, 4\)"):
        factorize(Z, 2, 4)


def test_complex_logits_are_rejected_not_silently_made_real():
    Z = dnc_logits(3, 2, 1.0).to(torch.complex128) * (1 + 1j)
    with pytest.raises(ValueError, match=r"Z.dtype=torch.complex128 is not allowed"):
        reduced_loss(Z, 0.1, 2)
    with pytest.raises(ValueError, match=r"Z.dtype=torch.complex128 is not allowed"):
        mean_cross_entropy(Z)


def test_full_loss_rejects_non_finite_and_wrongly_shaped_parameters():
    params = factorize(dnc_logits(3, 2, 1.0), 2, 4)
    params[1][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"params\[1\] is not allowed: 1 of its 16 entries"):
        full_loss(params, 0.1)
    params = factorize(dnc_logits(3, 2, 1.0), 2, 4)
    params[1] = torch.zeros(4, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"params\[1\].shape=\(4, 5\) is not allowed .*4 columns"):
        full_loss(params, 0.1)
    with pytest.raises(ValueError, match=r"len\(params\)=1 is not allowed"):
        full_loss(params[:1], 0.1)


def test_regulariser_and_cross_entropy_check_their_arguments():
    Z = dnc_logits(3, 2, 1.0)
    with pytest.raises(ValueError, match="lam=-0.1"):
        schatten_regulariser(Z, -0.1, 2)
    with pytest.raises(ValueError, match="L=0"):
        schatten_regulariser(Z, 0.1, 0)
    with pytest.raises(ValueError, match="multiple of K"):
        mean_cross_entropy(torch.zeros(3, 7, dtype=torch.float64))
    batch = torch.stack([Z, 2 * Z])  # leading batch dimensions stay allowed
    assert mean_cross_entropy(batch).shape == (2,)
