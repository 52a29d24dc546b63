"""Unit tests of dufm.scorecard's records (the reader's tests live with the scorecard page)."""

import json
import re

import pytest

from dufm import scorecard
from dufm.book import toc_chapters

ON = dict(setting="reduced", facts={"K": 4, "settled": True})


def test_record_writes_one_file_per_chapter_and_keeps_results_of_the_same_run(tmp_path):
    scorecard.record(
        "99_x", "Theorem 1", verdict="reproduced", measured="a", directory=tmp_path, **ON
    )
    scorecard.record(
        "99_x",
        "Figure 1",
        verdict="contradicted",
        measured="b",
        numbers={"e": 1.5},
        directory=tmp_path,
        **ON,
    )
    data = json.loads((tmp_path / "99_x.json").read_text())
    assert set(data["results"]) == {"Theorem 1", "Figure 1"}
    assert data["results"]["Figure 1"]["numbers"] == {"e": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["99_x.json"]


def test_a_new_run_replaces_the_records_of_an_earlier_run(tmp_path):
    (tmp_path / "98_y.json").write_text(json.dumps({"format": 1, "results": {"Old": {}}}))
    scorecard.record("98_y", "Lemma 1", verdict="sharper", measured="m", directory=tmp_path, **ON)
    assert set(json.loads((tmp_path / "98_y.json").read_text())["results"]) == {"Lemma 1"}


def test_a_record_says_what_it_was_measured_on(tmp_path, monkeypatch):
    monkeypatch.setenv(scorecard.PARAMETER_SET_ENV, "paper")
    facts = {"dataset": "mnist-5k", "K": 10, "settled": True}
    scorecard.record_finding(
        "96_w", "t", measured="m", setting="stand-in", facts=facts, directory=tmp_path
    )
    entry = json.loads((tmp_path / "96_w.json").read_text())["findings"]["t"]
    assert (entry["setting"], entry["parameter_set"], entry["facts"]) == (
        "stand-in",
        "paper",
        facts,
    )
    monkeypatch.delenv(scorecard.PARAMETER_SET_ENV)
    assert scorecard.parameter_set_name() == "book"  # a book build runs the defaults
    monkeypatch.setenv(scorecard.PARAMETER_SET_ENV, "mine")
    with pytest.raises(ValueError, match="DUFM_PARAMETER_SET='mine' is not allowed"):
        scorecard.parameter_set_name()


def test_a_verdict_is_never_drawn_from_runs_that_were_still_moving(tmp_path):
    moving = dict(setting="reduced", facts={"settled": False})
    for verdict in scorecard.DRAWN:
        with pytest.raises(ValueError, match="record it as 'not settled'"):
            scorecard.record(
                "95_v", "Figure 7", verdict=verdict, measured="m", directory=tmp_path, **moving
            )
    assert not list(tmp_path.iterdir())
    scorecard.record(
        "95_v", "Figure 7", verdict="not settled", measured="m", directory=tmp_path, **moving
    )
    scorecard.record(
        "95_v", "Figure 4", verdict="not tested here", measured="m", directory=tmp_path, **moving
    )
    results = scorecard.read_records(tmp_path)["95_v"]["results"]
    assert {k: v["verdict"] for k, v in results.items()} == {
        "Figure 7": "not settled",
        "Figure 4": "not tested here",
    }


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(verdict="fine", measured="m", **ON), "verdict"),
        (dict(verdict="reproduced", measured="", **ON), "measured"),
        (dict(verdict="reproduced", measured="m", numbers={"x": [1]}, **ON), "numbers"),
        (dict(verdict="reproduced", measured="m", numbers={"x": float("nan")}, **ON), "numbers"),
        (dict(verdict="reproduced", measured="m", setting="toy", facts={}), "setting"),
        (dict(verdict="reproduced", measured="m", setting="paper", facts=[1]), "facts"),
        (dict(verdict="reproduced", measured="m", setting="paper", facts={"x": [1]}), "facts"),
        (
            dict(verdict="reproduced", measured="m", setting="paper", facts={"settled": "yes"}),
            "facts",
        ),
    ],
)
def test_bad_records_are_refused_naming_the_field(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        scorecard.record("97_z", "Theorem 2", directory=tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_a_record_without_a_setting_is_refused(tmp_path):
    with pytest.raises(TypeError, match="setting"):
        scorecard.record("97_z", "Theorem 2", verdict="reproduced", measured="m", facts={})


def test_setting_of_compares_the_parameters_with_the_paper_set(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "chapters" / "params").mkdir(parents=True)
    (tmp_path / "chapters" / "90_t.md").write_text("x\n")
    (tmp_path / "chapters" / "params" / "90_t.yml").write_text(
        "paper:\n  K: 10\n  seeds: [0, 1]\n  device: cuda\n"
    )
    monkeypatch.chdir(tmp_path / "chapters")
    assert scorecard.setting_of("90_t", {"K": 10, "seeds": [0, 1], "device": "cpu"}) == "paper"
    assert scorecard.setting_of("90_t", {"K": 10, "seeds": [0]}) == "reduced"
    assert scorecard.setting_of("90_t", {"seeds": [0, 1]}) == "reduced"  # K missing
    assert scorecard.setting_of("90_t", {"K": 10, "seeds": [0, 1]}, stand_in=True) == "stand-in"


def test_records_dir_is_under_the_book_root_or_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "chapters").mkdir()
    monkeypatch.delenv("DUFM_RECORDS", raising=False)
    assert scorecard.records_dir(tmp_path / "chapters") == tmp_path / "_build" / "records"
    monkeypatch.setenv("DUFM_RECORDS", str(tmp_path / "elsewhere"))
    assert scorecard.records_dir(tmp_path) == tmp_path / "elsewhere"


# --- the reader (the scorecard page, the intro and the README) -----------------------------------


PROVENANCE = {"setting": "paper", "parameter_set": "book", "facts": {}}


def write(folder, chapter, results=None, findings=None, **fields):
    data = {
        "format": scorecard.FORMAT,
        "chapter": chapter,
        "results": {k: {**PROVENANCE, **v} for k, v in (results or {}).items()},
        "findings": {k: {**PROVENANCE, **v} for k, v in (findings or {}).items()},
        **fields,
    }
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
    assert by_key["Theorem 1"]["setting"] == "paper" and by_key["Lemma 1"]["setting"] is None
    counts = scorecard.count_verdicts(rows)
    assert counts["reproduced"] == 1 and counts["contradicted"] == 1
    assert sum(counts.values()) == len(scorecard.RESULTS)
    assert scorecard.summary_line(counts).startswith("Of the paper's 21 numbered results")


def test_the_summary_counts_each_verdict_by_setting():
    rows = [
        {"verdict": "reproduced", "setting": s} for s in ("paper", "paper", "reduced", "stand-in")
    ] + [{"verdict": "not settled", "setting": "stand-in"}, {"verdict": "not run", "setting": None}]
    line = scorecard.summary_line(scorecard.count_verdicts(rows), scorecard.count_settings(rows))
    assert line == (
        "Of the paper's 6 numbered results and figures: 4 reproduced (2 at the paper's setting, "
        "2 reduced or on stand-ins), 1 not settled, 1 not run."
    )


def test_measured_on_names_the_setting_the_set_and_the_data():
    row = {
        "setting": "stand-in",
        "parameter_set": "book",
        "facts": {"dataset": "mnist-5k", "backbone": "mlp", "settled": False},
    }
    assert scorecard.measured_on(row) == ("a stand-in, book set, runs still moving; mnist-5k, mlp")
    assert scorecard.measured_on({"setting": None}) == "—"


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


def _file(results):
    return json.dumps({"format": scorecard.FORMAT, "chapter": "04_x", "results": results})


GOOD = {"verdict": "reproduced", "measured": "m", **PROVENANCE}


@pytest.mark.parametrize(
    "text, field",
    [
        ("{not json", "(file)"),
        (json.dumps({"format": 1, "chapter": "04_x", "results": {}}), "format"),
        (json.dumps({"format": scorecard.FORMAT, "chapter": "04_y", "results": {}}), "chapter"),
        (json.dumps({"format": scorecard.FORMAT, "chapter": "04_x", "results": []}), "results"),
        (_file({"Theorem 3": {"measured": "m"}}), "results['Theorem 3'].verdict"),
        (_file({"Theorem 3": {**GOOD, "measured": ""}}), "results['Theorem 3'].measured"),
        (_file({"Theorem 3": {**GOOD, "setting": None}}), "results['Theorem 3'].setting"),
        (_file({"Theorem 3": {**GOOD, "setting": "toy"}}), "results['Theorem 3'].setting"),
        (
            _file({"Theorem 3": {k: v for k, v in GOOD.items() if k != "setting"}}),
            "results['Theorem 3'].setting",
        ),
        (
            _file({"Theorem 3": {**GOOD, "parameter_set": "x"}}),
            "results['Theorem 3'].parameter_set",
        ),
        (_file({"Theorem 3": {**GOOD, "facts": None}}), "results['Theorem 3'].facts"),
        (
            _file({"Theorem 3": {**GOOD, "facts": {"settled": 1}}}),
            "results['Theorem 3'].facts",
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
        {"chapter": "06_flat_attractive", "title": "threshold", "measured": "alpha_c", **PROVENANCE}
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


def test_every_result_names_a_chapter_of_the_book(root):
    stems = {p.stem for p in toc_chapters(root)}
    assert {chapter for _, chapter, _ in scorecard.RESULTS} <= stems
