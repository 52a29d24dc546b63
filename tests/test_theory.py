"""Unit tests of dufm.theory against independent computations.

The closed forms are compared with the reduced loss evaluated by SVD on built matrices, the 1-D
optimisers with dense grids of the reduced loss and with the critical-point equations (Eq. 19,
Eq. 27), the inequality of Theorem 1 with its stated region and with a direct regulariser
comparison, and the Theorem-2 quantities with brute-force scans.
"""

import math

import numpy as np
import pytest
import torch

from dufm import theory
from dufm.losses import mean_cross_entropy, reduced_loss, schatten_regulariser
from dufm.structures import (
    dnc_logits,
    expand_classes,
    mixture_components,
    pair_logits,
    pair_matrix,
    simplex_matrix,
)

BUILD = {"dnc": dnc_logits, "pair": pair_logits}
LAM = 2.0**-10

# Reference values of NOTES section 5 (K = 10, n = 5, L = 2, lam = 2^-10). The losses are given to
# 12 digits; the scales in NOTES (7.0375384888, 7.0470486565) are off in the 9th digit: the roots
# of Eq. 19 and Eq. 27 computed with 40-digit arithmetic (mpmath) are the values below.
REF_ALPHA, REF_DNC_LOSS = 7.037538494426363, 0.090662183213
REF_BETA, REF_PAIR_LOSS = 7.047048688338741, 0.080012659245
NOTES_ALPHA, NOTES_BETA = 7.0375384888, 7.0470486565


# --- closed forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("K", [2, 3, 4, 5, 9, 10])
@pytest.mark.parametrize("structure", ["dnc", "pair"])
def test_closed_form_fit_and_regulariser_equal_reduced_loss_terms(K, structure):
    for L in (1, 2, 3, 7):
        for scale in (0.0, 0.5, 3.0, 12.0):
            Z = BUILD[structure](K, 3, scale)
            fit = float(mean_cross_entropy(Z))
            reg = float(schatten_regulariser(Z, 0.01, L))
            assert theory.structure_fit(structure, K, scale) == pytest.approx(fit, rel=1e-13)
            assert theory.structure_regulariser(structure, K, 3, L, 0.01, scale) == pytest.approx(
                reg, rel=1e-12, abs=1e-15
            )
            assert theory.structure_loss(structure, K, 3, L, 0.01, scale) == pytest.approx(
                reduced_loss(Z, 0.01, L), rel=1e-12
            )


@pytest.mark.parametrize("K", [4, 7, 10])
@pytest.mark.parametrize("structure", ["dnc", "pair"])
def test_structure_singular_values_match_svd_of_built_matrix(K, structure):
    s = torch.linalg.svdvals(BUILD[structure](K, 4, 1.0)).numpy()
    expected = np.sort(theory.structure_singular_values(structure, K, 4))[::-1]
    np.testing.assert_allclose(s[: len(expected)], expected, rtol=1e-12)
    assert np.all(s[len(expected) :] < 1e-12)


def test_closed_forms_accept_arrays_of_scales():
    scales = np.array([0.0, 1.0, 5.0])
    values = theory.structure_loss("pair", 9, 5, 2, LAM, scales)
    assert values.shape == (3,)
    assert values[1] == pytest.approx(theory.structure_loss("pair", 9, 5, 2, LAM, 1.0))


# --- optimal_scale ------------------------------------------------------------------------------


def test_optimal_scale_matches_reference_values():
    alpha, loss_dnc = theory.optimal_scale("dnc", 10, 5, 2, LAM)
    beta, loss_pair = theory.optimal_scale("pair", 10, 5, 2, LAM)
    assert loss_dnc == pytest.approx(REF_DNC_LOSS, rel=1e-11)
    assert loss_pair == pytest.approx(REF_PAIR_LOSS, rel=1e-11)
    assert alpha == pytest.approx(REF_ALPHA, rel=1e-12)
    assert beta == pytest.approx(REF_BETA, rel=1e-12)
    # NOTES' printed scales agree only to about 1e-8 relative (their last digits are off).
    assert alpha == pytest.approx(NOTES_ALPHA, rel=1e-8)
    assert beta == pytest.approx(NOTES_BETA, rel=1e-8)


