"""Imbalanced classes (Appendix A, Theorems A1-A3): sizes, the SEL matrix, the single-layer
minimiser, the class-size options of the optimum search and of the trainer."""

import math
from pathlib import Path

import pytest
import torch

from dufm import theory
from dufm.losses import class_labels, full_loss, mean_cross_entropy, reduced_loss_imbalanced
from dufm.run import ChapterError, execute_chapter, parameter_set
from dufm.structures import expand_classes, pair_matrix, simplex_matrix
from dufm.trainer import init_params, make_runs, train

SIZES = [6, 6, 2, 2]


def test_step_class_sizes_put_the_majority_first():
    assert theory.step_class_sizes(10, 4, 0.5, 2) == [8] * 5 + [2] * 5
    assert theory.step_class_sizes(5, 2.5, 0.4, 2) == [5, 5, 5, 2, 2]


@pytest.mark.parametrize(
    "args, name",
    [
        ((1, 2, 0.5, 1), "K"),
        ((4, 0.5, 0.5, 1), "R"),
        ((4, 1.5, 0.5, 1), "R"),  # R * n_min not whole
        ((4, 2, 0.0, 1), "rho"),
        ((4, 2, 1.0, 1), "rho"),
        ((4, 2, 0.3, 1), "rho"),  # rho * K not whole
        ((4, 2, 0.5, 0), "n_min"),
    ],
)
def test_step_class_sizes_reject_bad_arguments_naming_them(args, name):
    with pytest.raises(ValueError, match=name):
        theory.step_class_sizes(*args)


def test_sel_matrix_repeats_the_simplex_columns_and_has_rank_K_minus_1():
    T = theory.sel_matrix(SIZES)
    assert T.shape == (4, 16)
    assert torch.equal(T[:, 13], simplex_matrix(4)[:, 2])
    assert int((torch.linalg.svdvals(T) > 1e-10).sum()) == 3


def test_search_with_equal_class_sizes_gives_the_search_with_n():
    kwargs = dict(starts=3, steps=60, progress=False, structured={"DNC": simplex_matrix(4)})
    a = theory.search_global_optimum(4, 3, [1, 3], [1e-2, 1e-3], **kwargs)
    b = theory.search_global_optimum(4, None, [1, 3], [1e-2, 1e-3], class_sizes=[3] * 4, **kwargs)
    assert torch.allclose(a.losses, b.losses, rtol=1e-12)
    assert torch.allclose(a.best_means, b.best_means, rtol=1e-10, atol=1e-12)


def test_sized_search_reports_the_reduced_loss_of_its_own_logits():
    res = theory.search_global_optimum(
        4,
        None,
        [1, 2, 4],
        [1e-2, 1e-3, 1e-3],
        starts=4,
        steps=200,
        class_sizes=SIZES,
        progress=False,
    )
    for c, (L, lam) in enumerate(zip(res.L, res.lam, strict=True)):
        Z = res.logits[c]
        assert Z.shape == (4, sum(SIZES))
        assert reduced_loss_imbalanced(Z, SIZES, lam, L) == pytest.approx(
            float(res.best_loss[c]), rel=1e-10
        )
        s = torch.linalg.svdvals(Z)
        assert torch.allclose(
            s[s > 1e-9 * s.max()],
            res.best_singular_values[c][: len(s[s > 1e-9 * s.max()])],
            rtol=1e-9,
        )


def test_sized_search_rejects_n_with_class_sizes():
    with pytest.raises(ValueError, match="n=3"):
        theory.search_global_optimum(4, 3, [1], [1e-2], class_sizes=SIZES, progress=False)


def test_rank_limited_search_stays_at_or_below_the_rank():
    res = theory.best_low_rank(
        SIZES, [1, 3], [1e-2, 1e-3], rank=2, starts=3, steps=100, progress=False
    )
    assert int((res.best_singular_values > 0).sum(dim=1).max()) <= 2
    for c in range(2):
        s = torch.linalg.svdvals(res.logits[c])
        assert float(s[2]) <= 1e-10 * float(s[0])
    # the rank-2 optimum at L = 1 is worse than the unconstrained one (rank 3 = K - 1 there)
    full = theory.ufm_minimiser(SIZES, [1e-2], steps=300, progress=False)
    assert float(res.best_loss[0]) > float(full.best_loss[0])


