"""Machine-readable verdicts of the chapters, read by the scorecard page (chapters/scorecard.md).

A chapter, once its checks have passed, calls ``record(chapter, result, verdict=..., measured=...)``
for each numbered result or figure of the paper it covers. The records of one chapter live in one
JSON file, ``<records dir>/<chapter>.json``; the directory is ``$DUFM_RECORDS`` if set, else
``_build/records`` under the book's root (the folder holding ``_toc.yml``, found from the current
directory upwards). The first ``record`` of a run (a new kernel) replaces the chapter's file, so a
file never mixes verdicts of two runs; it is written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

VERDICTS = ("reproduced", "sharper", "contradicted", "not reproduced")
FORMAT = 1

_started: set = set()  # chapters whose file this process has already replaced


def records_dir(start: str | os.PathLike | None = None) -> Path:
    """Where the records live: ``$DUFM_RECORDS``, else ``<book root>/_build/records``."""
    env = os.environ.get("DUFM_RECORDS")
    if env:
        return Path(env)
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder / "_build" / "records"
    raise ValueError(
        f"no _toc.yml in {here} or above: set DUFM_RECORDS to the folder for the chapter records"
    )


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}={value!r} is not allowed: must be a non-empty string")
    return value


def record(
    chapter: str,
    result: str,
    *,
    verdict: str,
    measured: str,
    numbers: dict | None = None,
    directory: str | os.PathLike | None = None,
) -> Path:
    """Record the verdict of one result of the paper (e.g. "Theorem 7", "Figure 6").

    ``verdict`` is one of ``VERDICTS``; ``measured`` one line with the computed numbers behind it;
    ``numbers`` a flat dict of JSON numbers or strings. Returns the file written.
    """
    _check_text("chapter", chapter)
    _check_text("result", result)
    _check_text("measured", measured)
    if verdict not in VERDICTS:
        raise ValueError(f"verdict={verdict!r} is not allowed: must be one of {VERDICTS}")
    numbers = dict(numbers or {})
    for key, value in numbers.items():
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            raise ValueError(f"numbers[{key!r}]={value!r} is not allowed: must be a number or text")
        if isinstance(value, float) and value != value:
            raise ValueError(f"numbers[{key!r}]=nan is not allowed: must be a finite number")
    folder = Path(directory) if directory is not None else records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    data = {"format": FORMAT, "chapter": chapter, "results": {}}
    if chapter in _started and path.is_file():
        data = json.loads(path.read_text())
    _started.add(chapter)
    data["results"][result] = {
        "verdict": verdict,
        "measured": measured,
        "numbers": numbers,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{chapter}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