@pytest.mark.parametrize(
    "structure, K, L, lam",
    [
        ("dnc", 10, 2, LAM),
        ("pair", 10, 2, LAM),
        ("pair", 9, 3, 2.0**-6),
        ("dnc", 7, 1, 2.0**-5),
        ("dnc", 10, 4, 2.0**-4),  # zero wins here
        ("pair", 6, 5, 2.0**-4),
    ],
)
def test_optimal_scale_matches_dense_grid_of_reduced_loss(structure, K, L, lam):
    n = 5
    scale, loss = theory.optimal_scale(structure, K, n, L, lam)
    grid = np.linspace(0.0, 40.0, 2001)
    values = [reduced_loss(BUILD[structure](K, n, float(a)), lam, L) for a in grid]
    best = int(np.argmin(values))
    assert loss <= values[best] + 1e-12
    assert loss == pytest.approx(values[best], rel=1e-5)
    assert abs(scale - grid[best]) <= grid[1] - grid[0]
    assert reduced_loss(BUILD[structure](K, n, scale), lam, L) == pytest.approx(loss, rel=1e-12)


def test_optimal_scale_returns_zero_when_zero_matrix_is_best():
    scale, loss = theory.optimal_scale("dnc", 10, 5, 3, 0.5)
    assert scale == 0.0
    assert loss == pytest.approx(math.log(10))


def test_optimal_scale_prefers_the_large_minimum_over_the_one_at_zero():
    # L >= 2: the scale 0 is always a local minimum; for small lam the large root is better.
    scale, loss = theory.optimal_scale("dnc", 10, 5, 6, 1e-4)
    assert scale > 1.0 and loss < math.log(10)


@pytest.mark.parametrize("K, L, lam, n", [(10, 2, LAM, 5), (6, 4, 1e-3, 3), (4, 7, 1e-5, 2)])
def test_optimal_dnc_scale_solves_critical_point_equation_19(K, L, lam, n):
    alpha, _ = theory.optimal_scale("dnc", K, n, L, lam)
    rhs = alpha ** ((L - 1) / (L + 1)) / (math.exp(alpha) + K - 1)
    assert lam * n ** (1 / (L + 1)) == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize("K, L, lam, n", [(10, 2, LAM, 5), (6, 4, 1e-3, 3), (4, 7, 1e-5, 2)])
def test_optimal_pair_scale_solves_critical_point_equation_27(K, L, lam, n):
    b, _ = theory.optimal_scale("pair", K, n, L, lam)
    rhs = (
        (2 * b) ** ((L - 1) / (L + 1))
        * (K - 2 + 2 * math.exp(-b))
        / (K * (math.exp(b) + math.exp(-b) + K - 2))
    )
    assert lam * n ** (1 / (L + 1)) == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize("structure", ["dnc", "pair"])
@pytest.mark.parametrize("K, L, lam", [(10, 2, LAM), (7, 3, 1e-3), (10, 5, 2.0**-4)])
def test_optimal_matrix_scale_agrees_with_closed_form_optimiser(structure, K, L, lam):
    direction = BUILD[structure](K, 5, 1.0)
    a, loss = theory.optimal_matrix_scale(direction, L, lam)
    a_closed, loss_closed = theory.optimal_scale(structure, K, 5, L, lam)
    assert loss == pytest.approx(loss_closed, rel=1e-12)
    assert a == pytest.approx(a_closed, rel=1e-9, abs=1e-12)


def test_optimal_scale_tiny_lam_at_large_depth_finds_the_nonzero_minimum():
    # The bracket [0, a_max] is huge here; the grid must still reach down to scales of order 10.
    lam = 0.004 / 13**2
    for structure in ("dnc", "pair"):
        scale, loss = theory.optimal_scale(structure, 6, 5, 12, lam)
        assert 1.0 < scale < 100.0
        assert loss < 0.01