def test_optimal_matrix_scale_with_class_sizes_is_the_minimum_on_a_grid():
    Z = theory.sel_matrix(SIZES)
    L, lam = 3, 1e-3
    scale, loss = theory.optimal_matrix_scale(Z, L, lam, class_sizes=SIZES)
    grid = torch.linspace(0.01, 3 * scale, 3001, dtype=torch.float64)
    values = [reduced_loss_imbalanced(a * Z, SIZES, lam, L) for a in grid]
    assert loss == pytest.approx(reduced_loss_imbalanced(scale * Z, SIZES, lam, L), rel=1e-12)
    assert loss <= min(values) + 1e-12


def test_ufm_minimiser_is_certified_optimal_and_approaches_sel_as_lam_falls():
    lams = [1e-1, 1e-2, 1e-3]
    res = theory.ufm_minimiser(SIZES, lams, steps=300, progress=False)
    T = theory.sel_matrix(SIZES)
    distances = []
    for c, lam in enumerate(lams):
        Z = res.logits[c]
        residual, spectral = theory.ufm_optimality_residual(Z, SIZES, lam)
        assert residual < 1e-6 and spectral <= 1 + 1e-6, (lam, residual, spectral)
        distances.append(theory.normalised_distance(Z, T))
    assert distances[0] > distances[1] > distances[2]


def test_ufm_minimiser_with_equal_sizes_is_dnc():
    res = theory.ufm_minimiser([3] * 4, [1e-2], steps=300, progress=False)
    assert theory.normalised_distance(res.logits[0], expand_classes(simplex_matrix(4), 3)) < 1e-6


def test_optimality_residual_detects_a_matrix_that_is_not_the_minimiser():
    lam = 1e-2
    res = theory.ufm_minimiser(SIZES, [lam], steps=300, progress=False)
    residual, _ = theory.ufm_optimality_residual(1.3 * res.logits[0], SIZES, lam)
    assert residual > 1e-2


def test_generalised_dnc_losses_are_the_reduced_loss_at_the_returned_scales():
    means = simplex_matrix(4)
    scales, losses = theory.generalised_dnc_losses(means, SIZES, [1, 2, 5], 1e-3)
    Z = theory.sel_matrix(SIZES)
    Z = Z / torch.linalg.matrix_norm(Z)
    for L, a, loss in zip([1, 2, 5], scales, losses, strict=True):
        assert reduced_loss_imbalanced(a * Z, SIZES, 1e-3, L) == pytest.approx(loss, rel=1e-12)


def test_wins_from_needs_every_later_depth():
    assert theory.wins_from([1, 2, 3, 4], [2, 1, 0.5, 0.5], [1, 1.5, 1, 1]) == 2
    assert theory.wins_from([1, 2, 3, 4], [0.5, 2, 0.5, 0.5], [1, 1.5, 1, 1]) == 3
    assert theory.wins_from([1, 2, 3], [2, 2, 2], [1, 1, 1]) is None
    assert theory.wins_from([1, 2, 3], [1, 2, 0], [1, 1, 1]) == 3  # ties do not count


# --- the trainer with class sizes ----------------------------------------------------------------


