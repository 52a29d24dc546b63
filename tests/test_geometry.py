"""The exact Hessian of the deep-UFM loss (Theorems 4 and 6) and the dimensions of the sets of
critical parameters with a given output (Theorem 5)."""

import pytest
import torch

from dufm import theory
from dufm.geometry import (
    attraction_threshold,
    flat_output_dimension,
    flatness,
    kernel_and_normal,
    loss_hessian,
    negative_count,
    orbit_dimension,
    output_jacobian,
    structure_spectrum,
)
from dufm.losses import forward, loss_and_grads, one_hot_labels
from dufm.metrics import critical_point_residual
from dufm.structures import dnc_logits, factorize

GEN = torch.Generator().manual_seed(0)
K, n, L, d, lam = 3, 2, 2, 4, 0.05


def random_params():
    shapes = [(d, K * n)] + [(d, d)] * (L - 1) + [(K, d)]
    return [0.7 * torch.randn(*s, generator=GEN, dtype=torch.float64) for s in shapes]


def flat_gradient(params):
    targets = one_hot_labels(K, n, torch.float64)
    lam_t = torch.full((1, 1, 1), lam, dtype=torch.float64)
    _, grads = loss_and_grads([P.unsqueeze(0) for P in params], targets, lam_t, "linear")
    return torch.cat([g[0].flatten() for g in grads])


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_hessian_is_symmetric(activation):
    H = loss_hessian(random_params(), lam, activation)
    assert torch.allclose(H, H.T, atol=1e-12)


def test_hessian_columns_are_finite_differences_of_the_analytic_gradient():
    params = random_params()
    H = loss_hessian(params, lam)
    sizes = [P.numel() for P in params]
    flat = torch.cat([P.flatten() for P in params])
    h = 1e-6
    for j in torch.randperm(flat.numel(), generator=GEN)[:12].tolist():
        shifted = []
        for sign in (1, -1):
            x = flat.clone()
            x[j] += sign * h
            parts = zip(torch.split(x, sizes), params, strict=True)
            shifted.append(flat_gradient([c.view(P.shape) for c, P in parts]))
        numeric = (shifted[0] - shifted[1]) / (2 * h)
        assert torch.allclose(H[:, j], numeric, atol=1e-7), j


def test_rotating_a_hidden_layer_of_a_critical_point_is_a_flat_direction():
    alpha, _ = theory.optimal_scale("dnc", K, n, L, lam)
    params = factorize(dnc_logits(K, n, alpha), L, d, seed=1)
    A = torch.randn(d, d, generator=GEN, dtype=torch.float64)
    A = A - A.T  # W_1 -> e^{tA} W_1, W_2 -> W_2 e^{-tA} leaves the loss unchanged
    H1, W1, W2 = params
    tangent = torch.cat([torch.zeros_like(H1).flatten(), (A @ W1).flatten(), (-W2 @ A).flatten()])
    H = loss_hessian(params, lam)
    assert float(tangent @ H @ tangent) == pytest.approx(0.0, abs=1e-12 * float(tangent @ tangent))
    assert float(torch.linalg.eigvalsh(H)[-1]) > 1e-3  # not a trivially flat Hessian


def test_flatness_norms_of_a_known_spectrum():
    H = torch.diag(torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64))
    assert flatness(H) == pytest.approx({"frobenius": 5.0, "spectral": 4.0, "trace": 7.0})


def test_bad_arguments_raise_a_value_error_naming_them():
    with pytest.raises(ValueError, match="lam=0.0"):
        loss_hessian(random_params(), 0.0)
    with pytest.raises(ValueError, match="activation='tanh'"):
        loss_hessian(random_params(), lam, "tanh")


def test_the_zero_point_has_a_zero_dimensional_orbit():
    params = [torch.zeros(5, 6, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)]
    assert orbit_dimension(params) == 0