# --- Theorem 1 ----------------------------------------------------------------------------------


def test_theorem1_inequality_holds_exactly_on_stated_region():
    for K in range(2, 41):
        for L in range(1, 21):
            stated = (K >= 4 and L >= 3) or (K >= 6 and L == 2)
            assert theory.theorem1_holds(K, L) == stated, (K, L)
            assert theory.theorem1_stated_region(K, L) == stated


def test_theorem1_inequality_equals_direct_regulariser_comparison_at_equal_scale():
    for K in range(2, 15):
        for L in range(1, 9):
            pair = float(schatten_regulariser(pair_logits(K, 2, 1.7), 0.1, L))
            dnc = float(schatten_regulariser(dnc_logits(K, 2, 1.7), 0.1, L))
            assert theory.theorem1_holds(K, L) == (pair < dnc), (K, L)


def test_theorem1_maps_outcomes():
    maps = theory.theorem1_maps([2, 3, 4, 10], [1, 2, 3], 5, LAM)
    assert (maps["equal_scale"] == maps["stated"]).all()
    assert (maps["outcome"][0] == 2).all()  # K = 2: the two structures coincide (B = 2S)
    assert (maps["outcome"][1:, 0] == 0).all()  # L = 1: DNC is optimal
    assert maps["outcome"][3, 1] == 1 and maps["outcome"][3, 2] == 1
    zero = theory.theorem1_maps([10], [4], 5, 0.5)
    assert zero["outcome"][0, 0] == -1


# --- Definition 3 and Theorem 2 -----------------------------------------------------------------


def test_is_diagonally_superior_exact_cases():
    assert theory.is_diagonally_superior(torch.eye(4, dtype=torch.float64), 4, 1)
    assert theory.is_diagonally_superior(dnc_logits(5, 3, 1.0), 5, 3)
    assert theory.is_diagonally_superior(expand_classes(theory.circle_gram(7), 2), 7, 2)
    assert not theory.is_diagonally_superior(-torch.eye(4, dtype=torch.float64), 4, 1)
    assert not theory.is_diagonally_superior(torch.zeros(3, 3, dtype=torch.float64), 3, 1)


def test_is_diagonally_superior_is_strict_on_ties():
    M = torch.eye(3, dtype=torch.float64)
    M[1, 0] = 1.0  # column 0: true entry ties with row 1
    assert not theory.is_diagonally_superior(M, 3, 1)
    M[1, 0] = 1.0 - 1e-12
    assert theory.is_diagonally_superior(M, 3, 1)


def test_is_diagonally_superior_checks_every_sample_column():
    Z = dnc_logits(3, 2, 1.0)
    Z[2, 3] = 5.0  # second sample of class 2 (column 3) now prefers class 3
    assert not theory.is_diagonally_superior(Z, 3, 2)
    margins = theory.column_margins(Z, 3, 2)
    assert (margins > 0).tolist() == [True, True, True, False, True, True]


def test_column_margins_of_simplex_and_circle():
    assert torch.allclose(
        theory.column_margins(dnc_logits(6, 2, 1.0), 6, 2), torch.ones(12).double()
    )
    K = 9
    expected = 1 - math.cos(2 * math.pi / K)
    margins = theory.column_margins(theory.circle_gram(K), K, 1)
    assert torch.allclose(margins, torch.full((K,), expected, dtype=torch.float64))


@pytest.mark.parametrize("K", [3, 4, 10, 25, 50])
def test_circle_gram_is_rank_two_and_diagonally_superior(K):
    G = theory.circle_gram(K)
    assert int((torch.linalg.svdvals(G) > 1e-10).sum()) == 2
    assert theory.is_diagonally_superior(G, K, 1)
    assert torch.allclose(torch.diagonal(G), torch.ones(K, dtype=torch.float64))


