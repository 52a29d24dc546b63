"""The critical-point equations solved for the weight decay, the fold, the branch roots, the
measured attraction thresholds and the asymptotic fit of the flatness ratio (Theorems 4, 6)."""

import math

import numpy as np
import pytest

from dufm import theory
from dufm.checks import CheckFailed, check_close


@pytest.mark.parametrize("K,n,L", [(4, 2, 2), (6, 5, 3), (10, 5, 1)])
def test_critical_weight_decay_is_eq19_for_dnc(K, n, L):
    a = np.array([0.3, 1.0, 4.0, 12.0])
    eq19 = a ** ((L - 1) / (L + 1)) / (np.exp(a) + K - 1) / n ** (1 / (L + 1))
    assert np.allclose(theory.critical_weight_decay("dnc", K, n, L, a), eq19, rtol=1e-13)


@pytest.mark.parametrize("K,n,L", [(4, 2, 2), (8, 5, 4)])
def test_critical_weight_decay_is_eq27_for_the_pair_structure(K, n, L):
    b = np.array([0.3, 1.0, 4.0, 12.0])
    rhs = (2 * b) ** ((L - 1) / (L + 1)) * (K - 2 + 2 * np.exp(-b))
    eq27 = rhs / (K * (np.exp(b) + np.exp(-b) + K - 2)) / n ** (1 / (L + 1))
    assert np.allclose(theory.critical_weight_decay("pair", K, n, L, b), eq27, rtol=1e-13)


def test_critical_weight_decay_rejects_odd_pair_and_zero_scale():
    with pytest.raises(ValueError, match="K=5"):
        theory.critical_weight_decay("pair", 5, 2, 2, 1.0)
    with pytest.raises(ValueError, match="scale"):
        theory.critical_weight_decay("dnc", 4, 2, 2, 0.0)


@pytest.mark.parametrize("structure,K,L", [("dnc", 4, 2), ("dnc", 10, 5), ("pair", 6, 3)])
def test_fold_is_the_largest_critical_weight_decay(structure, K, L):
    fold = theory.fold_scale(structure, K, 2, L)
    top = theory.critical_weight_decay(structure, K, 2, L, fold)
    scales = np.geomspace(fold / 3, fold * 3, 2001)
    around = theory.critical_weight_decay(structure, K, 2, L, scales)
    assert top >= around.max() * (1 - 1e-12)


@pytest.mark.parametrize(
    "structure,K,n,L,lam",
    [("dnc", 4, 2, 2, 2.0**-6), ("dnc", 10, 5, 3, 2.0**-20), ("pair", 6, 5, 5, 2.0**-4)],
)
def test_branch_roots_solve_the_equation_and_match_critical_scales(structure, K, n, L, lam):
    small = theory.branch_scale(structure, K, n, L, lam, "small")
    large = theory.branch_scale(structure, K, n, L, lam, "large")
    for root in (small, large):
        got = theory.critical_weight_decay(structure, K, n, L, root)
        assert abs(got - lam) <= 1e-12 * lam
    assert small < theory.fold_scale(structure, K, n, L) < large
    assert np.allclose(theory.critical_scales(structure, K, n, L, lam), [small, large], rtol=1e-10)


def test_branch_roots_at_extreme_weight_decay_and_above_the_fold():
    tiny = theory.branch_scale("dnc", 4, 1, 2, 1e-6, "small")
    assert math.isclose(theory.critical_weight_decay("dnc", 4, 1, 2, tiny), 1e-6, rel_tol=1e-10)
    assert tiny < 1e-15  # an extreme small root (about 6.4e-17)
    # K = 6, L = 5, n = 5, lam = 2^-3: both roots exist (lam is below the fold's value)
    assert theory.branch_scale("pair", 6, 5, 5, 2.0**-3, "large") > 1.5
    top = theory.critical_weight_decay("dnc", 4, 2, 2, theory.fold_scale("dnc", 4, 2, 2))
    assert theory.branch_scale("dnc", 4, 2, 2, 1.01 * top, "large") is None
    assert theory.branch_scale("dnc", 4, 2, 1, 0.01, "small") is None
    with pytest.raises(ValueError, match="branch"):
        theory.branch_scale("dnc", 4, 2, 2, 0.01, "middle")


def test_thresholds_in_closed_form():
    assert theory.dnc_threshold_scale(4, 2) == pytest.approx(4 / 3)
    assert theory.dnc_threshold_scale(6, 1) == 0.0
    for K, L in [(6, 2), (8, 5), (12, 3)]:
        b, q = theory.pair_threshold_scale(K, L), (L - 1) / (L + 1)
        assert b == pytest.approx(q * (K / 2 - 1 + math.exp(-b)), rel=1e-13)
    # K = 4: the threshold equation is the fold's
    fold = theory.fold_scale("pair", 4, 2, 3)
    assert theory.pair_threshold_scale(4, 3) == pytest.approx(fold, rel=1e-8)
    with pytest.raises(ValueError, match="K=5"):
        theory.pair_threshold_scale(5, 2)


