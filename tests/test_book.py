"""The book built from the notebooks the chapter tests executed (``_build/ci-runs``), not run again.

The book's sources are staged in ``_build/ci-book`` with each chapter's .md replaced by its executed
.ipynb (``metadata.mystnb.execution_mode = "off"``), then built with ``jupyter-book build -W -n
--keep-going``. The HTML stays in ``_build/ci-book/_build/html`` for ``test_browser.py``.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from dufm import scorecard
from dufm.run import toc_chapters

SKIP = shutil.ignore_patterns(".*", "_build", "lib", "tests", "benchmarks", "runs", "__pycache__")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROBLEM = re.compile(r"WARNING|ERROR|CRITICAL|Traceback")


def stage_book(root: Path, runs: Path, staged: Path) -> None:
    """Copy the book's sources to ``staged``, swapping each chapter for its executed notebook."""
    shutil.rmtree(staged, ignore_errors=True)  # never leave an older book for the browser test
    chapters = toc_chapters(root)
    missing = [c.stem for c in chapters if not (runs / f"{c.stem}.ipynb").is_file()]
    if missing:
        pytest.fail(
            f"no executed notebook in {runs} for {', '.join(missing)}: the chapter test failed or "
            "did not run (pytest -m chapters)",
            pytrace=False,
        )
    shutil.copytree(root, staged, ignore=SKIP)
    for chapter in chapters:
        target = staged / chapter.relative_to(root)
        target.unlink()
        nb = nbformat.read(runs / f"{chapter.stem}.ipynb", as_version=4)
        nb.metadata["mystnb"] = {"execution_mode": "off"}
        nbformat.write(nb, target.with_suffix(".ipynb"))


@pytest.mark.book
def test_book_builds_warning_free_from_executed_chapters(root, ci_runs_dir, ci_book_dir):
    stage_book(root, ci_runs_dir, ci_book_dir)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book), "build", "-W", "-n", "--keep-going", str(ci_book_dir)]
    env = {**os.environ, "DUFM_RECORDS": str(ci_runs_dir / "records")}  # the intro's summary
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, cwd=ci_book_dir, env=env
    )
    log = ANSI.sub("", proc.stdout + proc.stderr)
    problems = [line for line in log.splitlines() if PROBLEM.search(line)]
    if proc.returncode or problems:
        shown = "\n".join(problems) or log[-3000:]
        pytest.fail(f"jupyter-book build exited {proc.returncode}:\n{shown}", pytrace=False)
    assert (ci_book_dir / "_build" / "html" / "index.html").is_file()


@pytest.mark.book
def test_every_row_of_the_scorecard_has_a_record_behind_it(root, ci_runs_dir):
    records = scorecard.read_records(ci_runs_dir / "records", root)
    rows = scorecard.scorecard_rows(records, [c.stem for c in toc_chapters(root)])
    missing = [f"{r['result']} ({r['chapter']})" for r in rows if r["verdict"] == scorecard.NOT_RUN]
    assert not missing, f"no record behind these rows of the scorecard: {', '.join(missing)}"


def test_the_book_build_executes_its_chapters(root):
    """``make book`` executes every chapter (cached): a build that skipped execution would show
    pages without results and a scorecard of "not run"."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache"


MINI_CHAPTER = """\
import os, time
from pathlib import Path
from dufm.scorecard import record
Path(os.environ["MINI_MARKER"]).write_text(str(os.getpid()))
time.sleep(float(os.environ.get("MINI_SLEEP", "0")))
record("01_deep_ufm", "Proposition 1", verdict="reproduced", measured="a = 1",
       setting="reduced", facts={"settled": True})
"""


def mini_book(root: Path, folder: Path) -> Path:
    """A book of one recording chapter and the real scorecard page, with the real config."""
    import jupytext

    for name in ("_config.yml", "references.bib"):
        shutil.copy(root / name, folder / name)
    for name in ("_ext", "_static"):
        shutil.copytree(root / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "chapters").mkdir()
    shutil.copy(root / "chapters" / "scorecard.md", folder / "chapters" / "scorecard.md")
    (folder / "intro.md").write_text("# Mini book\n\n{{ scorecard_counts }}\n")
    (folder / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n"
        "  - file: chapters/01_deep_ufm\n  - file: chapters/scorecard\n"
    )
    spec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Chapter"), nbformat.v4.new_code_cell(MINI_CHAPTER)],
        metadata={"kernelspec": spec},
    )
    jupytext.write(nb, folder / "chapters" / "01_deep_ufm.md", fmt="md:myst")
    return folder


def scorecard_text(book: Path) -> str:
    """The scorecard page's tables as text (what a reader sees of the verdicts)."""
    html = (book / "_build" / "html" / "chapters" / "scorecard.html").read_text()
    tables = re.findall(r"<table.*?</table>", html, flags=re.DOTALL)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", "".join(tables)))


def build(book: Path, marker: Path, sleep: float, **popen):
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    env = {**os.environ, "MINI_MARKER": str(marker), "MINI_SLEEP": str(sleep)}
    env.pop("DUFM_RECORDS", None)
    return subprocess.Popen(
        [str(jupyter_book), "build", str(book)],
        cwd=book,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


@pytest.mark.book
def test_a_build_killed_while_executing_a_chapter_is_finished_by_the_next(root, tmp_path):
    (tmp_path / "clean").mkdir()
    (tmp_path / "killed").mkdir()
    clean = mini_book(root, tmp_path / "clean")
    killed = mini_book(root, tmp_path / "killed")
    out, _ = build(clean, tmp_path / "m1", 0).communicate(timeout=600)
    assert "build succeeded" in out, out[-3000:]
    expected = scorecard_text(clean)
    assert "reproduced" in expected

    marker = tmp_path / "m2"
    proc = build(killed, marker, 120, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)  # the chapter's kernel is running
        assert marker.is_file(), "the chapter never started"
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the build and everything it started
        proc.wait()
        if marker.is_file() and marker.read_text():
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)  # its kernel too
            except ProcessLookupError:
                pass
    out, _ = build(killed, tmp_path / "m3", 0).communicate(timeout=600)
    assert "build succeeded" in out, out[-3000:]
    assert scorecard_text(killed) == expected


def test_a_parameter_line_papermill_would_skip_is_an_error_not_a_missing_name():
    from dufm.book import allowed_parameters

    cell = nbformat.v4.new_code_cell("d = 5  # width (d >= K)\nK = 3")
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    with pytest.raises(ValueError, match=r"line 1 'd = 5  # width \(d >= K\)' is not allowed"):
        allowed_parameters(nb)
    cell.source = "d = 5  # width, at least K\nK = 3"
    assert list(allowed_parameters(nb)) == ["d", "K"]
