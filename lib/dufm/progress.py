"""Progress bars of long work (training, sweeps): tqdm on stderr, for terminals and papermill logs.

Every bar of ``dufm`` is made by ``progress_bar``. It is off when the caller asks (``show=False``)
and whenever ``$DUFM_PROGRESS`` is ``0``: the book build sets it (``_ext/scorecard_pages.py``) and
so does the runner for the notebook it keeps, so progress frames never reach a page.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

ENV = "DUFM_PROGRESS"


def progress_enabled() -> bool:
    """False when ``$DUFM_PROGRESS`` is ``0`` (a book build), else True."""
    return os.environ.get(ENV, "1").strip() != "0"


def progress_bar(total: int, desc: str, show: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr, refreshed at most every 5 s; disabled unless ``show`` and
    ``progress_enabled()``. ``kwargs`` go to tqdm (``unit``, ``initial``, ...)."""
    return tqdm(
        total=total,
        desc=desc,
        disable=not (show and progress_enabled()),
        file=sys.stderr,
        mininterval=5.0,
        **kwargs,
    )
