"""Unit tests of dufm.scorecard's records (the reader's tests live with the scorecard page)."""

import json

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