def test_theorem2_gamma_dnc_against_circle_and_fit_comparison():
    K, n = 10, 5
    X, M = dnc_logits(K, n, 1.0), expand_classes(theory.circle_gram(K), n)
    gamma = theory.theorem2_gamma(X, M)
    assert gamma == pytest.approx(1 / (1 - math.cos(2 * math.pi / K)), rel=1e-12)
    for a in np.linspace(0.01, 30, 200):
        assert float(mean_cross_entropy(gamma * a * M)) < float(mean_cross_entropy(a * X))


def test_theorem2_L0_matches_brute_force_scan_of_regularisers():
    K, n = 10, 5
    X, M = dnc_logits(K, n, 1.0), expand_classes(theory.circle_gram(K), n)
    gamma = theory.theorem2_gamma(X, M)
    fails = [
        L
        for L in range(1, 300)
        if float(schatten_regulariser(gamma * M, 1.0, L)) >= float(schatten_regulariser(X, 1.0, L))
    ]
    assert theory.theorem2_L0(X, M, gamma) == max(fails, default=0) == 3


def test_theorem2_conclusion_holds_beyond_L0():
    K, n = 10, 5
    X, M = dnc_logits(K, n, 1.0), expand_classes(theory.circle_gram(K), n)
    L0 = theory.theorem2_L0(X, M, theory.theorem2_gamma(X, M))
    for lam in (LAM, 2.0**-4):
        for L in range(L0 + 1, L0 + 6):
            assert (
                theory.optimal_matrix_scale(M, L, lam)[1]
                <= theory.optimal_matrix_scale(X, L, lam)[1]
            )


def test_max_margin_search_finds_no_rank_one_but_a_rank_two_diagonally_superior_matrix():
    rank1 = theory.max_margin_search(5, 1, starts=32, steps=150, seed=1)
    rank2 = theory.max_margin_search(5, 2, starts=32, steps=150, seed=1)
    assert rank1.shape == (32,)
    assert float(rank1.max()) <= 0.0
    G = theory.circle_gram(5)
    circle = float(theory.column_margins(G, 5, 1).min() / torch.linalg.matrix_norm(G))
    assert float(rank2.max()) > 0.5 * circle


# --- Theorem 3 ----------------------------------------------------------------------------------


def test_schatten_prox_matches_brute_force_scalar_minimisation():
    grid = torch.linspace(0, 6, 600001, dtype=torch.float64)
    for sigma in (0.05, 0.7, 1.3, 4.0):
        for tau in (0.01, 0.3, 1.0):
            for p in (1.0, 2 / 3, 0.25):
                s = theory.schatten_prox(
                    torch.tensor([sigma], dtype=torch.float64),
                    torch.tensor([tau], dtype=torch.float64),
                    torch.tensor([p], dtype=torch.float64),
                )
                objective = 0.5 * (grid - sigma) ** 2 + tau * grid.pow(p)
                best = float(objective.min())
                got = 0.5 * (float(s) - sigma) ** 2 + tau * float(s) ** p
                assert got <= best + 1e-9, (sigma, tau, p)


def test_search_global_optimum_finds_dnc_at_depth_one():
    # L = 1 is convex in Z (nuclear norm) and its minimiser is DNC.
    res = theory.search_global_optimum(4, 3, [1], [1e-2], starts=4, steps=300, progress=False)
    expected = theory.optimal_scale("dnc", 4, 3, 1, 1e-2)[1]
    assert float(res.best_loss[0]) == pytest.approx(expected, rel=1e-8)
    assert int(res.n_best[0]) == 4
    assert reduced_loss(res.logits[0], 1e-2, 1) == pytest.approx(float(res.best_loss[0]), rel=1e-12)


def test_search_global_optimum_never_worse_than_known_structures_at_depth_two():
    K, n, L, lam = 6, 5, 2, 4e-4
    res = theory.search_global_optimum(K, n, [L], [lam], starts=12, steps=300, progress=False)
    known = min(theory.optimal_scale(s, K, n, L, lam)[1] for s in ("dnc", "pair"))
    assert float(res.best_loss[0]) <= known * (1 + 1e-6)


