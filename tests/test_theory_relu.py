"""Theorem 7 (deep ReLU UFM): the construction, its loss, its region, ReLU DNC points, and the
ReLU training step (through ``dufm.trainer.train``)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dufm.checks import CheckFailed
from dufm.losses import class_labels, forward, full_loss, mean_cross_entropy
from dufm.metrics import assumption1_ratios, dnc_metrics
from dufm.structures import expand_classes, simplex_matrix
from dufm.theory import (
    check_construction,
    construction_loss,
    construction_matrices,
    construction_params,
    construction_psi,
    construction_scale,
    optimal_construction,
    optimal_scale,
    structure_loss,
    symmetric_params,
    theorem7_appendix_region,
    theorem7_construction_wins,
    theorem7_maps,
    theorem7_stated_region,
)
from dufm.theory.relu import (
    CHAPTER_PARAMETERS,
    check_chapter_parameters,
    dnc_point_summary,
    figure6_verdict,
    relu_clipping,
    relu_dnc_point,
    relu_run_summary,
)
from dufm.trainer import train

LAM = 2.0**-9


@pytest.mark.parametrize("K", [4, 5, 10, 11])
@pytest.mark.parametrize("L", [2, 3, 5])
def test_construction_passes_its_four_checks(K, L):
    n, d = 3, K + 3
    psi = 0.9
    params = construction_params(K, n, L, d, psi)
    gamma = construction_scale(K, n, L, psi)
    measured = check_construction(params, LAM, gamma, tol=1e-12)
    assert measured["negative"] < 1e-14  # zero entries of H_2 carry rounding only
    assert len(params) == L + 1 and params[0].shape == (d, K * n) and params[-1].shape == (K, d)


def test_construction_matrices_have_the_stated_algebra():
    for K in (6, 7):
        X, Y = construction_matrices(K)
        y = K if K % 2 == 0 else K - 1
        assert torch.allclose(X @ X, 2 * X) and torch.allclose(Y @ Y, y * Y)
        assert torch.count_nonzero(X @ Y) == 0 and torch.count_nonzero(Y @ X) == 0
        assert set((X + Y).unique().tolist()) == {0.0, 1.0, 2.0}


@pytest.mark.parametrize(
    "perturb, failing",
    [
        ("negative", "negative"),  # one hidden pre-activation pushed below zero
        ("norm", "norm_spread"),  # one matrix rescaled, the product compensated
        ("output", "output_error"),  # W_L changed: a different output
        ("loss", "loss_error"),  # an extra row in H_1 that changes only the regulariser
    ],
)
def test_construction_checks_fail_on_a_perturbed_construction(perturb, failing):
    K, n, L, d, psi = 6, 2, 3, 9, 1.1
    params = construction_params(K, n, L, d, psi)
    gamma = construction_scale(K, n, L, psi)
    if perturb == "negative":
        params[1][0, 0] -= 50.0  # H_2 gets negative entries in row 0
    elif perturb == "norm":
        params[1] = params[1] * 1.01
        params[0] = params[0] / 1.01
    elif perturb == "output":
        params[-1] = params[-1] * 1.001
    else:
        params[0][K, :] = 1e-3  # row beyond the construction: W_1 ignores it (column K is zero)
    with pytest.raises(CheckFailed, match=failing):
        check_construction(params, LAM, gamma, tol=1e-12)


@pytest.mark.parametrize("K", [4, 7, 10])
@pytest.mark.parametrize("L", [2, 3, 6])
def test_closed_form_loss_equals_the_relu_full_loss(K, L):
    n, d = 5, K + 2
    for gamma in (0.05, 1.0, 7.5, 30.0):
        psi = construction_psi(K, n, L, gamma)
        params = construction_params(K, n, L, d, psi)
        assert math.isclose(construction_scale(K, n, L, psi), gamma, rel_tol=1e-13)
        direct = full_loss(params, LAM, activation="relu")
        assert math.isclose(construction_loss(K, n, L, LAM, gamma), direct, rel_tol=1e-12)


def _margin(Z: torch.Tensor) -> float:
    """Smallest margin of any column's true logit over the other logits (the output scale)."""
    K, N = Z.shape
    labels = class_labels(K, N // K)
    true = Z[labels, torch.arange(N)]
    others = Z.clone()
    others[labels, torch.arange(N)] = -torch.inf
    return float((true - others.max(dim=0).values).min())


@pytest.mark.parametrize("K", range(4, 21))
def test_region_function_matches_a_brute_force_comparison(K):
    """Both sides evaluated directly: the construction's parameters through the ReLU forward pass,
    DNC at the same margin through the closed-form linear DNC loss (fit and Schatten regulariser).
    It wins at every common scale iff its fit and its regulariser are both smaller."""
    n, d = 3, K
    for L in range(2, 13):
        verdicts = []
        for gamma in (0.5, 3.0, 10.0):
            params = construction_params(K, n, L, d, construction_psi(K, n, L, gamma))
            Z = forward(params, "relu")[-1]
            alpha = _margin(Z)
            reg = 0.5 * sum(float(P.pow(2).sum()) for P in params)
            fit = float(mean_cross_entropy(Z))
            dnc_fit = structure_loss("dnc", K, n, L, 1e-300, alpha)
            dnc_reg = structure_loss("dnc", K, n, L, 1.0, alpha) - dnc_fit
            assert fit < dnc_fit  # the fit part is always smaller at equal margins
            verdicts.append(reg < dnc_reg)
        assert len(set(verdicts)) == 1  # scale-free: the same answer at every scale
        assert verdicts[0] == theorem7_construction_wins(K, L), (K, L)


def test_stated_regions_lie_inside_the_equal_scale_region():
    for K in range(4, 31):
        for L in range(2, 13):
            if theorem7_stated_region(K, L) or theorem7_appendix_region(K, L):
                assert theorem7_construction_wins(K, L), (K, L)
    assert theorem7_appendix_region(14, 4) and not theorem7_stated_region(14, 4)
    assert not theorem7_appendix_region(15, 4) and theorem7_appendix_region(11, 5)


def test_region_functions_reject_bad_sizes():
    with pytest.raises(ValueError, match="L=1"):
        theorem7_construction_wins(10, 1)
    with pytest.raises(ValueError, match="K=1"):
        theorem7_construction_wins(1, 3)


def test_optimal_construction_is_the_minimum_of_the_closed_form():
    K, n, L = 10, 5, 5
    gamma, loss = optimal_construction(K, n, L, LAM)
    grid = np.linspace(0.5 * gamma, 1.5 * gamma, 2001)
    assert loss <= construction_loss(K, n, L, LAM, grid).min() + 1e-15
    assert math.isclose(construction_loss(K, n, L, LAM, gamma), loss, rel_tol=1e-15)
    h = 1e-4 * gamma
    slope = construction_loss(K, n, L, LAM, gamma + h) - construction_loss(K, n, L, LAM, gamma - h)
    assert abs(slope) / (2 * h) < 1e-8


def test_maps_compare_own_optima_with_the_dnc_bound():
    maps = theorem7_maps([4, 10, 16], [3, 5], 5, LAM)
    assert maps["dnc_bound"][1, 1] == optimal_scale("dnc", 10, 5, 5, LAM)[1]
    assert maps["construction"][1, 1] == optimal_construction(10, 5, 5, LAM)[1]
    assert np.array_equal(maps["own_scale"], maps["construction"] < maps["dnc_bound"])
    # where the construction wins at equal scale it must also win at its own optimal scale
    assert not (maps["equal_scale"] & ~maps["own_scale"]).any()


def test_symmetric_params_are_relu_dnc_points_and_stay_so_under_gradient_descent():
    K, n, L, copies = 5, 2, 3, 3
    params = symmetric_params(K, n, L, copies, seed=3)
    Z = forward(params, "relu")[-1]
    S = expand_classes(simplex_matrix(K), n)
    coef = float((Z * S).sum() / (S * S).sum())
    assert torch.allclose(Z, coef * S, atol=1e-12)
    ratios = assumption1_ratios(params)
    assert max(ratios["dnc2_before"] + ratios["dnc2_after"]) < 1e-12
    result = train(
        K, n, L, K * copies, 0.01, seeds=[0], lr=0.2, steps=300, activation="relu",
        params=[P.unsqueeze(0) for P in params], progress=False,
    )  # fmt: skip
    trained = result.run_params(0)
    Z = forward(trained, "relu")[-1]
    coef = float((Z * S).sum() / (S * S).sum())
    assert torch.allclose(Z, coef * S, atol=1e-10 * abs(coef))
    assert max(dnc_metrics(trained, "relu")["DNC1"]) < 1e-20
    ratios = assumption1_ratios(trained)
    assert max(ratios["dnc2_before"] + ratios["dnc2_after"]) < 1e-10


def test_assumption1_ratios_measure_mean_over_centred_norms():
    K, n = 3, 2
    # H_2 class means: columns e_c + 2 * 1 (ReLU inactive): mean 1/3 + 2, centred I - 1/3.
    M = torch.eye(K, dtype=torch.float64) + 2.0
    H1 = expand_classes(M, n)
    params = [H1, torch.eye(K, dtype=torch.float64), torch.eye(K, dtype=torch.float64)]
    ratios = assumption1_ratios(params)
    expected = math.sqrt(K) * math.sqrt(K) * (2 + 1 / K) / math.sqrt(K - 1)
    assert math.isclose(ratios["before"][0], expected, rel_tol=1e-12)
    assert ratios["after"] == ratios["before"] and ratios["centred_shrink"] == [1.0]
    # Centred means K S (diagonal K-1, off-diagonal -1): mean 0 before ReLU; ReLU leaves
    # (K-1) I, with mean ratio 1/sqrt(K-1) and centred part (K-1)/K as large.
    params[0] = expand_classes(K * simplex_matrix(K), n)
    ratios = assumption1_ratios(params)
    assert ratios["before"][0] < 1e-15
    assert math.isclose(ratios["after"][0], 1 / math.sqrt(K - 1), rel_tol=1e-12)
    assert math.isclose(ratios["centred_shrink"][0], (K - 1) / K, rel_tol=1e-12)


def _autograd_grads(params, lam):
    leaves = [P.clone().requires_grad_(True) for P in params]
    Z = forward(leaves, "relu")[-1]
    K, N = Z.shape
    fit = torch.nn.functional.cross_entropy(Z.T, class_labels(K, N // K))
    loss = fit + 0.5 * lam * sum(P.pow(2).sum() for P in leaves)
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("L", [2, 3, 4])
def test_relu_step_matches_autograd(L):
    """One step of ``train(..., activation="relu")`` equals P - lr * (autograd gradient), to 1e-12
    relative in float64; the start has negative pre-activations, so the ReLU masks matter."""
    K, n, d, lam, lr = 4, 3, 7, 0.05, 10.0
    gen = torch.Generator().manual_seed(L)
    params = [torch.randn(d, K * n, generator=gen, dtype=torch.float64)]
    params += [torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5 for _ in range(L - 1)]
    params.append(torch.randn(K, d, generator=gen, dtype=torch.float64) / d**0.5)
    hidden = torch.cat([H.flatten() for H in forward(params, "relu")[1:-1]])
    assert (hidden < 0).any() and (hidden > 0).any()
    result = train(
        K, n, L, d, lam, seeds=[0], lr=lr, steps=1, activation="relu",
        params=[P.unsqueeze(0) for P in params], progress=False,
    )  # fmt: skip
    after = result.run_params(0)
    auto = _autograd_grads(params, lam)
    for P, Q, g in zip(params, after, auto, strict=True):
        step = (P - Q) / lr
        assert float(torch.linalg.matrix_norm(step - g) / torch.linalg.matrix_norm(g)) < 1e-12


def test_batched_relu_runs_equal_the_same_runs_trained_one_at_a_time():
    K, n, L, d, lam = 4, 2, 3, 6, 0.01
    seeds, scales = [0, 1, 2, 3], [0.3, 0.3, 1.0, 1.0]
    kwargs = dict(steps=100, lr=0.3, activation="relu", progress=False, record_every=50)
    batched = train(K, n, L, d, lam, seeds=seeds, init_scale=scales, **kwargs)
    for i, (seed, scale) in enumerate(zip(seeds, scales, strict=True)):
        alone = train(K, n, L, d, lam, seeds=[seed], init_scale=scale, **kwargs)
        torch.testing.assert_close(batched.losses[i], alone.losses[0], rtol=1e-12, atol=0)
        for P, Q in zip(batched.run_params(i), alone.run_params(0), strict=True):
            torch.testing.assert_close(P, Q, rtol=1e-10, atol=1e-13)


def _eye(k):
    return torch.eye(k, dtype=torch.float64)


def _two_layer_point(M):
    """[H_1, W_1, W_2] with class means M (K x K) in H_1, W_1 = I and the centred W_2 = I - J/K,
    so that H_2 = H_1 and Z = (I - J/K) relu(M) kron 1_n^T: a ReLU DNC point when M is of the
    form a I + b 1 1^T."""
    K = M.shape[0]
    return [expand_classes(M, 2), _eye(K), _eye(K) - torch.ones(K, K, dtype=torch.float64) / K]


def test_relu_clipping_is_the_fraction_of_the_layer_that_relu_removes():
    K = 4
    M = torch.full((K, K), -1.0, dtype=torch.float64) + 3 * _eye(K)  # diagonal 2, off -1
    removed = math.sqrt(K * (K - 1) * 1.0) / math.sqrt(K * 4.0 + K * (K - 1))
    assert math.isclose(relu_clipping(_two_layer_point(M))[0], removed, rel_tol=1e-14)
    params = construction_params(10, 3, 4, 12, 0.8)  # ReLU does nothing on the construction
    assert max(relu_clipping(params)) < 1e-14 and len(relu_clipping(params)) == 3


def test_relu_dnc_point_reads_assumption1_only_where_relu_clips():
    K, a, lam = 3, 1.0, 0.01
    tol = dict(clip_rtol=1e-2, assumption_tol=1e-9)
    ones = torch.ones(K, K, dtype=torch.float64)
    # Positive means: ReLU clips nothing, the two ratios are equal, nothing is tested.
    calm = relu_dnc_point(_two_layer_point(a * _eye(K) + 2 * ones), lam, **tol)
    assert calm["clip"] == [0.0] and calm["clipped"] == [False]
    assert calm["assumption_clipped"] is None and calm["assumption"] and calm["shrinks"]
    # b = -0.9: ReLU keeps (a + b) I, the ratio falls from |a + bK| / (a sqrt(K-1)) to
    # 1 / sqrt(K-1): Assumption 1 fails where ReLU clips, yet t = (a + b) / a <= 1.
    b = -0.9
    point = relu_dnc_point(_two_layer_point(a * _eye(K) + b * ones), lam, **tol)
    assert point["clipped"] == [True] and point["assumption_clipped"] is False
    assert math.isclose(point["before"][0], abs(a + b * K) / (a * math.sqrt(K - 1)), rel_tol=1e-12)
    assert math.isclose(point["after"][0], 1 / math.sqrt(K - 1), rel_tol=1e-12)
    assert math.isclose(point["shrink"][0], (a + b) / a, rel_tol=1e-12) and point["shrinks"]
    assert point["residual"] < 1e-12 and point["alpha"] > 0
    assert point["loss"] >= point["linear_dnc_loss"]  # the proof's inequality at its own alpha
    # The simplex itself (b = -a/K): ratio 0 before, 1/sqrt(K-1) after: Assumption 1 holds.
    simplex = relu_dnc_point(_two_layer_point(a * _eye(K) - a / K * ones), lam, **tol)
    assert simplex["clipped"] == [True] and simplex["assumption_clipped"] is True


def test_relu_dnc_point_measures_a_class_symmetric_point_as_dnc_with_a_gradient():
    params = symmetric_params(5, 2, 3, 2, seed=1, scale=0.5)
    point = relu_dnc_point(params, LAM, clip_rtol=1e-2, assumption_tol=1e-9)
    assert point["residual"] < 1e-12 and point["dnc1"] < 1e-20
    assert len(point["clip"]) == len(point["before"]) == 2
    assert point["grad"] > 1e-3  # a random start is no critical point
    assert math.isclose(point["loss"], full_loss(params, LAM, activation="relu"), rel_tol=1e-15)


def test_relu_run_summary_recognises_the_construction_and_its_low_ranks():
    K, n, L = 10, 3, 3
    psi = construction_psi(K, n, L, 6.0)
    summary = relu_run_summary(construction_params(K, n, L, 14, psi), 1e-3, 1e-2)
    assert summary["structure"] == "pair" and summary["construction"]
    assert not summary["relu_active"] and summary["accuracy"] == 1.0 and not summary["zero"]
    # H_1, H_2 (and H_3) = phi (Xbar + Ybar): rank K/2 + 1 = 6; Z = gamma Xbar: rank 5.
    assert summary["feature_ranks"] == [6, 6, 6] and summary["z_rank"] == 5
    assert summary["low_rank"] == [True] * 4 and summary["dnc_distance"] > 0.5
    # One weight shifted: ReLU now clips H_3, the output is no longer the pair structure.
    perturbed = construction_params(K, n, L, 14, psi)
    perturbed[2][0, 1] -= 0.5
    moved = relu_run_summary(perturbed, 1e-3, 1e-2)
    assert moved["relu_active"] and not moved["construction"]


def test_relu_run_summary_of_a_dnc_point_and_of_the_zero_point():
    params = symmetric_params(6, 2, 2, 2, seed=0, scale=1.0)
    if relu_dnc_point(params, LAM, 1e-2, 0.0)["alpha"] < 0:
        params[-1] = -params[-1]  # Z = alpha S with alpha > 0
    summary = relu_run_summary(params, 1e-3, 1e-2)
    assert summary["structure"] == "dnc" and summary["dnc_distance"] < 1e-12
    assert summary["z_rank"] == 5 and not summary["low_rank"][-1]
    zero = relu_run_summary([P * 0 for P in params], 1e-3, 1e-2)
    assert zero["zero"] and zero["structure"] == "zero"


def _run(final, settled=True, accuracy=1.0, low=(True, True, True, False), zero=False):
    return {"final": final, "settled": settled, "accuracy": accuracy, "low_rank": list(low),
            "zero": zero}  # fmt: skip


def test_figure6_verdict_needs_a_settled_live_low_rank_run_below_the_bound():
    bound = 0.147
    assert figure6_verdict([_run(0.141), _run(0.16)], bound) == "reproduced"
    # A plateau run (a class not separated) below the bound does not count, nor a zero run.
    stuck = _run(0.1, accuracy=0.8)
    assert figure6_verdict([stuck, _run(0.16), _run(2.3, zero=True)], bound) == "not reproduced"
    # Below the bound but with a feature matrix of DNC's rank: the claim's low rank is missing.
    full = _run(0.141, low=(True, False, True, False))
    assert figure6_verdict([full], bound) == "not reproduced"
    # A run still moving could settle into the claim: no verdict is drawn.
    assert figure6_verdict([_run(0.16), _run(0.15, settled=False)], bound) == "not settled"
    assert figure6_verdict([_run(0.141), _run(0.15, settled=False)], bound) == "reproduced"


def _chapter_defaults():
    import jupytext

    nb = jupytext.read(Path(__file__).parents[1] / "chapters" / "08_relu.md")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    exec(cell.source, values)  # the cell holds literals only
    return {k: v for k, v in values.items() if k in CHAPTER_PARAMETERS}


@pytest.mark.parametrize("name", ["book", "ci", "paper"])
def test_every_parameter_set_of_chapter_8_passes_its_check(name):
    from dufm.book import parameter_set

    values = _chapter_defaults() | parameter_set(
        Path(__file__).parents[1] / "chapters" / "08_relu.md", name
    )
    assert set(values) == set(CHAPTER_PARAMETERS)
    check_chapter_parameters(values)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"activation": "linear"}, "activation='linear'"),
        ({"L": 1}, "L=1"),
        ({"d": 75}, "d=75"),
        ({"dnc_early_steps": 500, "dnc_steps": 500}, "dnc_early_steps=500"),
        ({"init_scales": [0.1]}, "init_scales has 1 entries"),
        ({"check_Ks": [10, 12]}, "check_Ks="),
        ({"clip_rtol": 0}, "clip_rtol=0"),
        ({"seeds": [0, -1, 2, 0, 1, 2, 0, 1]}, r"seeds\[1\]=-1"),
        ({"init": "uniform"}, "init='uniform'"),
        ({"device": "tpu"}, "device='tpu'"),
    ],
)
def test_chapter_parameter_check_names_the_bad_parameter(change, message):
    values = _chapter_defaults() | change
    with pytest.raises(ValueError, match=message):
        check_chapter_parameters(values)
    missing = {k: v for k, v in _chapter_defaults().items() if k != "settle_rtol"}
    with pytest.raises(ValueError, match="settle_rtol"):
        check_chapter_parameters(missing)


