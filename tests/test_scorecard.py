"""Unit tests of dufm.scorecard's records (the reader's tests live with the scorecard page)."""

import json
import re

import pytest

from dufm import scorecard


def test_record_writes_one_file_per_chapter_and_keeps_results_of_the_same_run(tmp_path):
    scorecard.record("99_x", "Theorem 1", verdict="reproduced", measured="a", directory=tmp_path)
    scorecard.record(
        "99_x",
        "Figure 1",
        verdict="contradicted",
        measured="b",
        numbers={"e": 1.5},
        directory=tmp_path,
    )
    data = json.loads((tmp_path / "99_x.json").read_text())
    assert set(data["results"]) == {"Theorem 1", "Figure 1"}
    assert data["results"]["Figure 1"]["numbers"] == {"e": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["99_x.json"]


def test_a_new_run_replaces_the_records_of_an_earlier_run(tmp_path):
    (tmp_path / "98_y.json").write_text(json.dumps({"format": 1, "results": {"Old": {}}}))
    scorecard.record("98_y", "Lemma 1", verdict="sharper", measured="m", directory=tmp_path)
    assert set(json.loads((tmp_path / "98_y.json").read_text())["results"]) == {"Lemma 1"}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(verdict="fine", measured="m"), "verdict"),
        (dict(verdict="reproduced", measured=""), "measured"),
        (dict(verdict="reproduced", measured="m", numbers={"x": [1]}), "numbers"),
        (dict(verdict="reproduced", measured="m", numbers={"x": float("nan")}), "numbers"),
    ],
)
def test_bad_records_are_refused_naming_the_field(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        scorecard.record("97_z", "Theorem 2", directory=tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_records_dir_is_under_the_book_root_or_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "chapters").mkdir()
    monkeypatch.delenv("DUFM_RECORDS", raising=False)
    assert scorecard.records_dir(tmp_path / "chapters") == tmp_path / "_build" / "records"
    monkeypatch.setenv("DUFM_RECORDS", str(tmp_path / "elsewhere"))
    assert scorecard.records_dir(tmp_path) == tmp_path / "elsewhere"


# --- the reader (the scorecard page, the intro and the README) -----------------------------------


def write(folder, chapter, **fields):
    data = {"format": 1, "chapter": chapter, "results": {}, "findings": {}, **fields}
    (folder / f"{chapter}.json").write_text(json.dumps(data))


def test_rows_show_reproduced_contradicted_not_run_and_not_in_the_book(tmp_path):
    write(
        tmp_path,
        "02_dnc_not_optimal",
        results={
            "Theorem 1": {"verdict": "reproduced", "measured": "all 54 cells agree"},
            "Figure 1": {"verdict": "contradicted", "measured": "DNC lower"},
        },
    )
    rows = scorecard.scorecard_rows(
        scorecard.read_records(tmp_path), ["01_deep_ufm", "02_dnc_not_optimal"]
    )
    by_key = {r["result"]: r for r in rows}
    assert len(rows) == len(scorecard.RESULTS) == len(by_key)
    assert by_key["Theorem 1"]["verdict"] == "reproduced"
    assert by_key["Theorem 1"]["measured"] == "all 54 cells agree"
    assert by_key["Figure 1"]["verdict"] == "contradicted"
    assert by_key["Lemma 1"]["verdict"] == scorecard.NOT_RUN  # in the book, no record
    assert by_key["Theorem 7"]["verdict"] == scorecard.NOT_IN_BOOK
    counts = scorecard.count_verdicts(rows)
    assert counts["reproduced"] == 1 and counts["contradicted"] == 1
    assert sum(counts.values()) == len(scorecard.RESULTS)
    assert scorecard.summary_line(counts).startswith("Of the paper's 21 numbered results")


def test_a_record_of_an_older_version_of_its_chapter_reads_as_not_run(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "03_rank_ordering.md").write_text("now\n")
    records = tmp_path / "records"
    records.mkdir()
    result = {"Theorem 2": {"verdict": "reproduced", "measured": "m"}}
    write(records, "03_rank_ordering", results=result, source_sha256="0" * 64)
    assert scorecard.read_records(records, tmp_path) == {}
    digest = scorecard.source_digest("03_rank_ordering", tmp_path)
    write(records, "03_rank_ordering", results=result, source_sha256=digest)
    assert set(scorecard.read_records(records, tmp_path)) == {"03_rank_ordering"}


@pytest.mark.parametrize(
    "text, field",
    [
        ("{not json", "(file)"),
        (json.dumps({"format": 2, "chapter": "04_x", "results": {}}), "format"),
        (json.dumps({"format": 1, "chapter": "04_y", "results": {}}), "chapter"),
        (json.dumps({"format": 1, "chapter": "04_x", "results": []}), "results"),
        (
            json.dumps(
                {"format": 1, "chapter": "04_x", "results": {"Theorem 3": {"measured": "m"}}}
            ),
            "results['Theorem 3'].verdict",
        ),
        (
            json.dumps(
                {
                    "format": 1,
                    "chapter": "04_x",
                    "results": {"Theorem 3": {"verdict": "reproduced", "measured": ""}},
                }
            ),
            "results['Theorem 3'].measured",
        ),
    ],
)
def test_a_malformed_record_is_an_error_naming_the_chapter_and_the_field(tmp_path, text, field):
    (tmp_path / "04_x.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"chapter '04_x': field {field!r}")):
        scorecard.read_records(tmp_path)


def test_findings_are_listed_by_chapter(tmp_path):
    write(tmp_path, "06_flat_attractive", findings={"threshold": {"measured": "alpha_c"}})
    assert scorecard.finding_rows(scorecard.read_records(tmp_path)) == [
        {"chapter": "06_flat_attractive", "title": "threshold", "measured": "alpha_c"}
    ]


def test_update_readme_rewrites_only_the_marked_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# t\n<!-- scorecard -->old<!-- /scorecard -->\nrest\n")
    assert scorecard.update_readme(readme, "new") is True
    assert readme.read_text() == "# t\n<!-- scorecard -->new<!-- /scorecard -->\nrest\n"
    assert scorecard.update_readme(readme, "new") is False
    readme.write_text("# no marker\n")
    with pytest.raises(ValueError, match="no <!-- scorecard -->"):
        scorecard.update_readme(readme, "x")


def test_the_readme_has_the_scorecard_line(root):
    assert scorecard.README_MARKERS[0] in (root / "README.md").read_text()


def test_every_result_names_a_chapter_of_the_book_or_one_still_to_come(root):
    stems = {p.stem for p in (root / "chapters").glob("*.md")}
    coming = {"08_relu", "09_real_networks", "10_imbalanced"}
    assert {chapter for _, chapter, _ in scorecard.RESULTS} <= stems | coming
