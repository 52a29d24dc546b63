"""The book built from the notebooks the chapter tests executed (``_build/ci-runs``), not run again.

The book's sources are staged in ``_build/ci-book`` with each chapter's .md replaced by its executed
.ipynb (``metadata.mystnb.execution_mode = "off"``), then built with ``jupyter-book build -W -n
--keep-going``. The HTML stays in ``_build/ci-book/_build/html`` for ``test_browser.py``.
"""

import os
import re
import shutil
import subprocess
import sys
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