def test_one_layer_orbit_is_the_set_of_orthonormal_r_frames():
    # L = 1: O(d) acts on H_1 (rank r) and W_1 = H_1-aligned; the orbit is the Stiefel manifold
    # of r-frames in R^d, of dimension r d - r (r + 1) / 2 (a textbook count)
    d, r = 6, 2
    U = torch.linalg.qr(torch.randn(d, r, generator=GEN, dtype=torch.float64)).Q
    H = U @ torch.randn(r, 8, generator=GEN, dtype=torch.float64)
    W = torch.randn(4, r, generator=GEN, dtype=torch.float64) @ U.T
    assert orbit_dimension([H, W]) == r * d - r * (r + 1) // 2


def test_output_jacobian_matches_a_finite_difference():
    params = [
        torch.randn(4, 6, generator=GEN, dtype=torch.float64),
        torch.randn(4, 4, generator=GEN, dtype=torch.float64),
        torch.randn(3, 4, generator=GEN, dtype=torch.float64),
    ]
    J = output_jacobian(params)
    step = 1e-6
    bumped = [P.clone() for P in params]
    bumped[1][2, 3] += step
    numeric = (forward(bumped)[-1] - forward(params)[-1]).flatten() / step
    assert torch.allclose(J[:, 24 + 2 * 4 + 3], numeric, atol=1e-5)


def test_both_measures_agree_at_a_dnc_critical_point():
    K, n, L, d, lam = 4, 2, 2, 6, 2**-8
    alpha = theory.critical_scales("dnc", K, n, L, lam)[-1]
    params = factorize(dnc_logits(K, n, alpha), L, d, seed=3)
    assert orbit_dimension(params) == flat_output_dimension(params, lam)


def test_negative_count_counts_below_the_relative_cut():
    eig = torch.tensor([-1e-3, -1e-12, 0.0, 1e-5, 1.0], dtype=torch.float64)
    assert negative_count(eig) == 1
    assert negative_count(eig, rtol=1e-13) == 2


def test_structure_spectrum_is_at_a_critical_point():
    lam, params, eig = structure_spectrum("dnc", 4, 2, 2, 2.5, d=5)
    assert critical_point_residual(params, lam) < 1e-9
    assert eig.shape == (sum(P.numel() for P in params),)


def test_attraction_threshold_brackets_the_dnc_threshold_and_checks_its_ends():
    lo, hi = attraction_threshold("dnc", 4, 2, 2, 1.0, 2.0, d=5, steps=12)
    assert lo < 4 / 3 <= hi and hi / lo < 1.001
    with pytest.raises(ValueError, match="saddle"):
        attraction_threshold("dnc", 4, 2, 2, 1.5, 2.0, d=5, steps=2)
    with pytest.raises(ValueError, match="attractive"):
        attraction_threshold("dnc", 4, 2, 2, 1.0, 1.2, d=5, steps=2)


def test_kernel_is_the_orbit_tangent_above_the_threshold_and_not_below():
    for scale, attractive in ((2.0, True), (1.2, False)):
        _, params, eig = structure_spectrum("dnc", 4, 2, 2, scale, d=5)
        tangent, normal = kernel_and_normal(eig, orbit_dimension(params))
        assert tangent.abs().max() < 1e-10 * eig[-1]
        assert (normal.min() > 1e-8 * eig[-1]) == attractive
    with pytest.raises(ValueError, match="orbit_dim"):
        kernel_and_normal(eig, eig.numel() + 1)


def test_lemma2_errors_are_rounding_and_a_wrong_rho_prime_fails():
    from dufm.geometry import lemma2_errors
    from dufm.theory.critical import dnc_softmax_split

    for K, c, alpha in [(3, 1, 0.5), (6, 0, 4.0), (10, 9, 11.0)]:
        errors = lemma2_errors(K, c, alpha)
        assert errors["split"] < 1e-9 and errors["lemma"] < 1e-13 and errors["psd"] > -1e-13

    def wrong(K, c, alpha):  # rho'_c with K instead of K - 1 at (c, c)
        w1, rho1, w2, rho2 = dnc_softmax_split(K, c, alpha)
        rho1 = rho1.clone()
        rho1[c, c] += 1.0
        return w1, rho1, w2, rho2

    errors = lemma2_errors(6, 2, 3.0, split=wrong)
    assert errors["split"] > 1e-2 and errors["lemma"] > 1e-2


