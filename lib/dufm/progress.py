"""Progress bars of long work (training, sweeps): tqdm on stderr, for terminals and papermill logs.

Every bar of ``dufm`` is made by ``progress_bar``. It is off when the caller asks (``show=False``)
and whenever ``$DUFM_PROGRESS`` is ``0``: the book build sets it (``_ext/scorecard_pages.py``), so
its pages show none. The runner keeps them in its log (papermill echoes the kernel's output) and
drops them from the notebook it writes (``drop_progress_frames``), so a page built from a runner's
notebook shows none either.
"""

from __future__ import annotations

import os
import re
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


# A tqdm frame: "desc:  21%|##   | 127/600 [00:01<00:03, 127.93it/s]" (or s/it, run/s, ...).
_FRAME = re.compile(r"\|[^|\n]*\|\s*\d+/\d+\s*\[[^\]\n]*(?:/s|/it)[^\]\n]*\]")


def drop_progress_frames(nb) -> int:
    """Remove the progress-bar frames from the stderr outputs of notebook ``nb`` (nbformat, in
    place): a stderr output that held only frames goes, one that held other text keeps it.
    Returns how many frames were removed."""
    removed = 0
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                pieces = re.split(r"[\r\n]", out.get("text", ""))
                frames = [p for p in pieces if _FRAME.search(p)]
                removed += len(frames)
                rest = "\n".join(p for p in pieces if p.strip() and not _FRAME.search(p))
                if not rest:
                    continue
                if frames:
                    out["text"] = rest + "\n"
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    return removed
