"""Chapter 6's measurements over a grid of critical points (Theorems 4 and 6, Lemma 2), on small
grids: the counts, brackets and probes, Lemma 2, the flatness limits and what is said of them."""

import math

import pytest

from dufm.critical_grid import (
    PROBE_SIDES,
    CriticalGrid,
    count_table_rows,
    critical_points,
    critical_structures,
    flatness_limits,
    flatness_ratio_series,
    flatness_summary,
    lemma2_over_grid,
    per_norm_sentence,
    sign_change_points,
    threshold_brackets,
    threshold_probes,
)
from dufm.theory.critical import dnc_threshold_scale


def test_critical_structures_add_the_pair_structure_for_even_K_only():
    assert critical_structures(3) == ("dnc",)
    assert critical_structures(4) == ("dnc", "pair")
    with pytest.raises(ValueError, match="K="):
        critical_structures(1)


def test_grid_rejects_bad_sizes_and_orders_its_keys():
    with pytest.raises(ValueError, match="Ks"):
        CriticalGrid([2], 2, [1], [3])
    with pytest.raises(ValueError, match="depths"):
        CriticalGrid([4], 2, [0], [3])
    with pytest.raises(ValueError, match="rtol"):
        CriticalGrid([4], 2, [1], [3], rtol=0.0)
    grid = CriticalGrid([3, 4], 2, [1, 2], [3])
    assert grid.keys() == [
        (3, 1, "dnc"), (3, 2, "dnc"), (4, 1, "dnc"), (4, 1, "pair"), (4, 2, "dnc"), (4, 2, "pair")
    ]  # fmt: skip
    assert grid.keys(min_depth=2) == [(3, 2, "dnc"), (4, 2, "dnc"), (4, 2, "pair")]


def test_critical_points_are_critical_and_count_descent_directions_by_root():
    grid = CriticalGrid([4], 2, [1, 2], [3, 6])
    records = critical_points(grid)
    # L = 1: one (large) root per lam; L = 2: a small and a large root per lam.
    assert [(r["structure"], r["L"], r["e"], r["root"]) for r in records[:4]] == [
        ("dnc", 1, 3, "large"), ("dnc", 1, 6, "large"), ("pair", 1, 3, "large"),
        ("pair", 1, 6, "large"),
    ]  # fmt: skip
    assert len(records) == 4 + 8
    assert max(r["residual"] for r in records) < 1e-8
    assert max(r["lam_gap"] for r in records) < 1e-9
    for r in records:
        if r["L"] == 1:  # single layer: DNC has no descent direction, the pair point has
            assert (r["negative"] == 0) == (r["structure"] == "dnc")
        elif r["root"] == "small":
            assert r["negative"] == (6 if r["structure"] == "dnc" else 3)
        # the orbit test only at the scale-divergent points without a negative eigenvalue
        assert ("orbit" in r) == (r["root"] == "large" and r["negative"] == 0)


def test_threshold_bracket_contains_the_dnc_threshold_and_the_table_shows_it():
    grid = CriticalGrid([4], 2, [3], [3, 4])  # DNC: a saddle at 2^-3, none at 2^-4
    records = critical_points(grid)
    brackets = threshold_brackets(grid, records, steps=8)
    assert list(brackets) == [("dnc", 4, 3)]  # the pair points have no negative eigenvalue
    lo, hi = brackets["dnc", 4, 3]
    assert lo < dnc_threshold_scale(4, 3) <= hi and hi / lo < 1.01
    rows = count_table_rows(grid, records, brackets)
    assert [row[:3] for row in rows] == [["dnc", 4, 3], ["pair", 4, 3]]
    assert rows[0][3] == "6 6" and rows[0][4] == "2 0"
    assert rows[0][6] == f"{lo:.6f} – {hi:.6f}" and rows[0][7] == "2.000000"
    assert rows[1][6] == "—"
    # without the attractive point there is nothing to bisect
    saddle_only = [r for r in records if r["e"] == 3]
    assert threshold_brackets(grid, saddle_only, steps=2) == {}


def test_probes_measure_the_predicted_counts_at_every_width():
    grid = CriticalGrid([4], 2, [1, 2], [3])
    probes, points, rows = threshold_probes(grid, [0, 1], rtol=1e-3)
    assert len(probes) == 2 * len(PROBE_SIDES)  # L = 1 has no fold and no threshold
    for (s, _, L, where), (counts, expected) in probes.items():
        assert L == 2 and len(counts) == 3
        assert counts == [expected] * 3, (s, where)
    assert probes["dnc", 4, 2, "threshold (1 - r)"][1] == 2  # K(K-3)/2 just below alpha_c
    assert [p["probe"] for p in points[:4]] == list(PROBE_SIDES)
    assert rows[0] == ["dnc", 4, 2, "1.33333", "6 (6)", "5 (5)", "2 (2)", "0 (0)"]
    with pytest.raises(ValueError, match="rtol"):
        threshold_probes(grid, [0], rtol=-1.0)


def test_lemma2_holds_over_a_small_grid():
    grid = CriticalGrid([3], 2, [1, 2], [3, 6])
    errors, columns, points, alphas = lemma2_over_grid(grid, trials=1)
    assert set(errors) == {"split", "lemma", "psd", "hessian"}
    assert max(errors["split"], errors["lemma"], errors["hessian"]) < 1e-8
    assert errors["psd"] > -1e-12
    assert len(alphas) == 2 + 4  # L = 1: two large roots; L = 2: two small and two large
    assert columns == 3 * len(set(alphas))
    assert sorted((K, L) for K, L, _ in points) == [(3, 1), (3, 1), (3, 2), (3, 2)]
    with pytest.raises(ValueError, match="trials"):
        lemma2_over_grid(grid, trials=0)