def test_dnc_point_summary_counts_clipped_failed_and_settled_points():
    K, lam, tol = 3, 0.01, dict(clip_rtol=1e-2, assumption_tol=1e-9)
    ones = torch.ones(K, K, dtype=torch.float64)
    calm = relu_dnc_point(_two_layer_point(_eye(K) + 2 * ones), lam, **tol)
    failing = relu_dnc_point(_two_layer_point(_eye(K) - 0.9 * ones), lam, **tol)
    zero = relu_dnc_point(_two_layer_point(0 * ones), lam, **tol)
    end = [calm | {"settled": True}, failing | {"settled": False}, zero | {"settled": True}]
    summary = dnc_point_summary([calm, failing, zero], end)
    assert len(summary["mid"]) == 2 and len(summary["nonzero"]) == 4  # the zero point is out
    assert summary["mid_clipped"] == [failing] and summary["mid_failed"] == [failing]
    assert summary["largest_drop"] == (failing["before"][0], failing["after"][0])
    assert summary["settled"] == [end[0]] and summary["moving"] == [end[1]]
    assert summary["settled_clipped"] == [] and len(summary["shrinking"]) == 4
    assert len(summary["assumed"]) == 2  # the failing point twice out of four
    assert dnc_point_summary([calm], [calm | {"settled": True}])["largest_drop"] is None