def test_train_with_equal_class_sizes_is_identical_to_train_with_n():
    kwargs = dict(steps=200, lr=0.2, record_every=50, progress=False)
    a = train(4, 3, 2, [5, 6], [0.05, 0.01], seeds=[1, 2], **kwargs)
    b = train(4, None, 2, [5, 6], [0.05, 0.01], seeds=[1, 2], class_sizes=[3] * 4, **kwargs)
    assert torch.equal(a.losses, b.losses)
    for P, Q in zip(a.params, b.params, strict=True):
        assert torch.equal(P, Q)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_imbalanced_training_step_is_gradient_descent_on_the_full_loss(L):
    # One step of the engine against autograd of the full loss with class sizes.
    lr, lam = 0.3, 0.02
    runs = make_runs([0, 1], d=[5, 6], init_scale=1.0, lam=lam, lr=lr)
    start = init_params(4, None, L, runs, class_sizes=SIZES)
    result = train(
        4,
        None,
        L,
        [5, 6],
        lam,
        seeds=[0, 1],
        lr=lr,
        steps=1,
        record_every=1,
        params=start,
        class_sizes=SIZES,
        progress=False,
    )
    for i in range(2):
        d = runs[i].d
        own = [start[0][i, :d]] + [W[i, :d, :d] for W in start[1:-1]] + [start[-1][i, :, :d]]
        own = [P.clone().requires_grad_(True) for P in own]
        Z = own[0]
        for W in own[1:]:
            Z = W @ Z
        labels = class_labels(4, SIZES)
        loss = torch.nn.functional.cross_entropy(Z.T, labels) + 0.5 * lam * sum(
            P.pow(2).sum() for P in own
        )
        grads = torch.autograd.grad(loss, own)
        stepped = [P.detach() - lr * g for P, g in zip(own, grads, strict=True)]
        got = result.run_params(i)
        for P, Q in zip(got, stepped, strict=True):
            assert torch.allclose(P, Q, atol=1e-13)
        # the recorded losses are the full loss with class sizes
        assert float(result.losses[i, 0]) == pytest.approx(
            full_loss([P.detach() for P in own], lam, class_sizes=SIZES), rel=1e-12
        )
        assert float(result.losses[i, 1]) == pytest.approx(
            full_loss(got, lam, class_sizes=SIZES), rel=1e-12
        )


def test_train_rejects_n_together_with_class_sizes_and_bad_sizes():
    with pytest.raises(ValueError, match="n=3"):
        train(4, 3, 2, 5, 0.1, seeds=[0], steps=1, class_sizes=SIZES, progress=False)
    with pytest.raises(ValueError, match="class_sizes"):
        train(4, None, 2, 5, 0.1, seeds=[0], steps=1, class_sizes=[6, 6, 2], progress=False)


def test_class_means_with_class_sizes_average_each_block():
    from dufm.metrics import class_means

    M = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, 2.0, -1.0]], dtype=torch.float64)
    H = expand_classes(M, SIZES) + 0.0
    H[:, 0] += 1.0
    H[:, 1] -= 1.0  # class 0's columns still average to its mean
    assert torch.allclose(class_means(H, 4, SIZES), M, atol=1e-15)


# --- the chapter stops on a bad parameter before computing ---------------------------------------

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "10_imbalanced.md"


@pytest.mark.chapters
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("imbalances", [[4, 1.5]], "rho=1.5 is not allowed"),
        ("imbalances", [[0.5, 0.5]], "R=0.5 is not allowed"),
        ("n_min", 0, "n_min=0 is not allowed"),
        ("K", 1, "K=1 is not allowed"),
        ("gd_lam", 0.0, "gd_lam=0.0 is not allowed"),
        ("gd_L", 0, "gd_L=0 is not allowed"),
        (
            "imbalances",
            [[100, 0.5]],
            r"sel_lam_exponents\[0\]=6 is not allowed with imbalances\[0\]=\[100, 0.5\]: at "
            r"lam = 2\^-6 the single-layer minimiser is zero \(from lam = 2\^-6.16 on\)",
        ),
    ],
)
def test_chapter_10_stops_on_a_bad_parameter_naming_it(name, value, message, tmp_path):
    with pytest.raises(ChapterError, match=message):
        execute_chapter(CHAPTER, {**parameter_set(CHAPTER, "ci"), name: value}, tmp_path)
    assert not (tmp_path / "10_imbalanced.ipynb").exists()


def test_the_single_layer_minimiser_is_zero_from_ufm_zero_lam_on_and_not_below():
    assert theory.ufm_zero_lam([3] * 4) == pytest.approx(1 / (4 * math.sqrt(3)), rel=1e-12)
    sizes = theory.step_class_sizes(10, 100, 0.5, 2)
    lam0 = theory.ufm_zero_lam(sizes)
    res = theory.ufm_minimiser(sizes, [1.02 * lam0, 0.95 * lam0], progress=False)
    assert float(torch.linalg.matrix_norm(res.logits[0])) == 0.0
    assert float(torch.linalg.matrix_norm(res.logits[1])) > 1.0
    residual, spectral = theory.ufm_optimality_residual(res.logits[0], sizes, 1.02 * lam0)
    assert residual == 0.0 and spectral <= 1.0  # zero is certified optimal above lam0


