"""Shared paths and test ordering: unit tests, then chapters, then the book, then the browser.

``pytest tests`` runs everything in that order (the book is built from the notebooks the chapter
tests execute, and the browser test reads that book); ``pytest -m "not chapters and not book and
not browser"`` runs only the fast unit tests.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("chapters", "book", "browser")  # after the unmarked unit tests, in this order


def pytest_collection_modifyitems(config, items):
    """Sort by stage (stable: the order inside a stage is kept)."""

    def stage(item):
        marks = [i for i, name in enumerate(STAGES) if item.get_closest_marker(name)]
        return 1 + marks[0] if marks else 0

    items.sort(key=stage)


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root (where _config.yml and _toc.yml live)."""
    return ROOT


@pytest.fixture(scope="session")
def ci_runs_dir() -> Path:
    """Where the chapter tests write the notebooks executed with the ``ci`` parameters."""
    path = ROOT / "_build" / "ci-runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def ci_book_dir() -> Path:
    """The staged book built from those notebooks; its HTML is in ``_build/html`` below it."""
    return ROOT / "_build" / "ci-book"
