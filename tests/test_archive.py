"""The kept paper-set runs (dufm.archive): kept with their facts, read back as present, stale,
absent or malformed, and shown in the scorecard's second column and the README."""

import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from dufm import archive, scorecard, scorecard_page

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
CHAPTER = "01_deep_ufm"


def make_book(root: Path) -> Path:
    """A book with chapters 01 and 09 (a parameters cell each) and a _toc.yml."""
    (root / "chapters").mkdir(parents=True)
    (root / "intro.md").write_text("# intro\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n"
        "  - file: chapters/01_deep_ufm\n  - file: chapters/09_real_networks\n"
    )
    for stem in (CHAPTER, "09_real_networks"):
        cells = [nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]})]
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})
        jupytext.write(nb, root / "chapters" / f"{stem}.md", fmt="md:myst")
    return root


def paper_records(root: Path, monkeypatch, parameter_set: str = "paper") -> Path:
    """The records file a chapter's paper-set run writes (one verdict, one finding)."""
    monkeypatch.chdir(root)
    monkeypatch.setenv(scorecard.PARAMETER_SET_ENV, parameter_set)
    folder = root / "out" / "records"
    facts = {"device": "cpu", "dtype": "float64", "settled": True, "K": 10}
    scorecard._started.discard(CHAPTER)
    scorecard.record(
        CHAPTER,
        "Proposition 1",
        verdict="reproduced",
        measured="loss 0.1 at the optimum",
        setting="paper",
        facts=facts,
        directory=folder,
    )
    scorecard.record_finding(
        CHAPTER, "a finding", measured="x = 2", setting="paper", facts=facts, directory=folder
    )
    return folder / f"{CHAPTER}.json"


@pytest.fixture
def book(tmp_path):
    return make_book(tmp_path / "book")


def test_a_kept_run_holds_the_records_and_the_facts_of_the_run(book, monkeypatch):
    kept = archive.keep_run(CHAPTER, paper_records(book, monkeypatch), root=book, wall_s=83.4)
    assert kept == book / "results" / "paper" / "records" / f"{CHAPTER}.json"
    data = json.loads(kept.read_text())
    run = data["run"]
    assert set(archive.RUN_FIELDS) <= set(run)
    assert (run["device"], run["dtype"], run["wall_s"]) == ("cpu", "float64", 83.4)
    assert run["cores"].isdigit() and run["date"].endswith("Z")
    [entry] = data["records"]["results"].values()
    assert entry["parameter_set"] == "paper"


def test_a_present_run_is_read_back_and_fills_the_kept_column(book, monkeypatch):
    archive.keep_run(CHAPTER, paper_records(book, monkeypatch), root=book, wall_s=5)
    kept = archive.read_kept(book, [CHAPTER, "09_real_networks"])
    assert kept[CHAPTER].status == "present" and kept[CHAPTER].note == ""
    assert "a finding" in kept[CHAPTER].findings
    rows = scorecard.scorecard_rows({}, [CHAPTER, "09_real_networks"])
    column = archive.kept_rows(kept, rows)
    assert column["Proposition 1"]["verdict"] == "reproduced"
    assert column["Proposition 1"]["setting"] == "paper"
    table = scorecard_page.summary_table(rows, column)
    assert scorecard_page.KEPT_COLUMN in table
    assert "{bdg-success}`reproduced` paper, paper |" in table  # facts without data or model


def test_a_run_whose_chapter_changed_since_is_stale_never_current(book, monkeypatch):
    archive.keep_run(CHAPTER, paper_records(book, monkeypatch), root=book, wall_s=5)
    source = book / "chapters" / f"{CHAPTER}.md"
    source.write_text(source.read_text() + "\nOne more sentence.\n")
    run = archive.read_kept(book, [CHAPTER])[CHAPTER]
    assert run.status == "stale"
    assert run.note.startswith("stale: chapter changed since 20")
    rows = scorecard.scorecard_rows({}, [CHAPTER])
    cell = archive.kept_rows({CHAPTER: run}, rows)["Proposition 1"]
    assert cell["verdict"] == "stale" and cell["note"] == run.note
    assert cell["short"].startswith("since 20")
    assert "reproduced" not in scorecard_page.summary_table(rows, {"Proposition 1": cell})