# --- the chapter's parameter checks, Theorem A1's fit step, Theorem A3's measurements ----------


def test_imbalance_sizes_gives_one_size_list_per_pair_and_names_a_bad_pair():
    assert theory.imbalance_sizes(4, [[3, 0.5], [2, 0.25]], 1) == [[3, 3, 1, 1], [2, 2, 2, 1]]
    with pytest.raises(ValueError, match=r"imbalances\[1\]: rho=1.5 is not allowed"):
        theory.imbalance_sizes(4, [[3, 0.5], [4, 1.5]], 1)
    with pytest.raises(ValueError, match=r"imbalances\[0\]=\[3\] is not allowed"):
        theory.imbalance_sizes(4, [[3]], 1)
    with pytest.raises(ValueError, match=r"imbalances=\[\] is not allowed"):
        theory.imbalance_sizes(4, [], 1)


def test_check_step_Ks_names_the_number_of_classes_that_does_not_fit():
    assert theory.check_step_Ks("a2_Ks", [4, 6], 2, 0.5, 1) == [[2, 2, 1, 1], [2] * 3 + [1] * 3]
    with pytest.raises(ValueError, match=r"a2_Ks\[1\]=5: rho=0.5 is not allowed"):
        theory.check_step_Ks("a2_Ks", [4, 5], 2, 0.5, 1)
    with pytest.raises(ValueError, match=r"a2_Ks\[0\]=2 is not allowed"):
        theory.check_step_Ks("a2_Ks", [2], 2, 0.5, 1)


def test_weight_decays_at_or_above_ufm_zero_lam_are_rejected_naming_them():
    sizes = theory.step_class_sizes(10, 100, 0.5, 2)  # Z*_lam = 0 from 2^-6.16 on
    assert theory.check_exponents_below_zero("e", [7, 9], [[100, 0.5]], [sizes]) == [7, 9]
    with pytest.raises(ValueError, match=r"e\[1\]=6 is not allowed with imbalances\[0\]="):
        theory.check_exponents_below_zero("e", [7, 6], [[100, 0.5]], [sizes])
    with pytest.raises(ValueError, match="at least two"):
        theory.check_exponents_below_zero("e", [7], [[100, 0.5]], [sizes])
    assert theory.check_lam_below_zero("gd_lam", 2.0**-7, sizes) == 2.0**-7
    with pytest.raises(ValueError, match="gd_lam=0.015625 is not allowed: the single-layer"):
        theory.check_lam_below_zero("gd_lam", 2.0**-6, sizes)


def test_fit_domination_measures_the_largest_difference_and_ratio_over_the_scales():
    sizes = theory.step_class_sizes(10, 4, 0.5, 2)
    X = theory.sel_matrix(sizes)
    M = expand_classes(theory.circle_gram(10), sizes)
    gamma = theory.theorem2_gamma(simplex_matrix(10), theory.circle_gram(10))
    scales = [0.01, 1.0, 15.0]
    fit = theory.fit_domination(X, M, gamma, scales, sizes)
    fits = [
        (float(mean_cross_entropy(gamma * a * M, sizes)), float(mean_cross_entropy(a * X, sizes)))
        for a in scales
    ]
    gaps, ratios = [m - x for m, x in fits], [m / x - 1 for m, x in fits]
    assert fit["difference"] == pytest.approx(max(gaps), rel=1e-12)
    assert fit["relative"] == pytest.approx(max(ratios), rel=1e-12)
    assert fit["relative_at"] == 0.01 and fit["difference_at"] == 15.0
    assert fit["relative"] < 0
    # a gamma below the proof's does not dominate at every scale
    assert theory.fit_domination(X, M, 0.5, scales, sizes)["relative"] > 0
    with pytest.raises(ValueError, match="scales"):
        theory.fit_domination(X, M, gamma, [0.0, 1.0], sizes)


