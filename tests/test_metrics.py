"""DNC metrics, the field's NC metrics, balancedness, rank and the structure classifier."""

import numpy as np
import pytest
import torch

from dufm.losses import forward
from dufm.metrics import (
    balancedness_residual,
    cdnv,
    class_mean_logits,
    classify_structure,
    dnc1,
    dnc2,
    dnc3,
    dnc_metrics,
    equiangularity,
    equinorm,
    field_metrics,
    layer_inputs,
    max_angle_gap,
    mixture_partition,
    ncc_mismatch,
    numerical_rank,
    pairing,
    papyan_nc1,
    self_duality,
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


# The field's NC metrics (Papyan, Han & Donoho 2020; Galanti et al. 2022), each against a
# reference written from its definition with explicit loops in NumPy.


def field_problem(d=6, sizes=(3, 5, 2, 4), seed=0):
    """Random features with unequal classes in shuffled order, a classifier and logits."""
    rng = np.random.default_rng(seed)
    K, N = len(sizes), sum(sizes)
    labels = rng.permutation(np.repeat(np.arange(K), sizes))
    H = rng.normal(size=(d, K))[:, labels] + 0.6 * rng.normal(size=(d, N))
    return H, labels, rng.normal(size=(K, d)), rng.normal(size=(K, N))


def reference_geometry(H, labels):
    K = labels.max() + 1
    mu = [np.mean([H[:, i] for i in range(H.shape[1]) if labels[i] == c], axis=0) for c in range(K)]
    mu_G = np.mean([H[:, i] for i in range(H.shape[1])], axis=0)
    return K, mu, [mu_c - mu_G for mu_c in mu]


def reference_papyan_nc1(H, labels):
    K, mu, m = reference_geometry(H, labels)
    d, N = H.shape
    Sigma_W = np.zeros((d, d))
    for i in range(N):
        Sigma_W += np.outer(H[:, i] - mu[labels[i]], H[:, i] - mu[labels[i]]) / N
    Sigma_B = sum(np.outer(m_c, m_c) for m_c in m) / K
    values, vectors = np.linalg.eigh(Sigma_B)
    top = np.argsort(values)[::-1][: K - 1]
    pinv = sum(np.outer(vectors[:, j], vectors[:, j]) / values[j] for j in top)
    return np.trace(Sigma_W @ pinv) / K


def reference_cdnv(H, labels):
    K, mu, _ = reference_geometry(H, labels)
    V = [
        np.mean([np.sum((H[:, i] - mu[c]) ** 2) for i in range(H.shape[1]) if labels[i] == c])
        for c in range(K)
    ]
    pairs = [(c, e) for c in range(K) for e in range(c + 1, K)]
    return np.mean([(V[c] + V[e]) / (2 * np.sum((mu[c] - mu[e]) ** 2)) for c, e in pairs])


def reference_cosines(H, labels):
    K, _, m = reference_geometry(H, labels)
    return [
        m[c] @ m[e] / (np.linalg.norm(m[c]) * np.linalg.norm(m[e]))
        for c in range(K)
        for e in range(c + 1, K)
    ]


def reference_ncc_mismatch(H, labels, Z):
    K, mu, _ = reference_geometry(H, labels)
    wrong = 0
    for i in range(H.shape[1]):
        nearest = np.argmin([np.linalg.norm(H[:, i] - mu[c]) for c in range(K)])
        wrong += int(nearest != np.argmax(Z[:, i]))
    return wrong / H.shape[1]


def test_field_metrics_match_their_definitions_on_random_data():
    H, labels, W, Z = field_problem()
    _, _, m = reference_geometry(H, labels)
    M = np.stack(m, axis=1)
    norms = [np.linalg.norm(m_c) for m_c in m]
    K = labels.max() + 1
    expected = {
        "papyan_nc1": reference_papyan_nc1(H, labels),
        "cdnv": reference_cdnv(H, labels),
        "equinorm": np.std(norms) / np.mean(norms),
        "equiangularity": np.std(reference_cosines(H, labels)),
        "max_angle_gap": np.mean([abs(c + 1 / (K - 1)) for c in reference_cosines(H, labels)]),
        "self_duality": np.sum((W.T / np.linalg.norm(W) - M / np.linalg.norm(M)) ** 2),
        "ncc_mismatch": reference_ncc_mismatch(H, labels, Z),
    }
    measured = field_metrics(torch.tensor(H), torch.tensor(labels), W=torch.tensor(W), Z=Z)
    assert measured.keys() == expected.keys()
    for name, value in expected.items():
        assert value > 0.01, name  # random data: every metric clearly away from zero
        assert measured[name] == pytest.approx(value, rel=1e-12), name
    single = (papyan_nc1, cdnv, equinorm, equiangularity, max_angle_gap)
    for metric in single:
        assert metric(H, labels) == measured[metric.__name__]
    assert self_duality(W, H, labels) == measured["self_duality"]
    assert ncc_mismatch(H, labels, Z) == measured["ncc_mismatch"]


def test_field_metrics_compute_in_float64_from_float32_features():
    H, labels, _, _ = field_problem(seed=3)
    H32 = torch.tensor(H, dtype=torch.float32)
    assert papyan_nc1(H32, labels) == papyan_nc1(H32.double(), labels)
    assert papyan_nc1(H32, labels) == pytest.approx(
        reference_papyan_nc1(H32.double().numpy(), labels), rel=1e-12
    )


@pytest.mark.parametrize("L", [1, 2, 3])
def test_field_metrics_vanish_in_every_layer_of_a_constructed_dnc_point(L):
    K, n = 5, 3
    params = factorize(dnc_logits(K, n, 4.0), L, 8, seed=L)
    labels = torch.arange(K).repeat_interleave(n)
    inputs = layer_inputs(params)
    for H in inputs:
        for name, value in field_metrics(H, labels).items():
            assert 0 <= value < 1e-12, name
    last = field_metrics(inputs[-1], labels, W=params[-1], Z=forward(params)[-1])
    assert last["self_duality"] < 1e-12
    assert last["ncc_mismatch"] == 0.0
    order = torch.randperm(K * n, generator=GEN)  # the samples in any order
    shuffled = field_metrics(inputs[-1][:, order], labels[order], W=params[-1])
    assert max(shuffled.values()) < 1e-12


def test_the_pair_structure_is_not_equiangular_nor_maximally_separated():
    params = factorize(pair_logits(6, 2, 3.0), 2, 8, seed=0)
    labels = torch.arange(6).repeat_interleave(2)
    H = layer_inputs(params)[-1]
    assert equiangularity(H, labels) > 0.3
    assert max_angle_gap(H, labels) > 0.3


def test_papyan_nc1_stays_of_order_one_near_a_low_rank_structure_while_cdnv_vanishes():
    # The pair structure's centred means span K/2 = 3 < K - 1 directions: Sigma_B's 4th and 5th
    # eigenvalues are made of the noise itself, so the ratio does not shrink with the noise.
    params = factorize(pair_logits(6, 2, 3.0), 2, 8, seed=0)
    labels = torch.arange(6).repeat_interleave(2)
    H = layer_inputs(params)[-1]
    for noise in (1e-3, 1e-5):
        noisy = H + noise * randn(*H.shape)
        assert papyan_nc1(noisy, labels) > 0.1
        assert cdnv(noisy, labels) < 10 * noise


def test_field_metrics_of_two_classes_on_a_line_by_hand():
    H = torch.tensor([[-1.1, -0.9, 0.9, 1.1]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # Sigma_W = 0.01, Sigma_B = 1: Tr(Sigma_W Sigma_B^+) / K = 0.005; V_c = 0.01, |mu_0 - mu_1| = 2.
    assert papyan_nc1(H, labels) == pytest.approx(0.005, rel=1e-12)
    assert cdnv(H, labels) == pytest.approx(0.0025, rel=1e-12)
    assert max(equinorm(H, labels), equiangularity(H, labels), max_angle_gap(H, labels)) < 1e-15
    # M = [[-1, 1]]: a classifier along M, against it, and orthogonal to it (in two dimensions).
    assert self_duality(torch.tensor([[-3.0], [3.0]]), H, labels) == pytest.approx(0, abs=1e-15)
    assert self_duality(torch.tensor([[1.0], [-1.0]]), H, labels) == pytest.approx(4, rel=1e-15)
    H2 = torch.cat([H, torch.zeros_like(H)])
    W_orthogonal = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    assert self_duality(W_orthogonal, H2, labels) == pytest.approx(2, rel=1e-15)


def test_papyan_nc1_and_cdnv_of_an_equilateral_triangle_by_hand():
    angles = torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64) * torch.pi / 3
    means = torch.stack([angles.cos(), angles.sin()])  # unit simplex: Sigma_B = I / 2
    delta = 0.3
    shift = torch.tensor([[delta], [0.0]], dtype=torch.float64)
    H = torch.cat([means - shift, means + shift], dim=1)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    # Sigma_W = delta^2 e1 e1^T: Tr(Sigma_W 2 I) / 3; V_c = delta^2 and |mu_c - mu_e|^2 = 3.
    assert papyan_nc1(H, labels) == pytest.approx(2 * delta**2 / 3, rel=1e-12)
    assert cdnv(H, labels) == pytest.approx(delta**2 / 3, rel=1e-12)
    assert max(equinorm(H, labels), equiangularity(H, labels), max_angle_gap(H, labels)) < 1e-15


def test_angle_metrics_of_a_square_by_hand():
    means = torch.tensor([[1.0, 0, -1, 0], [0, 1, 0, -1]], dtype=torch.float64)
    H = torch.cat([0.9 * means, 1.1 * means], dim=1)
    labels = torch.tensor([0, 1, 2, 3] * 2)
    # Cosines 0 (four neighbours) and -1 (two opposites); -1/(K-1) = -1/3.
    assert equinorm(H, labels) < 1e-15
    assert equiangularity(H, labels) == pytest.approx(2**0.5 / 3, rel=1e-12)
    assert max_angle_gap(H, labels) == pytest.approx(4 / 9, rel=1e-12)


def test_equinorm_centres_on_the_mean_of_all_samples():
    # Class 0: one sample at 0; class 1: three at 4. mu_G = 3, so |m| = (3, 1): std 1, mean 2.
    H = torch.tensor([[0.0, 4.0, 4.0, 4.0]], dtype=torch.float64)
    assert equinorm(H, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.5, rel=1e-12)
    three = torch.tensor([[-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert equinorm(three, torch.tensor([0, 0, 1, 1, 2, 2])) == pytest.approx(0.5**0.5, rel=1e-12)


def test_ncc_mismatch_counts_samples_where_the_logits_disagree_with_the_nearest_mean():
    H = torch.tensor([[0.0, 0.2, 1.0, 0.8]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    Z = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.float64)
    assert ncc_mismatch(H, labels, Z) == 0.25
    assert ncc_mismatch(H, labels, torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])) == 0.0


def test_field_metrics_are_invariant_to_relabelling_sample_order_and_rotation():
    H, labels, W, Z = field_problem(seed=1)
    H, labels, W, Z = (torch.tensor(a) for a in (H, labels, W, Z))
    base = field_metrics(H, labels, W=W, Z=Z)
    perm = torch.tensor([2, 0, 3, 1])  # class c is called perm[c]
    W_perm, Z_perm = torch.empty_like(W), torch.empty_like(Z)
    W_perm[perm], Z_perm[perm] = W, Z
    order = torch.randperm(H.shape[1], generator=GEN)
    relabelled = field_metrics(H[:, order], perm[labels][order], W=W_perm, Z=Z_perm[:, order])
    Q = torch.linalg.qr(randn(6, 6))[0]
    rotated = field_metrics(Q @ H, labels, W=W @ Q.T, Z=Z)
    for name, value in base.items():
        assert relabelled[name] == pytest.approx(value, rel=1e-12), name
        assert rotated[name] == pytest.approx(value, rel=1e-12), name


def test_field_metrics_reject_bad_labels_and_shapes_by_name():
    H, labels, W, Z = field_problem()
    with pytest.raises(ValueError, match=r"classes \[1\] have fewer than 2 samples"):
        papyan_nc1(H[:, :4], np.array([0, 1, 0, 0]))
    with pytest.raises(ValueError, match=r"classes \[2\] have fewer than 2 samples"):
        cdnv(H[:, :5], np.array([0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="K=1 is not allowed: labels must hold K >= 2 classes"):
        equinorm(H, np.zeros(H.shape[1], dtype=int))
    with pytest.raises(
        ValueError,
        match=r"labels=\[2, 0, 2\] is not allowed: classes 0..K-1 must all be present; classes \[1",
    ):
        equiangularity(H[:, :4], np.array([0, 0, 2, 2]))
    with pytest.raises(ValueError, match=r"labels.shape=\(13,\) is not allowed: must be \(14,\)"):
        max_angle_gap(H, labels[:-1])
    with pytest.raises(ValueError, match="labels.dtype=torch.float64 is not allowed"):
        equinorm(H, labels.astype(float))
    with pytest.raises(
        ValueError, match=r"min\(labels\)=-1 is not allowed: class indices must be >= 0"
    ):
        equinorm(H, labels - 1)
    with pytest.raises(
        ValueError, match=r"W.shape=\(6, 4\) is not allowed: must be \(K, d\) = \(4, 6\)"
    ):
        self_duality(W.T, H, labels)
    with pytest.raises(ValueError, match=r"Z.shape=\(4, 13\) is not allowed: must be \(K, N\)"):
        ncc_mismatch(H, labels, Z[:, :-1])
    with pytest.raises(ValueError, match=r"H.shape=\(2, 8\) is not allowed: needs d >= K - 1 = 3"):
        papyan_nc1(np.ones((2, 8)) + np.arange(8), np.arange(8) % 4)
    with pytest.raises(ValueError, match="must be a non-empty 2-D tensor of shape"):
        field_metrics(H[0], labels)
    H_nan = H.copy()
    H_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="H is not allowed: 1 of its 84 entries are NaN"):
        field_metrics(H_nan, labels)
