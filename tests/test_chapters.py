"""Every chapter listed in _toc.yml, executed through papermill with its ``ci`` parameter set.

The executed notebooks land in ``_build/ci-runs/`` where ``test_book.py`` picks them up. A new
chapter is tested as soon as it is in _toc.yml (it needs a ``ci`` key in
``chapters/params/<stem>.yml``).
"""

import time
from pathlib import Path

import pytest

from dufm.run import ChapterError, execute_chapter, parameter_set, toc_chapters

CHAPTERS = toc_chapters(Path(__file__).resolve().parents[1])


@pytest.mark.chapters
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_with_ci_parameters(chapter, ci_runs_dir, record_property):
    (ci_runs_dir / f"{chapter.stem}.ipynb").unlink(missing_ok=True)  # no stale result for the book
    start = time.perf_counter()
    try:
        execute_chapter(chapter, parameter_set(chapter, "ci"), ci_runs_dir)
    except (ChapterError, ValueError, FileNotFoundError) as err:
        failure = str(err)  # reported below, outside the except block: no chained traceback
    else:
        record_property("seconds", round(time.perf_counter() - start, 1))
        return
    pytest.fail(failure, pytrace=False)
