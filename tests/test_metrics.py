"""DNC metrics, balancedness, rank and the structure classifier."""

import pytest
import torch

from dufm.metrics import (
    balancedness_residual,
    class_mean_logits,
    classify_structure,
    dnc1,
    dnc2,
    dnc3,
    dnc_metrics,
    mixture_partition,
    numerical_rank,
    pairing,
)
from dufm.structures import (
    dnc_logits,
    expand_classes,
    factorize,
    mixture_components,
    pair_logits,
    pair_matrix,
)

GEN = torch.Generator().manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


@pytest.mark.parametrize("L", [1, 2, 4])
def test_exact_dnc_solution_has_zero_metrics_in_every_layer(L):
    params = factorize(dnc_logits(5, 3, 2.0), L, 8, seed=1)
    metrics = dnc_metrics(params)
    for name, values in metrics.items():
        assert len(values) == L
        assert max(values) < 1e-12, name


def test_random_parameters_have_clearly_nonzero_metrics():
    params = [randn(8, 15), randn(8, 8), randn(5, 8)]
    metrics = dnc_metrics(params)
    assert min(metrics["DNC1"]) > 0.1
    assert min(metrics["DNC2"]) > 0.1
    assert min(metrics["DNC3"]) > 0.1


def test_dnc1_sees_within_class_spread_only():
    means = randn(6, 4)
    assert dnc1(expand_classes(means, 3), 4) < 1e-28
    assert dnc1(expand_classes(means, 3) + 0.1 * randn(6, 12), 4) > 1e-3


def test_dnc2_is_invariant_to_scale_and_rotation_but_not_to_distortion():
    Q = torch.linalg.qr(randn(6, 6))[0]
    S_feats = expand_classes(Q[:, :4] @ (torch.eye(4) - 0.25).double(), 2)
    assert dnc2(7.0 * S_feats, 4) < 1e-14
    stretched = S_feats.clone()
    stretched[0] *= 3.0
    assert dnc2(stretched, 4) > 0.05


def test_dnc3_is_zero_for_rows_in_the_span_of_the_centred_means():
    H = expand_classes(randn(7, 4), 2)
    centred = H.reshape(7, 4, 2).mean(-1)
    centred = centred - centred.mean(1, keepdim=True)
    W_in_span = randn(3, 4) @ centred.T
    assert dnc3(W_in_span, H, 4) < 1e-13
    assert dnc3(randn(3, 7), H, 4) > 0.1


def test_relu_metrics_use_post_activation_inputs():
    params = factorize(dnc_logits(4, 2, 1.0), 3, 6, seed=0)
    assert len(dnc_metrics(params, "relu")["DNC3"]) == 3


def test_balancedness_residual_is_zero_for_lemma1_and_large_for_random_parameters():
    assert balancedness_residual(factorize(pair_logits(6, 2, 1.5), 3, 8, seed=2)) < 1e-13
    assert balancedness_residual([randn(8, 12), randn(8, 8), randn(6, 8)]) > 0.5


def test_numerical_rank_counts_singular_values_above_the_relative_tolerance():
    assert numerical_rank(dnc_logits(10, 5, 3.0)) == 9
    assert numerical_rank(pair_logits(10, 5, 3.0)) == 5
    assert numerical_rank(torch.zeros(3, 6, dtype=torch.float64)) == 0


def test_class_mean_logits_average_each_class_block():
    Z = expand_classes(randn(4, 4), 3) + 0.0
    assert torch.allclose(class_mean_logits(Z), Z[:, ::3])


def test_classifier_recognises_dnc_pairs_in_any_order_zero_and_other():
    assert classify_structure(dnc_logits(10, 5, 7.0)).name == "dnc"
    perm = torch.randperm(10, generator=GEN)
    permuted = expand_classes(3.0 * pair_matrix(10)[perm][:, perm], 5)
    verdict = classify_structure(permuted)
    assert (verdict.name, verdict.rank) == ("pair", 5)
    assert classify_structure(pair_logits(9, 2, 1.0)).name == "pair"
    assert classify_structure(torch.zeros(4, 8, dtype=torch.float64)).name == "zero"
    other = classify_structure(randn(6, 12))
    assert (other.name, other.rank) == ("other", 6)


def test_classifier_tolerates_small_noise_and_rejects_large_noise():
    Z = dnc_logits(6, 3, 5.0)
    assert classify_structure(Z + 0.01 * randn(6, 18)).name == "dnc"
    assert classify_structure(Z + 3.0 * randn(6, 18)).name == "other"


def test_pairing_rejects_a_matrix_without_mutual_partners():
    M = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    assert pairing(M) is None


def test_classifier_recognises_a_mixture_of_a_restricted_simplex_and_pairs():
    T_S, T_P = mixture_components(10, [0, 1, 3, 4, 5, 6], [(2, 8), (7, 9)])
    verdict = classify_structure(expand_classes(6.4 * T_S + 7.0 * T_P, 5) + 1e-5 * randn(10, 50))
    assert verdict.name == "mixture"
    assert verdict.rank == 5 + 2  # (m - 1) from the simplex, one per pair
    assert verdict.simplex_classes == (0, 1, 3, 4, 5, 6)
    assert verdict.pairs == ((2, 8), (7, 9))


def test_mixture_partition_needs_strong_partners_and_two_simplex_classes():
    T_S, T_P = mixture_components(6, [0, 1, 2, 3], [(4, 5)])
    assert mixture_partition(6.0 * T_S + 5.0 * T_P) == ([0, 1, 2, 3], [[4, 5]])
    weak = 6.0 * T_S + torch.diag(torch.tensor([0.0, 0, 0, 0, 0.8, 0.8], dtype=torch.float64))
    weak[4, 5] = weak[5, 4] = -0.2  # the partner's logit is above minus half the own logit
    assert mixture_partition(weak) is None
    assert mixture_partition(pair_matrix(6)) is None  # no simplex classes: the pair structure


def test_mixture_components_must_cover_every_class_once():
    with pytest.raises(ValueError, match="must name every class 0..5 exactly once"):
        mixture_components(6, [0, 1, 2], [(3, 3), (4, 5)])


def test_dnc_distance_and_training_accuracy_of_constructed_logits():
    from dufm.metrics import dnc_distance, training_accuracy

    K, n = 5, 3
    assert dnc_distance(dnc_logits(K, n, 2.0)) < 1e-15
    pair = pair_logits(K, n, 2.0)
    assert classify_structure(pair).name == "pair" and dnc_distance(pair) > 0.1
    assert training_accuracy(pair) == 1.0
    swapped = dnc_logits(K, n, 2.0)[[1, 0, 2, 3, 4]]  # classes 1 and 2 swap their logits
    assert training_accuracy(swapped) == 1 - 2 / K
    zero = dnc_distance(torch.zeros(K, K * n, dtype=torch.float64))
    assert zero != zero  # nan: Z = 0 has no direction
