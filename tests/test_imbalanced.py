"""Imbalanced classes (Appendix A, Theorems A1-A3): sizes, the SEL matrix, the single-layer
minimiser, the class-size options of the optimum search and of the trainer."""

import math
from pathlib import Path

import pytest
import torch

from dufm import theory
from dufm.losses import class_labels, full_loss, reduced_loss_imbalanced
from dufm.run import ChapterError, execute_chapter, parameter_set
from dufm.structures import expand_classes, simplex_matrix
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