def test_an_absent_run_reads_not_run_with_its_reason(book):
    kept = archive.read_kept(book, [CHAPTER, "09_real_networks"])
    assert kept[CHAPTER].status == "absent"
    assert kept[CHAPTER].note == f"not run: {archive.NO_RUN_YET}"
    assert kept["09_real_networks"].note == ("not run: needs a GPU and the MNIST or CIFAR-10 files")
    rows = scorecard.scorecard_rows({}, [CHAPTER, "09_real_networks"])
    column = archive.kept_rows(kept, rows)
    assert column["Figure 7"]["note"].startswith("not run: needs a GPU")
    assert column["Figure 7"]["short"] == "needs a GPU"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda text: text[:-10], "(kept run)"),
        (lambda text: text.replace('"format": 1', '"format": 7'), "(kept run).format"),
        (lambda text: text.replace('"wall_s"', '"wall"'), "(kept run).run.wall_s"),
        (lambda text: text.replace('"verdict": "reproduced"', '"verdict": "fine"'), "verdict"),
        (lambda text: text.replace('"setting": "paper"', '"setting": "lab"'), "setting"),
    ],
)
def test_a_malformed_kept_run_is_an_error_naming_the_chapter_and_the_field(
    book, monkeypatch, edit, field
):
    kept = archive.keep_run(CHAPTER, paper_records(book, monkeypatch), root=book, wall_s=5)
    kept.write_text(edit(kept.read_text()))
    with pytest.raises(ValueError, match=rf"chapter .{CHAPTER}.*{re.escape(field)}"):
        archive.read_kept(book, [CHAPTER])


def test_only_a_paper_set_run_with_records_is_kept(book, monkeypatch):
    records = paper_records(book, monkeypatch, parameter_set="book")
    with pytest.raises(ValueError, match=r"parameter set\(s\) \['book'\] are not allowed"):
        archive.keep_run(CHAPTER, records, root=book, wall_s=5)
    with pytest.raises(ValueError, match="wrote no scorecard records"):
        archive.keep_run(CHAPTER, book / "missing.json", root=book, wall_s=5)
    assert not (book / "results").exists()  # nothing kept


def test_the_index_lists_every_chapter_with_its_run_or_why_not(book, monkeypatch):
    archive.keep_run(CHAPTER, paper_records(book, monkeypatch), root=book, wall_s=125)
    index = (book / "results" / "paper" / "README.md").read_text()
    [line] = [x for x in index.splitlines() if x.startswith(f"| {CHAPTER}")]
    assert (
        "| 2 min 05 s |" in line and "Proposition 1: reproduced" in line and "cpu, float64" in line
    )
    assert "| 09_real_networks | — |" in index and "needs a GPU" in index


def test_the_readme_shows_both_verdict_columns(book, monkeypatch):
    archive.keep_run(CHAPTER, paper_records(book, monkeypatch), root=book, wall_s=5)
    rows = scorecard.scorecard_rows({}, [CHAPTER, "09_real_networks"])
    kept = archive.kept_rows(archive.read_kept(book, [CHAPTER, "09_real_networks"]), rows)
    text = scorecard_page.readme_text(rows, kept)
    assert f"| result | {scorecard_page.BOOK_COLUMN} | {scorecard_page.KEPT_COLUMN} |" in text
    assert "| Proposition 1 | not run | reproduced (paper, paper set) |" in text
    assert "| Figure 7 | not run | not run: needs a GPU" in text
    assert "The kept runs at the paper's own sizes (`make paper`): 1 reproduced, " in text
