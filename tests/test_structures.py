"""Structures of Definition 2 and Eq. (5), and the Lemma-1 factorisation."""

import math

import pytest
import torch

from dufm.losses import reduced_loss
from dufm.metrics import balancedness_residual
from dufm.structures import (
    dnc_logits,
    factorize,
    pair_logits,
    pair_matrix,
    simplex_matrix,
)


def closed_form_dnc(K, n, L, lam, a):
    """NOTES section 3: fit and regulariser of the DNC structure, written out by hand."""
    fit = math.log(1 + (K - 1) * math.exp(-a))
    return fit + lam / 2 * (L + 1) * (K - 1) * (a * math.sqrt(n)) ** (2 / (L + 1))


def closed_form_pair(K, n, L, lam, b):
    """NOTES section 3: fit and regulariser of the pair structure, even and odd K."""
    m = K // 2
    pair_fit = math.log(1 + math.exp(-2 * b) + (K - 2) * math.exp(-b))
    if K % 2 == 0:
        fit = pair_fit
        reg = m * (2 * b * math.sqrt(n)) ** (2 / (L + 1))
    else:
        fit = ((K - 1) * pair_fit + math.log(1 + (K - 1) * math.exp(-b))) / K
        reg = m * (2 * b * math.sqrt(n)) ** (2 / (L + 1)) + (b * math.sqrt(n)) ** (2 / (L + 1))
    return fit + lam / 2 * (L + 1) * reg


@pytest.mark.parametrize("K", [2, 3, 4, 7, 10])
@pytest.mark.parametrize("L", [1, 2, 5])
def test_dnc_reduced_loss_matches_closed_form(K, L):
    n, lam, a = 3, 0.01, 2.7
    got = reduced_loss(dnc_logits(K, n, a), lam, L)
    assert got == pytest.approx(closed_form_dnc(K, n, L, lam, a), rel=1e-12)


@pytest.mark.parametrize("K", [2, 3, 4, 7, 10])
@pytest.mark.parametrize("L", [1, 2, 5])
def test_pair_reduced_loss_matches_closed_form_even_and_odd(K, L):
    n, lam, b = 4, 0.003, 3.1
    got = reduced_loss(pair_logits(K, n, b), lam, L)
    assert got == pytest.approx(closed_form_pair(K, n, L, lam, b), rel=1e-12)


def test_reference_values_of_the_figure_1_setting():
    lam = 2.0**-10
    assert reduced_loss(dnc_logits(10, 5, 7.0375384888), lam, 2) == pytest.approx(
        0.090662183213, abs=1e-11
    )
    assert reduced_loss(pair_logits(10, 5, 7.0470486565), lam, 2) == pytest.approx(
        0.080012659245, abs=1e-11
    )


def test_dnc_margin_is_the_scale_over_every_other_class():
    Z = dnc_logits(5, 2, 3.0)
    for col in range(Z.shape[1]):
        true = col // 2
        others = torch.cat([Z[:true, col], Z[true + 1 :, col]])
        assert torch.allclose(Z[true, col] - others, torch.full_like(others, 3.0))


def test_pair_matrix_rank_is_half_of_K_rounded_up():
    for K in range(2, 12):
        assert torch.linalg.matrix_rank(pair_matrix(K)) == (K + 1) // 2
    assert torch.linalg.matrix_rank(simplex_matrix(8)) == 7


@pytest.mark.parametrize("L", [1, 2, 4])
@pytest.mark.parametrize("make", [dnc_logits, pair_logits])
def test_factorize_reproduces_z_and_is_balanced(L, make):
    Z = make(6, 3, 2.5)
    params = factorize(Z, L, d=9, seed=4)
    assert len(params) == L + 1
    assert params[0].shape == (9, 18) and params[-1].shape == (6, 9)
    product = params[0]
    for W in params[1:]:
        product = W @ product
    assert torch.allclose(product, Z, atol=1e-12)
    assert balancedness_residual(params) < 1e-13


def test_factorize_of_a_full_rank_random_matrix_is_balanced():
    Z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params = factorize(Z, 3, d=6, seed=1)
    assert torch.allclose(params[3] @ params[2] @ params[1] @ params[0], Z, atol=1e-12)
    assert balancedness_residual(params) < 1e-12


def test_factorize_depends_on_the_seed_only_through_the_orthogonal_chain():
    Z = dnc_logits(4, 2, 1.0)
    a, b = factorize(Z, 2, 7, seed=0), factorize(Z, 2, 7, seed=1)
    assert not torch.allclose(a[0], b[0])
    for P, Q in zip(a, b, strict=True):
        assert torch.linalg.svdvals(P)[:4] == pytest.approx(torch.linalg.svdvals(Q)[:4])
