"""Unit tests of dufm.scorecard_page: the page's tables, the intro's badges, the README."""

import pytest

from dufm import scorecard, scorecard_page


def row(result="Theorem 1", verdict="reproduced", setting="paper", **extra):
    return {
        "result": result,
        "chapter": "02_dnc_not_optimal",
        "paper": r"DNC is not optimal for $K \\ge 4$",
        "verdict": verdict,
        "measured": "all 54 cells agree (1*2)",
        "setting": setting,
        "parameter_set": "book",
        "facts": {"K": 4, "settled": True},
        **extra,
    }


def test_a_cell_shows_the_data_and_the_model_on_hover():
    cell = scorecard_page._cell(
        {
            "verdict": "reproduced",
            "setting": "stand-in",
            "parameter_set": "book",
            "facts": {"dataset": "mnist-5k", "backbone": "mlp", "settled": True},
        }
    )
    assert cell == "{bdg-success}`reproduced` {abbr}`stand-in, book (mnist-5k; mlp)`"


def test_every_verdict_has_a_coloured_badge():
    for verdict in (*scorecard.VERDICTS, scorecard.NOT_RUN, scorecard.NOT_IN_BOOK):
        assert scorecard_page.badge(verdict).startswith("{bdg-")
    assert scorecard_page.badge("reproduced") == "{bdg-success}`reproduced`"
    assert scorecard_page.badge("contradicted") == "{bdg-danger}`contradicted`"


def test_measured_text_is_escaped_but_the_papers_math_is_not():
    assert scorecard_page.plain("a*b_c $x$") == r"a\*b\_c \$x\$"
    details = scorecard_page.result_details([row()])
    assert r"$K \\ge 4$" in details and r"(1\*2)" in details
    assert details.startswith("(result-theorem-1)=\n:::{dropdown} Theorem 1: reproduced")


def test_the_summary_table_has_one_row_a_result_and_a_kept_column_when_given():
    rows = [row(), row("Figure 1", "not settled", "stand-in")]
    table = scorecard_page.summary_table(rows).splitlines()
    assert table[0] == "| result | book set (this build) | chapter |"
    assert len(table) == 2 + len(rows)
    assert "{bdg-success}`reproduced` paper, book" in table[2]
    assert "{ref}`Theorem 1 <result-theorem-1>`" in table[2]
    note = "stale: chapter changed since 2026-12-01"
    kept = {"Theorem 1": {"verdict": "stale", "note": note, "short": "since 2026-12-01"}}
    table = scorecard_page.summary_table(rows, kept).splitlines()
    assert table[0] == "| result | book set (this build) | paper set (kept run) | chapter |"
    assert "{bdg-light}`stale` since 2026-12-01 |" in table[2]
    assert note in scorecard_page.result_details(rows, kept)  # the whole reason below
    assert table[3].count("{bdg-light}`not run`") == 1  # no kept record at all


def test_the_intro_summary_gives_the_line_and_a_badge_per_verdict():
    text = scorecard_page.summary_badges([row(), row("Lemma 1", "sharper", "reduced")])
    line, marks = text.split("\n\n")
    assert line.startswith("Of the paper's 2 numbered results and figures: 1 reproduced")
    assert marks == "{bdg-success}`reproduced` 1 {bdg-primary}`sharper` 1"


def test_update_readme_rewrites_only_the_marked_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# t\n<!-- scorecard -->old<!-- /scorecard -->\nrest\n")
    assert scorecard_page.update_readme(readme, "new") is True
    assert readme.read_text() == "# t\n<!-- scorecard -->new<!-- /scorecard -->\nrest\n"
    assert scorecard_page.update_readme(readme, "new") is False
    readme.write_text("# no marker\n")
    with pytest.raises(ValueError, match="no <!-- scorecard -->"):
        scorecard_page.update_readme(readme, "x")


def test_the_readme_has_the_scorecard_line(root):
    assert scorecard_page.README_MARKERS[0] in (root / "README.md").read_text()
