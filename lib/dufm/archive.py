"""The kept runs of the chapters' ``paper`` parameter sets (``results/paper/``, committed).

Serves the scorecard's second verdict column, "paper set (kept run)" (``dufm.scorecard_page``,
chapters/scorecard.md, the README) and ``make paper``.

``python -m dufm.run --params paper --archive`` (``make paper``) runs each chapter's paper set
and, when the whole chapter ran, keeps what it found: ``keep_run`` writes
``results/paper/records/<chapter>.json`` (the chapter's scorecard records, as the chapter wrote
them, with the SHA-256 of its source, and the facts of the run: commit, date, machine, torch,
device, dtype, wall time) and rewrites ``results/paper/README.md``, a table of every kept run.
Both writes are atomic, so a failed or interrupted chapter leaves its earlier kept run as it was.

``read_kept`` reads them back, one ``KeptRun`` per chapter of the book: ``present``; ``stale``
when the chapter's source changed since the run (shown as "stale: chapter changed since
<date>", never as a current verdict); ``absent`` ("not run", with the reason: ``NOT_KEPT`` names
the chapters whose paper set cannot run on a CPU). A malformed file is a ValueError naming the
chapter and the field.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .book import toc_chapters
from .files import write_atomic
from .machine import machine_facts
from .results import RESULTS
from .scorecard import _malformed, check_records, source_digest

ARCHIVE = Path("results") / "paper"  # under the book's root
FORMAT = 1
# Chapters whose paper set needs what a CPU machine lacks: make paper leaves them out there.
NOT_KEPT = {
    "09_real_networks": "needs a GPU and the MNIST or CIFAR-10 files",
}
NOT_KEPT_SHORT = {"09_real_networks": "needs a GPU"}  # the scorecard table's few words
NO_RUN_YET = "no kept run yet (make paper)"
# The chapters a kept run can hold: those that check a result of the paper (dufm.results).
RESULT_CHAPTERS = frozenset(owner for _, owner, _ in RESULTS)
RUN_FIELDS = ("commit", "date", "cpu", "cores", "gpu", "torch", "device", "dtype", "wall_s")


@dataclass(frozen=True)
class KeptRun:
    """One chapter's kept paper-set run: ``status`` is "present", "stale" or "absent"; ``note``
    says why a run does not count ("" when present); ``run`` the facts of the run; ``results``
    and ``findings`` its records (as in ``dufm.scorecard.read_records``)."""

    chapter: str
    status: str
    note: str = ""
    run: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    findings: dict = field(default_factory=dict)


def archive_dir(root: str | os.PathLike) -> Path:
    """``<root>/results/paper``."""
    return Path(root) / ARCHIVE


def _values(entries: dict, key: str) -> str:
    """The distinct values of ``facts[key]`` over the records, joined: "float64, float32"."""
    seen = []
    for kind in ("results", "findings"):
        for entry in entries.get(kind, {}).values():
            value = entry.get("facts", {}).get(key)
            if value is not None and str(value) not in seen:
                seen.append(str(value))
    return ", ".join(seen) or "—"


def keep_run(
    chapter: str,
    records_file: str | os.PathLike,
    *,
    root: str | os.PathLike,
    wall_s: float,
    parameter_set: str = "paper",
) -> Path:
    """Keep the records a chapter's finished paper-set run wrote (``records_file``) in
    ``results/paper/records/<chapter>.json`` with the facts of the run; rewrite the index.

    Raises ValueError when the records are missing or malformed, or not of the paper set.
    """
    if parameter_set != "paper":
        raise ValueError(
            f"parameter_set={parameter_set!r} is not allowed: only a run of the paper set is kept"
        )
    path = Path(records_file)
    if not path.is_file():
        raise ValueError(f"chapter {chapter} wrote no scorecard records ({path} is missing)")
    data = json.loads(path.read_text())
    entries = check_records(chapter, data, path)
    sets = {e["parameter_set"] for kind in entries.values() for e in kind.values()}
    if sets != {"paper"}:
        raise ValueError(
            f"chapter {chapter}: records of parameter set(s) {sorted(sets)} are not allowed in "
            "the archive: it keeps runs of the paper set only"
        )
    machine = machine_facts(root)
    run = {
        "commit": machine["commit"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": machine["cpu"],
        "cores": machine["cores"],
        "gpu": machine["gpu"],
        "torch": machine["torch"],
        "python": machine["python"],
        "device": _values(entries, "device"),
        "dtype": _values(entries, "dtype"),
        "wall_s": round(float(wall_s), 1),
    }
    kept = {"format": FORMAT, "chapter": chapter, "run": run, "records": data}
    target = archive_dir(root) / "records" / f"{chapter}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, lambda fh: json.dump(kept, fh, indent=1, sort_keys=True), "w")
    write_index(root)
    return target


def _read_one(chapter: str, path: Path, root: Path) -> KeptRun:
    try:
        kept = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise _malformed(chapter, "(kept run)", f"is not valid JSON ({path}: {err})") from None
    if not isinstance(kept, dict) or kept.get("format") != FORMAT:
        got = kept.get("format") if isinstance(kept, dict) else type(kept).__name__
        raise _malformed(chapter, "(kept run).format", f"is {got!r}: must be {FORMAT} ({path})")
    if kept.get("chapter") != chapter:
        raise _malformed(
            chapter, "(kept run).chapter", f"is {kept.get('chapter')!r}: must be the file name"
        )
    run = kept.get("run")
    if not isinstance(run, dict):
        raise _malformed(chapter, "(kept run).run", f"must be a mapping ({path})")
    for key in RUN_FIELDS:
        if key not in run:
            raise _malformed(chapter, f"(kept run).run.{key}", f"is missing ({path})")
    records = kept.get("records")
    entries = check_records(chapter, records, path)
    if records.get("source_sha256") != source_digest(chapter, root):
        date = str(run["date"])[:10]
        return KeptRun(chapter, "stale", f"stale: chapter changed since {date}", run, **entries)
    return KeptRun(chapter, "present", "", run, **entries)


def read_kept(root: str | os.PathLike, chapters) -> dict:
    """{chapter: KeptRun} for the chapter stems ``chapters`` (the book's, from ``_toc.yml``)."""
    root = Path(root)
    folder = archive_dir(root) / "records"
    out = {}
    for chapter in chapters:
        path = folder / f"{chapter}.json"
        if path.is_file():
            out[chapter] = _read_one(chapter, path, root)
        else:
            why = NOT_KEPT.get(chapter, NO_RUN_YET)
            out[chapter] = KeptRun(chapter, "absent", f"not run: {why}")
    return out


def kept_rows(kept: dict, rows: list[dict]) -> dict:
    """The scorecard's kept column: {result: row} for the results of ``rows``
    (``dufm.scorecard.scorecard_rows``): the kept verdict with its provenance, or a row whose
    ``note`` says why there is none (stale, not run)."""
    out = {}
    for row in rows:
        run = kept.get(row["chapter"])
        entry = run.results.get(row["result"]) if run is not None else None
        if run is None or run.status != "present" or entry is None:
            if run is None:
                note = f"not run: {NO_RUN_YET}"
            elif run.status == "present":
                note = "not run: the kept run has no record of it"
            else:
                note = run.note
            stale = run is not None and run.status == "stale"
            verdict = "stale" if stale else "not run"
            short = (
                f"since {run.run['date'][:10]}" if stale else NOT_KEPT_SHORT.get(row["chapter"], "")
            )
            out[row["result"]] = {"verdict": verdict, "note": note, "short": short, "measured": ""}
            continue
        out[row["result"]] = {**entry, "result": row["result"], "chapter": row["chapter"]}
    return out


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(round(float(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def index_markdown(kept: dict) -> str:
    """The table of ``results/paper/README.md``: chapter, date, commit, machine, device, wall
    time, verdicts (or why a chapter has no kept run)."""
    lines = [
        "# Kept runs of the paper's settings",
        "",
        "Written by `make paper` (`python -m dufm.run --params paper --archive`); read by the",
        'scorecard\'s column "paper set (kept run)". One file per chapter in `records/`: the',
        "chapter's scorecard records and the facts of the run. A run whose chapter changed since",
        "is shown as stale, never as a current verdict.",
        "",
        "| chapter | date | commit | machine | device, dtype | wall time | verdicts |",
        "|---|---|---|---|---|---|---|",
    ]
    for chapter, run in kept.items():
        if run.status == "absent":
            lines.append(f"| {chapter} | — | — | — | — | — | {run.note} |")
            continue
        r = run.run
        machine = f"{r['cpu']}, {r['cores']} cores" + (
            f", {r['gpu']}" if r["gpu"] != "none" else ""
        )
        verdicts = "; ".join(f"{k}: {e['verdict']}" for k, e in sorted(run.results.items()))
        if run.status == "stale":
            verdicts = f"{run.note} ({verdicts})"
        lines.append(
            f"| {chapter} | {str(r['date'])[:10]} | {str(r['commit'])[:12]} | {machine} | "
            f"{r['device']}, {r['dtype']} | {_minutes(r['wall_s'])} | {verdicts or '—'} |"
        )
    return "\n".join(lines) + "\n"


def write_index(root: str | os.PathLike) -> Path:
    """Rewrite ``results/paper/README.md`` from the kept runs of the book's chapters."""
    root = Path(root)
    kept = read_kept(root, [c.stem for c in toc_chapters(root) if c.stem in RESULT_CHAPTERS])
    target = archive_dir(root) / "README.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = index_markdown(kept)
    return write_atomic(target, lambda fh: fh.write(text), "w")