def test_search_global_optimum_keeps_a_structured_start_at_its_optimum_with_exact_zeros():
    # The circle Gram matrix at its optimal scale is a critical point: the search stays there,
    # and the reported singular values have exact zeros (an SVD of M would give ~1e-14, which
    # s^{2/13} inflates to ~0.01 and would spoil the loss).
    K, n, L, lam = 10, 5, 12, 0.004 / 13**2
    G = theory.circle_gram(K)
    res = theory.search_global_optimum(
        K, n, [L], [lam], starts=1, structured={"circle": G}, steps=50, progress=False
    )
    _, expected = theory.optimal_matrix_scale(expand_classes(G, n), L, lam)
    assert res.labels == ["random", "circle"]
    assert float(res.losses[0, 1]) == pytest.approx(expected, rel=1e-12)
    assert int((res.best_singular_values[0] > 0).sum()) == 2
    assert int(res.best_start[0]) == 1 and int(res.n_best_random[0]) == 0


def test_search_global_optimum_exchange_round_tries_directions_across_configurations():
    K, n = 4, 3
    res = theory.search_global_optimum(
        K, n, [1, 3], [1e-2, 1e-3], starts=2, steps=100, exchange_steps=20, progress=False
    )
    exchanged = [label for label in res.labels if label.startswith("exchange")]
    assert exchanged and res.losses.shape == (2, 2 + len(exchanged))
    assert (res.best_loss <= res.losses[:, :2].min(dim=1).values).all()


def test_optimum_rows_read_each_configuration_of_the_search():
    K, n = 4, 3
    known = {"DNC": simplex_matrix(K), "pair": pair_matrix(K)}
    res = theory.search_global_optimum(
        K, n, [1, 3], [1e-2, 1e-3], starts=2, structured=known, steps=200, progress=False
    )
    rows = theory.optimum_rows(res, known)
    assert [(row["L"], row["lam"]) for row in rows] == [(1, 1e-2), (3, 1e-3)]
    first = rows[0]  # L = 1: the optimum is DNC, rank K - 1, diagonally superior
    assert first["rank"] == K - 1 and first["superior"]
    dnc = theory.optimal_matrix_scale(expand_classes(simplex_matrix(K), n), 1, 1e-2)[1]
    assert first["known"]["DNC"] == pytest.approx(dnc, rel=1e-12)
    assert first["loss"] == pytest.approx(dnc, rel=1e-6)
    assert first["n_starts"] == len(res.labels) and first["source"] in res.labels
    assert rows[1]["bound"] == theory.zero_comparison_bound(K, 3, 1e-3)
    assert rows[1]["rank"] == int((res.best_singular_values[1] > 0).sum())


def test_search_statistics_count_missed_random_starts_and_wins_over_known_structures():
    rows = [
        {"n_random": 0, "n_best": 2, "loss": 1.0, "known": {"a": 1.0, "b": 2.0}},
        {"n_random": 3, "n_best": 5, "loss": 0.5, "known": {"a": 1.0}},
        {"n_random": 1, "n_best": 4, "loss": 1.1, "known": {"a": 1.0}},
    ]
    stats = theory.search_statistics(rows)
    assert stats["n_configs"] == 3 and stats["random_missed"] == 1
    assert stats["min_n_best"] == 2 and stats["strictly_better"] == 1
    assert stats["known_excess"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="rows"):
        theory.search_statistics([])


def test_zero_comparison_bound_is_where_one_singular_value_costs_log_K():
    K, L, lam = 10, 5, 0.3
    s = theory.zero_comparison_bound(K, L, lam)
    assert 0.5 * lam * (L + 1) * s ** (2 / (L + 1)) == pytest.approx(math.log(K), rel=1e-12)


@pytest.mark.parametrize("structure", ["dnc", "pair"])
def test_optimal_mixture_without_pairs_or_simplex_is_dnc_or_the_pair_structure(structure):
    K, n, L, lam = 10, 5, 2, 2**-10
    split = ([*range(K)], []) if structure == "dnc" else ([], [(c, c + 1) for c in range(0, K, 2)])
    a, b, loss = theory.optimal_mixture(K, n, L, lam, *split)
    scale, expected = theory.optimal_scale(structure, K, n, L, lam)
    assert loss == pytest.approx(expected, rel=1e-10)
    assert (a if structure == "dnc" else b) == pytest.approx(scale, rel=1e-6)