def test_inverse_scale_fit_recovers_the_limit_and_its_prediction_can_fail():
    a = np.linspace(6.0, 14.0, 9)
    c = theory.inverse_scale_fit(a[:-1], 0.8 + 1.5 / a[:-1] - 2.0 / a[:-1] ** 2, order=2)
    assert np.allclose(c, [0.8, 1.5, -2.0], atol=1e-9)
    check_close(theory.predict_inverse_scale(c, 30.0), 0.8 + 1.5 / 30 - 2 / 900, 1e-9, "prediction")
    # a series that keeps drifting like log(a) is not of this form: its prediction far out misses
    drift = 0.8 + 0.2 * np.log(a)
    c = theory.inverse_scale_fit(a, drift, order=2)
    with pytest.raises(CheckFailed):
        predicted = theory.predict_inverse_scale(c, 30.0)
        check_close(predicted, 0.8 + 0.2 * math.log(30.0), 1e-3, "drift")
    with pytest.raises(ValueError, match="order"):
        theory.inverse_scale_fit([1.0, 2.0], [1.0, 2.0], order=2)


def test_threshold_scale_by_structure():
    assert theory.critical.threshold_scale("dnc", 6, 3) == pytest.approx(3.0)
    assert theory.critical.threshold_scale("pair", 6, 2) == theory.pair_threshold_scale(6, 2)
    assert theory.critical.threshold_scale("pair", 6, 1) is None
    with pytest.raises(ValueError, match="K=5"):
        theory.critical.threshold_scale("pair", 5, 2)


def test_negative_count_bands_on_each_stretch_of_the_branch():
    bands = theory.critical.negative_count_bands
    fold = theory.fold_scale("dnc", 6, 2, 2)
    assert bands("dnc", 6, 2, 2, 0.5 * fold) == (15,)
    assert bands("dnc", 6, 2, 2, 1.01 * fold) == (14, 9)
    assert bands("dnc", 6, 2, 2, 2.0) == (0,)  # alpha_c = 6/3 itself
    assert bands("pair", 6, 2, 2, 0.99 * theory.pair_threshold_scale(6, 2)) == (3,)
    assert bands("dnc", 6, 2, 1, 0.1) == (0,)
    assert bands("pair", 6, 2, 1, 0.1) is None


def test_inverse_scale_fit_with_a_fixed_limit():
    a = np.linspace(6.0, 14.0, 9)
    values = 1.0 + 1.5 / a - 2.0 / a**2
    assert np.allclose(theory.inverse_scale_fit(a, values, 2, limit=1.0), [1.0, 1.5, -2.0])
    with pytest.raises(ValueError, match="order=0"):
        theory.inverse_scale_fit(a, values, 0, limit=1.0)


def test_extrapolated_limit_tells_a_limit_of_one_from_another():
    a = np.linspace(6.0, 14.0, 5)
    for limit in (1.0, 0.8):
        out = theory.critical.extrapolated_limit(a, limit + 1.5 / a - 2.0 / a**2, 40.0)
        truth = limit + 1.5 / 40 - 2.0 / 1600
        assert out["limit"] == pytest.approx(limit, abs=1e-8) and out["spread"] < 1e-8
        assert out["predicted"] == pytest.approx(truth, rel=1e-9)
        # the hypothesis "the limit is 1" predicts far out only when it is true
        assert (abs(out["predicted_one"] / truth - 1) < 1e-3) == (limit == 1.0)


@pytest.mark.parametrize("K,c,alpha", [(3, 0, 0.4), (4, 2, 3.0), (10, 7, 9.0)])
def test_dnc_softmax_split_is_the_softmax_hessian_entry_by_entry(K, c, alpha):
    import torch

    w1, rho1, w2, rho2 = theory.critical.dnc_softmax_split(K, c, alpha)
    p = torch.softmax(alpha * (torch.eye(K, dtype=torch.float64)[c] - 1.0 / K), 0)
    rho = torch.diag(p) - torch.outer(p, p)
    tol = 1e-15 * float(rho.abs().max())
    assert torch.allclose(w1 * rho1 + w2 * rho2, rho, rtol=1e-12, atol=tol)
    assert w1 == pytest.approx(math.exp(alpha) / (math.exp(alpha) + K - 1) ** 2, rel=1e-13)
    assert torch.linalg.eigvalsh(rho2)[0] > -1e-13  # rho''_c is positive semi-definite
    S = torch.eye(K, dtype=torch.float64) - 1.0 / K
    right = theory.critical.lemma2_right_side(K, c)
    assert torch.allclose(S @ rho1 @ S, right, atol=1e-13)  # Lemma 2
    assert torch.allclose(rho1, right, atol=1e-13)  # rho'_c itself is K s_c s_c^T + S
    w1_big = theory.critical.dnc_softmax_split(K, c, 800.0)[0]
    assert 0.0 <= w1_big < 1e-300  # no overflow for large scales


def test_lemma2_curvature_closed_form_and_bad_input():
    import torch

    gen = torch.Generator().manual_seed(0)
    K, alpha = 5, 2.5
    Y = torch.randn(K, K, generator=gen, dtype=torch.float64)
    S = torch.eye(K, dtype=torch.float64) - 1.0 / K
    direct = 0.0
    for c in range(K):  # (1/K) sum_c (Y s_c)^T rho_c (Y s_c) with rho_c from the softmax
        p = torch.softmax(alpha * S[:, c], 0)
        v = Y @ S[:, c]
        direct += float(v @ (torch.diag(p) - torch.outer(p, p)) @ v) / K
    assert theory.critical.lemma2_curvature(Y, alpha) == pytest.approx(direct, rel=1e-12)
    with pytest.raises(ValueError, match="Y="):
        theory.critical.lemma2_curvature(torch.zeros(3, 4), alpha)
    with pytest.raises(ValueError, match="c=4"):
        theory.critical.dnc_softmax_split(4, 4, 1.0)
