"""Unit tests of dufm.report."""

import numpy as np
import pytest

from dufm import report
from dufm.report import describe_cells, html_table


def test_describe_cells_lists_true_cells_by_depth():
    mask = np.array([[False, True], [True, True], [False, False]])
    assert describe_cells(mask, [4, 5, 6], [1, 2]) == "K = 5 at L = 1; K = 4, 5 at L = 2"
    assert describe_cells(np.zeros((3, 2)), [4, 5, 6], [1, 2]) == "none"


def test_describe_cells_rejects_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match="mask.shape"):
        describe_cells(np.zeros((2, 2)), [4], [1, 2])


def test_html_table_right_aligns_numbers_and_escapes_text():
    html = html_table(["a", "b"], [["<x>", 1.5]], caption="c").data
    assert "&lt;x&gt;" in html and 'style="text-align: right">1.5' in html and "<caption>c" in html


# --- chapter 10's sentences and table ------------------------------------------------------------


def _a3_row(e, beaten, low, inside=True, rank=9):
    return {
        "e": e, "rank": rank, "in_hypothesis": inside, "minority_fitted": 2 if inside else 0,
        "minority": 2, "beaten_from": beaten, "low_from": low, "proof_L0": 3,
        "best": [0.1, 0.08, 0.07], "gdnc": [0.1, 0.09, 0.09], "low": [0.3, 0.1, 0.05],
        "best_ranks": [9, 5, 2],
    }  # fmt: skip


def test_structure_groups_counts_runs_by_structure_in_order_of_appearance():
    rows = [
        {"structure": "other", "rank": 3, "init_scale": 0.01, "seed": 0},
        {"structure": "dnc", "rank": 9, "init_scale": 0.3, "seed": 0},
        {"structure": "other", "rank": 3, "init_scale": 0.01, "seed": 4},
        {"structure": "dnc", "rank": 9, "init_scale": 1.0, "seed": 4},
        {"structure": "mixture", "rank": 8, "init_scale": 1.0, "seed": 0},
    ]
    assert report.structure_groups(rows) == (
        "another structure of rank 3 in 2 runs (init 0.01: seeds 0, 4); DNC in 2 (init 0.3: "
        "seed 0; init 1: seed 4); a mixture of rank 8 in 1 (init 1: seed 0)"
    )
    assert report.structure_groups([]) == "no runs"


def test_sel_rate_text_compares_the_fitted_exponent_with_one():
    rates = [{"products": [0.6, 0.7], "exponent": 0.95}, {"products": [0.3], "exponent": 1.05}]
    text = report.sel_rate_text(["(4, 0.5)", "(2, 0.8)"], rates, 0.1)
    assert "0.600 to 0.700 for (4, 0.5)" in text and "s = 0.95, 1.05" in text
    assert text.endswith("as 1/log(1/λ) (s within 0.1 of 1)")
    slow = [{"products": [0.6, 0.7], "exponent": 0.7}]
    assert "more slowly than 1/log(1/λ)" in report.sel_rate_text(["a"], slow, 0.1)
    mixed = rates + slow
    assert "differ between the imbalances" in report.sel_rate_text(["a", "b", "c"], mixed, 0.1)


def test_minimiser_rank_text_names_each_case_outside_the_hypothesis():
    assert report.minimiser_rank_text([], 10).startswith("At every λ computed")
    row = {"e": 6, "rank": 7, "minority_fitted": 0, "minority": 2}
    text = report.minimiser_rank_text([("(10, 0.2)", row)], 10)
    assert "(10, 0.2) at λ = 2^-6: rank 7, 0 of its 2 minority classes fitted" in text


def test_grid_threshold_text_says_when_the_whole_grid_has_the_smallest_L0():
    text = report.grid_threshold_text(["a", "b"], [[(6, 1), (8, 1)], [(6, 1)]], [6, 8])
    assert text.startswith("a: L₀ = 1 for every λ ≤ 2^-6 (the whole grid); b: L₀ = 1")
    assert "the grid does not reach λ₀" in text
    partial = report.grid_threshold_text(["a", "b"], [[(8, 2)], []], [6, 8])
    assert partial == (
        "a: L₀ = 2 for every λ ≤ 2^-8; b: none (generalised DNC is not beaten at the smallest λ)"
    )