def test_optimal_mixture_scales_are_a_minimum_of_the_reduced_loss():
    K, n, L, lam = 10, 5, 2, 2**-10
    simplex, pairs = [0, 1, 2, 3, 4, 5, 6, 7], [(8, 9)]
    a, b, loss = theory.optimal_mixture(K, n, L, lam, simplex, pairs)
    T_S, T_P = mixture_components(K, simplex, pairs)
    for da, db in [(1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3), (1e-3, -1e-3)]:
        nearby = reduced_loss(expand_classes((a + da) * T_S + (b + db) * T_P, n), lam, L)
        assert nearby > loss


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("lam", [2**-3, 2**-6, 2**-12])
def test_critical_scales_solve_the_papers_equations_19_and_27(L, lam):
    K, n = 6, 3
    for a in theory.critical_scales("dnc", K, n, L, lam):  # Eq. 19
        rhs = a ** ((L - 1) / (L + 1)) / (math.exp(a) + K - 1)
        assert lam * n ** (1 / (L + 1)) == pytest.approx(rhs, rel=1e-9)
    for b in theory.critical_scales("pair", K, n, L, lam):  # Eq. 27, even K
        rhs = (2 * b) ** ((L - 1) / (L + 1)) * (K - 2 + 2 * math.exp(-b))
        rhs /= K * (math.exp(b) + math.exp(-b) + K - 2)
        assert lam * n ** (1 / (L + 1)) == pytest.approx(rhs, rel=1e-9)


def test_dnc_has_a_small_and_a_scale_divergent_critical_point_for_small_lam():
    K, n, L = 10, 5, 2
    large = []
    for lam in [2**-6, 2**-10, 2**-14]:
        roots = theory.critical_scales("dnc", K, n, L, lam)
        assert len(roots) == 2
        large.append(roots[1])
        assert roots[1] == pytest.approx(theory.optimal_scale("dnc", K, n, L, lam)[0], rel=1e-9)
    assert large[0] < large[1] < large[2]  # grows like -log(lam)
    assert len(theory.critical_scales("dnc", K, n, 1, 2**-10)) == 1  # L = 1: a single root
    assert len(theory.critical_scales("dnc", K, n, L, 1.0)) == 0  # lam too large: none


def test_critical_scales_find_the_small_root_below_any_fixed_grid():
    # K = 4, n = 1, L = 2, lam = 1e-6: the small root is (c p K/(K-1))^3 = 6.4e-17 to leading order
    roots = theory.critical_scales("dnc", 4, 1, 2, 1e-6)
    assert len(roots) == 2
    assert roots[0] == pytest.approx(6.4e-17, rel=1e-6)
    assert roots[1] > 10