def test_lemma2_predicts_the_full_hessian_along_each_matrix_and_a_wrong_lemma_fails(monkeypatch):
    import dufm.geometry as geometry
    from dufm.theory import critical

    assert geometry.lemma2_hessian_errors(4, 2, 2, 3.0, 6, trials=2) < 1e-10
    assert geometry.lemma2_hessian_errors(5, 3, 1, 6.0, 5, trials=2) < 1e-10

    def without_k_term(Y, alpha):  # Lemma 2 with S rho'_c S = S (the K s_c s_c^T term lost)
        K = Y.shape[0]
        w1, _, w2, _ = critical.dnc_softmax_split(K, 0, alpha)
        S = torch.eye(K, dtype=torch.float64) - 1.0 / K
        M = S @ Y.double() @ S
        psd = sum(float(M[:, c] @ critical.dnc_softmax_split(K, c, alpha)[3] @ M[:, c])
                  for c in range(K))  # fmt: skip
        return (w1 * float(torch.linalg.matrix_norm(M) ** 2) + w2 * psd) / K

    monkeypatch.setattr(geometry, "lemma2_curvature", without_k_term)
    assert geometry.lemma2_hessian_errors(4, 2, 2, 3.0, 6, trials=2) > 1e-2


def test_critical_point_summary_records_a_local_minimum_and_a_saddle():
    from dufm.geometry import critical_point_summary

    above = critical_point_summary("dnc", 4, 2, 2, 2.0, 5)
    below = critical_point_summary("dnc", 4, 2, 2, 1.2, 5)
    assert above["negative"] == 0 and above["residual"] < 1e-9
    assert above["tangent_rel"] < 1e-10 and above["normal_rel"] > 1e-8
    assert below["negative"] > 0 and "orbit" not in below
    assert set(above) >= {"lam", "min_rel", "frobenius", "spectral", "trace", "orbit"}


def test_critical_set_dimensions_are_the_stiefel_count_and_pass_the_chapter_checks():
    from dufm.geometry import check_critical_set_dimensions, critical_set_dimensions

    rows = critical_set_dimensions([4], [2], [0, 2], n=1, lam=2**-6)
    assert [(x["K"], x["L"], x["d"]) for x in rows] == [(4, 2, 4), (4, 2, 6)]
    for x in rows:
        for s, r in (("dnc", 3), ("pair", 2)):
            assert x[f"{s}_orbit"] == x[f"{s}_flat"] == 2 * (r * x["d"] - r * (r + 1) // 2)
    found = check_critical_set_dimensions(rows)
    assert found["paper_misses"] == 2  # the paper's count misses L r(r-1)/2 = 6 everywhere
    assert found["paper_below_1"] == 1  # its R(K) = 3 / 4 at K = 4
    assert found["R_at_K"] == [rows[0]["dnc_orbit"] / rows[0]["pair_orbit"]]


def test_critical_set_checks_fail_on_a_disagreeing_or_non_increasing_measurement():
    from dufm.checks import CheckFailed
    from dufm.geometry import check_critical_set_dimensions, stiefel_dimension

    def row(K, L, d):
        r = dict(dnc=K - 1, pair=K // 2)
        out = dict(K=K, L=L, d=d)
        for s in r:
            out[f"{s}_orbit"] = out[f"{s}_flat"] = stiefel_dimension(r[s], d, L)
            out[f"{s}_r"] = r[s]
        return out

    rows = [row(4, 2, 4), row(4, 2, 5)]
    check_critical_set_dimensions(rows)
    bad = [dict(rows[0], dnc_flat=rows[0]["dnc_flat"] + 1), rows[1]]
    with pytest.raises(CheckFailed, match="orbit dimension"):
        check_critical_set_dimensions(bad)
    with pytest.raises(CheckFailed, match="not increasing"):
        check_critical_set_dimensions(rows[::-1])


def test_paper_counts_are_the_printed_formulas():
    from dufm.geometry import paper_dimension_ratio, paper_dnc_dimension, stiefel_dimension

    assert paper_dnc_dimension(10, 12, 3) == 3 * 9 * 3
    assert paper_dimension_ratio(10, 10) == 9 / 25
    assert stiefel_dimension(9, 10, 2) == 2 * (90 - 45)