def test_a3_cases_text_counts_inside_and_reports_outside_apart():
    entries = [[_a3_row(6, 2, 3), _a3_row(8, None, 4)], [_a3_row(6, 2, 3, inside=False, rank=7)]]
    text = report.a3_cases_text(["a", "b"], entries, 12)
    assert text.startswith("In 1 of 2 cases of (imbalance, λ)")
    assert "from L = 2 on and at every larger depth up to L = 12" in text
    assert "rank 2 alone does so from L = 3 to 4" in text
    assert "Apart from these, outside that regime: b at λ = 2^-6 (rank 7, 0 of 2" in text
    assert "beaten from L = 2 as well" in text


def test_crossover_text_contrasts_the_rank_2_crossover_with_the_first_win():
    entries = [[_a3_row(6, 2, 3), _a3_row(8, 2, 4)]]
    text = report.crossover_text(entries, [1, 2, 3])
    assert "(L = 3 to 4) is therefore an upper bound" in text
    assert "from L = 2, with matrices of rank 5 at that depth" in text
    same = report.crossover_text([[_a3_row(6, 3, 3)]], [1, 2, 3])
    assert same.startswith("Anything found beats generalised DNC from L = 3")
    assert report.crossover_text([[_a3_row(6, None, None)]], [1, 2, 3]).startswith("Nothing")


def test_a3_threshold_table_has_one_row_per_case_with_the_ratios():
    html = report.a3_threshold_table(["a"], [[_a3_row(6, 2, 3)]], [1, 2, 3]).data
    assert html.count("<tr>") == 2  # the header and one case
    assert ">2^-6<" in html and ">0.889<" in html and ">0.778<" in html and ">4<" in html


def test_gd_outcome_and_settled_texts_follow_the_measurements():
    far = [{"distance": 0.7, "rank": 5}, {"distance": 0.6, "rank": 3}]
    assert report.gd_outcome_text(far, 10, 0.05) == (
        "no run ends near generalised DNC: all end at a lower rank (3 to 5, against K − 1 = 9)"
    )
    near = far + [{"distance": 0.01, "rank": 9}]
    assert report.gd_outcome_text(near, 10, 0.05) == "1 of 3 runs end near generalised DNC"
    assert report.settled_text([1e-9, 1e-8], 1e-6, 600).startswith("All 2 runs settled")
    moving = report.settled_text([1e-9, 3e-5], 1e-6, 600)
    assert moving.startswith("1 of 2 runs settled") and "largest change 3.0e-05" in moving


def test_a2_summary_names_the_depths_per_number_of_classes():
    rows = [
        {"rank": 5, "superior": False},
        {"rank": 2, "superior": True},
        {"rank": 2, "superior": True},
    ]
    zero = [{"rank": 3, "superior": True}, {"rank": 0, "superior": False}, {"rank": 0}]
    text = report.a2_summary({6: {"ii": rows, "i": zero}}, [1, 4, 8])
    assert text == {
        "ranks-ii": "5, 2, 2 (K = 6)",
        "ranks-i": "3, 0, 0 (K = 6)",
        "superior": "L = 4 (K = 6)",
        "zero": "L = 4 (K = 6)",
    }


def test_chapter_10_tables_have_one_row_per_run_or_case():
    gd = [
        {
            "init_scale": 0.05, "seed": 0, "loss": 0.0765, "change": 1e-9, "rank": 5,
            "distance": 0.676, "superior": True, "vs_reference": -0.11, "vs_best": 5e-3,
        }
    ]  # fmt: skip
    html = report.gd_table(gd, [8, 2]).data
    assert html.count("<tr>") == 2 and ">0.676<" in html and ">-0.1100<" in html
    bal = [
        {
            "init_scale": 0.3, "seed": 4, "structure": "dnc", "rank": 9, "final_loss": 0.0907,
            "rel_error": None, "plateau_change": 1e-12,
        }
    ]  # fmt: skip
    assert ">dnc<" in report.balanced_table(bal, 5).data
    single = [{"e": 6, "lam": 2.0**-6, "distance": 0.2, "rank": 9, "fitted": 10}]
    single[0]["residual"] = 1e-7
    html = report.sel_table(["(4, 0.5)"], [single]).data
    assert ">0.832<" in html and ">2^-6<" in html  # 0.2 * log(64)
    a2 = [{"L": 1, "lam": 1e-3, "loss": 0.07, "rank": 5, "superior": True, "source": "SEL"}]
    assert "regime (ii)" in report.a2_table(a2, 6, [8, 2], "ii").data