@pytest.mark.parametrize("structure", ["dnc", "pair"])
@pytest.mark.parametrize(
    "K, n, L, lam",
    [
        (4, 1, 2, 1e-12),
        (5, 10**6, 2, 1e-12),
        (10, 5, 8, 1e-30),
        (7, 3, 3, 1e-100),
        (6, 10**4, 12, 1e-3),
    ],
)
def test_critical_scales_at_extreme_lam_and_n_are_every_root_of_the_derivative(
    structure, K, n, L, lam
):
    log_roots = theory.critical_scales(structure, K, n, L, lam, log=True)
    p = 2 / (L + 1)
    weight = float(np.sum(theory.structure_singular_values(structure, K, n) ** p))
    c = 0.5 * lam * (L + 1) * weight

    def neg_fit_slope(a):  # -d/da of the fit, written out from Eq. (dnc-fit) and (pair-fit)
        dnc = (K - 1) / (math.exp(a) + K - 1)
        if structure == "dnc":
            return dnc
        e1, e2 = math.exp(-a), math.exp(-2 * a)
        pair = (2 * e2 + (K - 2) * e1) / (1 + e2 + (K - 2) * e1)
        return pair if K % 2 == 0 else ((K - 1) * pair + dnc) / K

    def slope_sign(t):  # sign of fit'(a) + c p a^{p-1}, compared in logs (a = e^t)
        return math.log(c * p) + (p - 1) * t - math.log(neg_fit_slope(math.exp(t)))

    assert len(log_roots) == 2  # small lam at L >= 2: a small and a large critical scale
    # the small root matches its asymptotic form (c p / |fit'(0)|)^{1/(1-p)}
    top = neg_fit_slope(0.0)
    assert log_roots[0] == pytest.approx(
        math.log(c * p / top) / (1 - p), abs=1e-3 + 2 * math.exp(log_roots[0])
    )  # O(a) correction
    # an independent scan of the sign of the derivative on a log grid finds the same roots
    grid = np.linspace(log_roots[0] - 30, math.log(-math.log(c * p) + 50), 5000)
    signs = np.sign([slope_sign(t) for t in grid])
    changes = grid[np.flatnonzero(signs[:-1] != signs[1:])]
    assert len(changes) == 2
    assert np.allclose(changes, log_roots, atol=2 * (grid[1] - grid[0]))


def test_pair_structure_has_two_critical_scales_at_k6_l5_where_a_coarse_scan_saw_one():
    K, n, L, lam = 6, 5, 5, 2.0**-3
    roots = theory.critical_scales("pair", K, n, L, lam)
    assert len(roots) == 2  # a local maximum of the 1-D loss near 0.744 and a minimum near 1.852
    for b in roots:  # Eq. 27, even K
        rhs = (2 * b) ** ((L - 1) / (L + 1)) * (K - 2 + 2 * math.exp(-b))
        rhs /= K * (math.exp(b) + math.exp(-b) + K - 2)
        assert lam * n ** (1 / (L + 1)) == pytest.approx(rhs, rel=1e-9)
    mid = theory.structure_loss("pair", K, n, L, lam, roots.mean())
    assert mid < theory.structure_loss("pair", K, n, L, lam, roots[0])
    assert mid > theory.structure_loss("pair", K, n, L, lam, roots[1])


def test_critical_scales_at_one_layer_have_one_root_or_none():
    K, n = 10, 5
    assert len(theory.critical_scales("dnc", K, n, 1, 2**-10)) == 1
    # L = 1: a root iff c = lam (K-1) sqrt(n) < -fit'(0) = (K-1)/K
    lam_edge = 1 / (K * math.sqrt(n))
    assert len(theory.critical_scales("dnc", K, n, 1, 0.999 * lam_edge)) == 1
    assert len(theory.critical_scales("dnc", K, n, 1, 1.001 * lam_edge)) == 0


def test_first_depth_holding_onward_finds_where_the_tail_starts():
    assert theory.first_depth_holding_onward([1, 2, 3, 4], [False, True, False, True]) == 4
    assert theory.first_depth_holding_onward([1, 2, 3, 4], [True, True, True, True]) == 1
    assert theory.first_depth_holding_onward([1, 2, 5, 9], [False, True, True, True]) == 2
    assert theory.first_depth_holding_onward([1, 2, 3], [True, True, False]) is None
    with pytest.raises(ValueError, match="depths"):
        theory.first_depth_holding_onward([2, 1], [True, True])
    with pytest.raises(ValueError, match="holds"):
        theory.first_depth_holding_onward([1, 2], [True])


def test_theorem2_regulariser_sides_decide_the_comparison():
    K, n = 10, 5
    X, M = dnc_logits(K, n, 1.0), expand_classes(theory.circle_gram(K), n)
    gamma = theory.theorem2_gamma(X, M)
    for L in range(1, 13):
        left, right = theory.theorem2_regulariser_sides(X, M, gamma, L)
        # by hand: M has the singular values K/2 sqrt(n) (twice), X has sqrt(n) (K-1 times)
        p = 2 / (L + 1)
        assert left == pytest.approx(2 * (gamma * K / 2 * math.sqrt(n)) ** p, rel=1e-12)
        assert right == pytest.approx((K - 1) * math.sqrt(n) ** p, rel=1e-12)
        assert theory.theorem2_regulariser_holds(X, M, gamma, L) == (left < right)