def test_flatness_limits_predict_the_ratio_beyond_the_grid():
    grid = CriticalGrid([4], 2, [2], [4, 6, 8, 10, 12])
    records = critical_points(grid)
    flat, rows, exponents = flatness_limits(grid, records, fit_points=5, probe_e=16)
    assert list(flat) == [(4, 2, "frobenius"), (4, 2, "spectral"), (4, 2, "trace")]
    assert exponents == [4, 6, 8, 10, 12] and len(rows) == 3
    for f in flat.values():
        assert f["predicted"] == pytest.approx(f["measured"], rel=1e-2)
        assert f["scaled_predicted"] == pytest.approx(f["scaled_measured"], rel=1e-2)
        assert f["drop"] > 1 and f["lam_drop"] == pytest.approx(4.0)
    assert rows[0][3].split()[-1] == f"{flat[4, 2, 'frobenius']['last']:.4f}"
    with pytest.raises(ValueError, match="fit_points"):
        flatness_limits(grid, records, fit_points=1)


def fake_limit(K, L, norm, limit, one, miss=0.0, drop=2.0):
    return {
        "K": K, "L": L, "norm": norm, "limit": limit, "one": one, "spread": 0.01,
        "predicted": 1.0 + miss, "measured": 1.0, "scaled_predicted": 2.0,
        "scaled_measured": 2.0, "predicted_one": 1.5 if not one else 1.001, "last": 1.1,
        "drop": drop, "lam_drop": 4.0,
    }  # fmt: skip


def test_flatness_summary_counts_limits_and_picks_the_first_case():
    flat = {
        (6, 1, "frobenius"): fake_limit(6, 1, "frobenius", 0.9, False, miss=0.002),
        (4, 3, "frobenius"): fake_limit(4, 3, "frobenius", 1.001, True, drop=3.0),
        (4, 2, "spectral"): fake_limit(4, 2, "spectral", 1.2, False),
    }
    summary = flatness_summary(flat, 20)
    assert (summary["cases"], summary["away"], summary["below"], summary["above"]) == (3, 2, 1, 2)
    assert (summary["min"], summary["max"]) == (0.9, 1.2)
    assert summary["pred"] == pytest.approx(0.002)
    assert summary["moved"] == pytest.approx(0.1)
    assert summary["first"] == "K = 4, L = 3" and summary["drop"] == 3.0
    assert summary["one-pred"] == pytest.approx(0.001) and summary["one-miss"] == 0.5
    assert summary["probe"] == "2^-20"
    only_one = flatness_summary({(4, 3, "frobenius"): flat[4, 3, "frobenius"]}, 20)
    assert math.isnan(only_one["one-miss"])
    with pytest.raises(ValueError, match="flat"):
        flatness_summary({}, 20)


def test_per_norm_sentence_counts_limits_consistent_with_one_by_depth():
    flat = {
        (4, 1, "frobenius"): fake_limit(4, 1, "frobenius", 1.2, False),
        (4, 2, "frobenius"): fake_limit(4, 2, "frobenius", 0.95, False),
        (4, 3, "frobenius"): fake_limit(4, 3, "frobenius", 1.01, True),
        (4, 2, "spectral"): fake_limit(4, 2, "spectral", 1.0, True),
        (4, 1, "trace"): fake_limit(4, 1, "trace", 0.5, False),
    }
    assert per_norm_sentence(flat) == (
        "Frobenius norm: 1 of the 2 at L ≥ 2 (0.950 to 1.010) and 0 of the 1 at L = 1 "
        "(1.200 to 1.200); spectral norm: 1 of the 1 at L ≥ 2 (1.000 to 1.000); trace norm: "
        "0 of the 1 at L = 1 (0.500 to 0.500)"
    )


def test_sign_change_points_take_the_large_branch_and_the_probes_above_the_fold():
    records = [
        {"structure": "dnc", "K": 4, "L": 2, "root": "large", "scale": 2.0, "min_rel": 0.1,
         "normal_rel": 0.01},
        {"structure": "dnc", "K": 4, "L": 2, "root": "small", "scale": 0.1, "min_rel": -0.5},
        {"structure": "dnc", "K": 4, "L": 1, "root": "large", "scale": 2.0, "min_rel": 0.2},
    ]  # fmt: skip
    probes = [
        {"structure": "dnc", "K": 4, "L": 3, "probe": "fold (1 - r)", "scale": 1.0,
         "min_rel": -0.3},
        {"structure": "dnc", "K": 4, "L": 3, "probe": "threshold (1 - r)", "scale": 1.0,
         "min_rel": -0.2},
    ]  # fmt: skip
    points = sign_change_points(records, probes)
    assert points == [("dnc", 4, 2, 1.5, 0.01), ("dnc", 4, 3, 0.5, -0.2)]


def test_flatness_ratio_series_pairs_the_two_branches_by_weight_decay():
    records = [
        {"structure": s, "K": 4, "L": 2, "root": "large", "e": e, "frobenius": v}
        for s, e, v in [("dnc", 3, 2.0), ("dnc", 4, 1.0), ("pair", 4, 4.0), ("pair", 5, 1.0)]
    ]
    flat = {(4, 2, "frobenius"): {"measured": 0.3, "limit": 0.2}}
    curves = flatness_ratio_series(records, flat, "frobenius")
    assert curves == [
        {"K": 4, "L": 2, "lams": [2.0**-4], "ratios": [0.25], "measured": 0.3, "limit": 0.2}
    ]
    assert flatness_ratio_series(records, flat, "spectral") == []
    with pytest.raises(ValueError, match="norm"):
        flatness_ratio_series(records, flat, "nuclear")