def test_single_layer_minimisers_are_certified_and_flag_a_minimiser_outside_the_hypothesis():
    rows = theory.single_layer_minimisers(SIZES, [3, 4, 10], starts=1, steps=200)
    T = theory.sel_matrix(SIZES)
    assert [row["e"] for row in rows] == [3, 4, 10]
    for row in rows:
        assert row["residual"] < 1e-5 and row["spectral"] <= 1 + 1e-5
        assert row["distance"] == pytest.approx(theory.normalised_distance(row["Z"], T))
        assert row["minority"] == 2
    # at lam = 2^-3 Z*_lam has rank 1 and leaves both minority classes unfitted
    assert (rows[0]["rank"], rows[0]["minority_fitted"], rows[0]["in_hypothesis"]) == (1, 0, False)
    assert all(row["in_hypothesis"] and row["rank"] == 3 for row in rows[1:])
    assert rows[0]["distance"] > rows[1]["distance"] > rows[2]["distance"]
    with pytest.raises(ValueError, match="exponents=\\[2\\] is not allowed"):
        theory.single_layer_minimisers(SIZES, [2])


def test_approach_rate_recovers_the_exponent_of_a_power_of_log():
    lams = [2.0**-e for e in (6, 10, 14, 20)]
    one = theory.approach_rate(lams, [0.7 / math.log(1 / lam) for lam in lams])
    assert one["exponent"] == pytest.approx(1.0, abs=1e-12)
    assert one["products"] == pytest.approx([0.7] * 4, rel=1e-12)
    two = theory.approach_rate(lams, [3.0 / math.log(1 / lam) ** 2 for lam in lams])
    assert two["exponent"] == pytest.approx(2.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least two"):
        theory.approach_rate(lams[:1], [0.1])


def test_grid_thresholds_pair_each_grid_lam0_with_the_worst_depth_below_it():
    assert theory.grid_thresholds([6, 8, 10], [3, 2, 2]) == [(6, 2), (8, 1), (10, 1)]
    assert theory.grid_thresholds([10, 6, 8], [2, None, 4]) == [(8, 3), (10, 1)]
    assert theory.grid_thresholds([6, 8], [2, None]) == []


def test_generalised_dnc_comparison_keeps_the_best_of_both_searches():
    depths = [1, 2, 4, 8]
    single = theory.single_layer_minimisers(SIZES, [6, 10], starts=1, steps=200)
    extra = {"pair": pair_matrix(4)}
    rows = theory.generalised_dnc_comparison(
        SIZES, single, [10, 6], depths, starts=1, steps=80, structured=extra
    )
    assert [row["e"] for row in rows] == [10, 6]
    for row in rows:
        assert all(b <= lo for b, lo in zip(row["best"], row["low"], strict=True))
        assert max(row["low_ranks"]) <= 2
        # at L = 1 nothing beats the certified single-layer minimiser
        assert row["gdnc"][0] <= row["best"][0] * (1 + 1e-9)
        assert row["beaten_from"] == theory.wins_from(depths, row["best"], row["gdnc"])
        assert row["low_from"] == theory.wins_from(depths, row["low"], row["gdnc"])
        if row["low_from"] is not None:  # from the crossover on the rank-2 value is kept
            j = depths.index(row["low_from"])
            assert row["best"][j:] == row["low"][j:]
        assert row["in_hypothesis"] and row["rank"] == 3
    with pytest.raises(ValueError, match="have no row"):
        theory.generalised_dnc_comparison(SIZES, single, [8], depths, starts=1, steps=1)


def test_theorem_a2_rows_report_every_depth_of_every_regime():
    regimes = {"ii": [1e-3, 1e-4], "i": [1e-2, 1.0]}
    out = theory.theorem_a2_rows(SIZES, [1, 6], regimes, starts=1, steps=80)
    assert set(out) == {"ii", "i"}
    for name, rows in out.items():
        assert [row["L"] for row in rows] == [1, 6]
        assert [row["lam"] for row in rows] == regimes[name]
        for row in rows:
            assert row["loss"] <= row["known"] * (1 + 1e-9)
            assert float(row["sv"].max()) <= row["bound"]
            assert row["rank"] == int((row["sv"] > 0).sum())
    assert out["i"][1]["rank"] == 0  # lam = 1 at L = 6: the optimum is zero
    with pytest.raises(ValueError, match="one lam per depth"):
        theory.theorem_a2_rows(SIZES, [1, 6], {"ii": [1e-3]}, starts=1, steps=1)


def test_imbalanced_run_outcomes_measure_each_run_against_the_reference():
    from dufm import metrics, outcomes

    result = train(
        4, None, 2, 6, 1e-2, seeds=[0, 1], lr=0.3, steps=400, record_every=50,
        class_sizes=SIZES, progress=False,
    )  # fmt: skip
    Z_ref = theory.ufm_minimiser(SIZES, [1e-2], steps=200, progress=False).logits[0]
    rows = outcomes.imbalanced_run_outcomes(result, Z_ref, 0.5, 0.4, window=100)
    for i, row in enumerate(rows):
        final = float(result.losses[i, -1])
        assert row["loss"] == final and row["seed"] == i
        assert row["vs_reference"] == pytest.approx(final / 0.5 - 1)
        assert row["vs_best"] == pytest.approx(final / 0.4 - 1)
        assert row["rank"] == metrics.numerical_rank(result.logits[i])
        assert row["distance"] == pytest.approx(theory.normalised_distance(result.logits[i], Z_ref))
        back = result.record_steps.index(300)
        assert row["change"] == pytest.approx(abs(float(result.losses[i, back]) - final) / final)
    balanced = train(4, 3, 2, 6, 1e-2, seeds=[0], steps=2, progress=False)
    with pytest.raises(ValueError, match="without class_sizes"):
        outcomes.imbalanced_run_outcomes(balanced, Z_ref, 0.5, 0.4, window=1)


def _chapter_defaults():
    import jupytext

    cell = next(
        c for c in jupytext.read(CHAPTER).cells if "parameters" in c.metadata.get("tags", [])
    )
    values: dict = {}
    exec(cell.source, values)
    return values


def test_chapter_parameters_are_checked_by_name_and_give_the_sizes():
    p = _chapter_defaults()
    derived = theory.check_chapter_parameters(p)
    assert derived["sizes"] == [8] * 5 + [2] * 5 and derived["N"] == 50
    assert derived["names"] == ["(4, 0.5)", "(10, 0.2)", "(2, 0.8)"]
    assert derived["a2_sizes"][6] == [8, 8, 8, 2, 2, 2]
    bad = [
        ("main_imbalance", 3, r"main_imbalance=3 is not allowed: must index imbalances"),
        ("low_rank", 9, "low_rank=9 is not allowed"),
        ("lam_ii_power", -0.5, "lam_ii_power=-0.5, lam_i_power=2.0 are not allowed"),
        ("gd_seeds", [0], r"gd_seeds=\[0\] is not allowed"),
        ("a2_Ks", [7], r"a2_Ks\[0\]=7: rho=0.5 is not allowed"),
        ("gd_lam", 0.1, "gd_lam=0.1 is not allowed: the single-layer minimiser is zero"),
        ("a3_lam_exponents", [4, 8], r"a3_lam_exponents\[0\]=4 is not allowed"),
        ("fit_rtol", 0.0, "fit_rtol=0.0 is not allowed"),
        ("dtype", "float16", "dtype='float16' is not allowed"),
    ]
    for name, value, message in bad:
        with pytest.raises(ValueError, match=message):
            theory.check_chapter_parameters({**p, name: value})


def test_generalised_dnc_at_gives_the_reference_and_a_search_no_worse_than_it():
    ref = theory.generalised_dnc_at(SIZES, 2, 1e-2, ufm_steps=200, starts=2, steps=100)
    _, (loss,) = theory.generalised_dnc_losses(ref["means"], SIZES, [2], 1e-2)
    assert ref["loss"] == pytest.approx(loss, rel=1e-12)
    assert ref["Z"].shape == (4, sum(SIZES))
    assert ref["best_loss"] <= ref["loss"] * (1 + 1e-9)
    assert 1 <= ref["best_rank"] <= 4 and isinstance(ref["best_source"], str)