def test_rank_one_matrices_have_at_most_two_diagonally_superior_columns():
    gen = torch.Generator().manual_seed(0)
    for K in (3, 5, 10):
        u = torch.randn(4000, K, 1, generator=gen, dtype=torch.float64)
        v = torch.randn(4000, K, 1, generator=gen, dtype=torch.float64)
        counts = (theory.column_margins(u @ v.transpose(1, 2), K, 1) > 0).sum(dim=-1)
        assert int(counts.max()) == 2  # the proof of q_K = 2: at most two, and two occur
        # the count tells rank 2 apart: the circle Gram matrix has K > 2 such columns
        assert int((theory.column_margins(theory.circle_gram(K), K, 1) > 0).sum()) == K


# --- argument checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: theory.theorem1_holds(1, 2), "K"),
        (lambda: theory.theorem1_holds(4, 0), "L"),
        (lambda: theory.theorem1_stated_region(4, 1.5), "L"),
        (lambda: theory.optimal_scale("simplex", 4, 2, 2, 0.1), "structure"),
        (lambda: theory.optimal_scale("dnc", 4, 0, 2, 0.1), "n"),
        (lambda: theory.optimal_scale("dnc", 4, 2, 2, 0.0), "lam"),
        (lambda: theory.optimal_scale("dnc", 4, 2, 2, -1.0), "lam"),
        (lambda: theory.structure_fit("dnc", 4, -1.0), "scale"),
        (lambda: theory.structure_loss("dnc", 4, 2, 2, 0.1, [1.0, float("nan")]), "scale"),
        (lambda: theory.structure_regulariser("pair", 4, 2, 2, 0.1, -0.5), "scale"),
        (lambda: theory.optimal_matrix_scale(torch.ones(3, 4), 2, 0.1), "M.shape"),
        (lambda: theory.theorem1_maps([4], [2], 5, LAM, tie_rtol=0.0), "tie_rtol"),
        (lambda: theory.column_margins(torch.eye(3), 3, 2), "M.shape"),
        (lambda: theory.is_diagonally_superior(torch.eye(3), 3, 0), "n"),
        (lambda: theory.circle_gram(1), "K"),
        (lambda: theory.theorem2_gamma(dnc_logits(4, 1, 1.0), -torch.eye(4).double()), "M"),
        (lambda: theory.theorem2_gamma(dnc_logits(4, 1, 1.0), torch.eye(3).double()), "M.shape"),
        (lambda: theory.theorem2_L0(dnc_logits(4, 1, 1.0), dnc_logits(4, 1, 1.0), 1.0), "M"),
        (lambda: theory.theorem2_L0(dnc_logits(4, 1, 1.0), theory.circle_gram(4), 0.0), "gamma"),
        (lambda: theory.max_margin_search(4, 0, starts=2, steps=1), "rank"),
        (lambda: theory.max_margin_search(4, 1, starts=0, steps=1), "starts"),
        (lambda: theory.max_margin_search(4, 1, starts=2, steps=1, device="tpu"), "device"),
        (lambda: theory.search_global_optimum(4, 2, [1, 2], [0.1], steps=1), "L and lam"),
        (lambda: theory.search_global_optimum(4, 2, [0], [0.1], steps=1), "L"),
        (lambda: theory.search_global_optimum(4, 2, [1], [0.1], steps=1, dtype="int8"), "dtype"),
        (lambda: theory.zero_comparison_bound(4, 2, 0.0), "lam"),
        (
            lambda: theory.search_global_optimum(
                4, 2, [1], [0.1], structured={"bad": torch.eye(3)}, steps=1
            ),
            "structured",
        ),
        (
            lambda: theory.search_global_optimum(4, 2, [1], [0.1], steps=1, exchange_steps=-1),
            "exchange_steps",
        ),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
