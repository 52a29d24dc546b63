"""Machine-readable verdicts of the chapters, read by the scorecard page (chapters/scorecard.md).

A chapter, once its checks have passed, calls
``record(chapter, result, verdict=..., measured=..., setting=..., facts=...)`` for each numbered
result or figure of the paper it covers (``RESULTS`` lists them all, with the chapter that owns
each), and ``record_finding`` for what it measured beyond the paper. Every record says what it was
measured on: its ``setting`` (``SETTINGS``: the paper's data, model and sizes; the same at reduced
sizes; or a stand-in), the ``parameter_set`` it ran under (``PARAMETER_SETS``, filled in from
``$DUFM_PARAMETER_SET``, which the runner sets; a book build runs the ``book`` set) and ``facts``
(data, model, sizes, steps, dtype, device and whether the runs behind it ``settled``).
``setting_of`` tells a chapter its setting from its parameters.

The records of one chapter live in one JSON file, ``<records dir>/<chapter>.json``; the directory
is ``$DUFM_RECORDS`` if set (the runner sets it to ``<out>/records``), else ``_build/records``
under the book's root (the folder holding ``_toc.yml``, found from the current directory
upwards). The first record of a run (a new kernel) replaces the chapter's file, so a file never
mixes verdicts of two runs; it is written atomically, with the SHA-256 of the chapter's source: a
record whose chapter has changed since is read as "not run", never as an old verdict.

Readers: ``read_records`` (a malformed record is a ValueError naming the chapter and the field),
``scorecard_rows``, ``finding_rows``, ``count_verdicts``, ``count_settings``, ``summary_line``;
the scorecard page, the intro's summary and the README's line are drawn by
``dufm.scorecard_page``."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .book import parameter_set
from .files import write_atomic
from .results import RESULTS
from .validation import check_choice

# A verdict drawn from a settled measurement, then the two that draw none: the runs behind it were
# still moving ("not settled"), or the setting it needs cannot run here ("not tested here").
VERDICTS = (
    "reproduced",
    "sharper",
    "contradicted",
    "not reproduced",
    "not settled",
    "not tested here",
)
DRAWN = VERDICTS[:4]
SETTINGS = ("paper", "reduced", "stand-in")
SETTING_NAMES = {
    "paper": "the paper's setting",
    "reduced": "reduced sizes",
    "stand-in": "a stand-in",
}
PARAMETER_SETS = ("ci", "book", "paper", "custom")
PARAMETER_SET_ENV = "DUFM_PARAMETER_SET"
# Parameters that choose where or how a chapter runs, not what it measures: ignored by setting_of.
EXECUTION_KEYS = frozenset(
    {"device", "scheduler", "torch_threads", "sweep_dir", "data_dir", "batch_size", "records_dir"}
)
NOT_RUN, NOT_IN_BOOK, FORMAT = "not run", "not in the book yet", 2


_started: set = set()  # chapters whose file this process has already replaced


def records_dir(start: str | os.PathLike | None = None) -> Path:
    """Where the records live: ``$DUFM_RECORDS``, else ``<book root>/_build/records``."""
    env = os.environ.get("DUFM_RECORDS")
    if env:
        return Path(env)
    root = _book_root(start)
    if root is None:
        raise ValueError(
            f"no _toc.yml in {Path(start or os.getcwd()).resolve()} or above: set DUFM_RECORDS "
            "to the folder for the chapter records"
        )
    return root / "_build" / "records"


RECORDS_TARGET_ENV = "DUFM_RECORDS_TARGET"


def published_records_dir(start: str | os.PathLike | None = None) -> Path:
    """Where the finished chapters' records are read from (the scorecard page): while the
    runner executes a page, ``$DUFM_RECORDS`` is that page's own staging folder and
    ``$DUFM_RECORDS_TARGET`` the folder the finished chapters' records went to; else
    ``records_dir``."""
    target = os.environ.get(RECORDS_TARGET_ENV)
    return Path(target) if target else records_dir(start)


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
    setting: str,
    facts: dict,
    numbers: dict | None = None,
    directory: str | os.PathLike | None = None,
) -> Path:
    """Record the verdict of one result of the paper (e.g. "Theorem 7", "Figure 6").

    ``verdict`` is one of ``VERDICTS``; ``measured`` one line with the computed numbers behind it;
    ``setting`` one of ``SETTINGS`` (``setting_of`` computes it); ``facts`` a flat dict of what a
    reader needs to judge the verdict (data, model, K, n, L, d, steps, dtype, device, and
    ``"settled"`` where the result rests on training runs); ``numbers`` a flat dict of JSON
    numbers or strings. A verdict drawn from runs (``DRAWN``) is refused while
    ``facts["settled"]`` is False: such a result is "not settled". Returns the file written.
    """
    check_choice("result", result, tuple(key for key, _, _ in RESULTS))
    check_choice("verdict", verdict, VERDICTS)
    entry = {"verdict": verdict, **_entry(measured, setting, facts, numbers)}
    if verdict in DRAWN and entry["facts"].get("settled") is False:
        raise ValueError(
            f"verdict={verdict!r} is not allowed while facts['settled'] is False: the runs "
            f"behind {result} were still moving; record it as 'not settled'"
        )
    return _write(chapter, "results", result, entry, directory)


def record_finding(
    chapter: str,
    title: str,
    *,
    measured: str,
    setting: str,
    facts: dict,
    numbers: dict | None = None,
    directory: str | os.PathLike | None = None,
) -> Path:
    """Record a result the chapter measured that the paper does not state (the second table);
    ``setting`` and ``facts`` as for ``record``."""
    _check_text("title", title)
    return _write(chapter, "findings", title, _entry(measured, setting, facts, numbers), directory)


def parameter_set_name() -> str:
    """The parameter set this process runs under: ``$DUFM_PARAMETER_SET`` (the runner sets it:
    ``ci``, ``book``, ``paper``, or ``custom`` for ``-p`` values and own files), else ``book``
    (a book build executes every chapter at its defaults)."""
    name = os.environ.get(PARAMETER_SET_ENV) or "book"
    return check_choice(PARAMETER_SET_ENV, name, PARAMETER_SETS)


def setting_of(chapter: str, values, *, stand_in: bool = False) -> str:
    """The setting of a chapter run with parameters ``values`` (a mapping, e.g. ``globals()``).

    "stand-in" when ``stand_in`` (other data or another model than the paper's); "paper" when
    every parameter of the chapter's ``paper`` set (``chapters/params/<chapter>.yml``), apart
    from ``EXECUTION_KEYS``, has that value in ``values``; else "reduced".
    """
    if stand_in:
        return "stand-in"
    root = _book_root()
    if root is None:
        raise ValueError(f"no _toc.yml in {Path.cwd()} or above: cannot find {chapter}'s sets")
    paper = parameter_set(root / "chapters" / f"{chapter}.md", "paper")
    missing = object()
    same = all(
        _same(values.get(key, missing), value)
        for key, value in paper.items()
        if key not in EXECUTION_KEYS
    )
    return "paper" if same else "reduced"


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is not object and a == b


def _check_facts(facts: object, name: str = "facts") -> dict:
    if not isinstance(facts, dict):
        raise ValueError(f"{name}={facts!r} is not allowed: must be a flat mapping")
    for key, value in facts.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
            raise ValueError(
                f"{name}[{key!r}]={value!r} is not allowed: must be text, a number or a bool"
            )
        if isinstance(value, float) and value != value:
            raise ValueError(f"{name}[{key!r}]=nan is not allowed: must be a finite number")
    if "settled" in facts and not isinstance(facts["settled"], bool):
        raise ValueError(f"{name}['settled']={facts['settled']!r} is not allowed: must be a bool")
    return facts


def _entry(measured: str, setting: str, facts: dict, numbers: dict | None) -> dict:
    _check_text("measured", measured)
    check_choice("setting", setting, SETTINGS)
    facts = dict(_check_facts(facts))
    numbers = dict(numbers or {})
    for key, value in numbers.items():
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            raise ValueError(f"numbers[{key!r}]={value!r} is not allowed: must be a number or text")
        if isinstance(value, float) and value != value:
            raise ValueError(f"numbers[{key!r}]=nan is not allowed: must be a finite number")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "measured": measured,
        "setting": setting,
        "parameter_set": parameter_set_name(),
        "facts": facts,
        "numbers": numbers,
        "time": stamp,
    }


def source_digest(chapter: str, root: str | os.PathLike) -> str | None:
    """SHA-256 of ``<root>/chapters/<chapter>.md`` (None if there is no such file)."""
    path = Path(root) / "chapters" / f"{chapter}.md"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _book_root(start: str | os.PathLike | None = None) -> Path | None:
    """The folder holding ``_toc.yml``, from ``start`` (default: the current one) upwards."""
    here = Path(start or os.getcwd()).resolve()
    return next((f for f in (here, *here.parents) if (f / "_toc.yml").is_file()), None)


def _write(chapter: str, kind: str, key: str, entry: dict, directory) -> Path:
    _check_text("chapter", chapter)
    folder = Path(directory) if directory is not None else records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    root = _book_root()
    data = {
        "format": FORMAT,
        "chapter": chapter,
        "source_sha256": source_digest(chapter, root) if root else None,
        "results": {},
        "findings": {},
    }
    if chapter in _started and path.is_file():
        data = json.loads(path.read_text())
    _started.add(chapter)
    data[kind][key] = entry
    return write_atomic(path, lambda fh: json.dump(data, fh, indent=1, sort_keys=True), "w")


# ----------------------------------------------------------------------------------------------
# Reading the records (the scorecard page, the intro and the README)
# ----------------------------------------------------------------------------------------------


def _malformed(chapter: str, field: str, why: str) -> ValueError:
    return ValueError(f"record of chapter {chapter!r}: field {field!r} {why}")


def _check_entries(chapter: str, kind: str, entries: object, verdicts: bool) -> dict:
    if not isinstance(entries, dict):
        raise _malformed(chapter, kind, "must be a mapping")
    for key, entry in entries.items():
        where = f"{kind}[{key!r}]"
        if not isinstance(entry, dict):
            raise _malformed(chapter, where, "must be a mapping")
        if verdicts and entry.get("verdict") not in VERDICTS:
            raise _malformed(
                chapter,
                f"{where}.verdict",
                f"is {entry.get('verdict')!r}: must be one of {VERDICTS}",
            )
        if not isinstance(entry.get("measured"), str) or not entry["measured"].strip():
            raise _malformed(chapter, f"{where}.measured", "must be a non-empty string")
        if not isinstance(entry.get("numbers", {}), dict):
            raise _malformed(chapter, f"{where}.numbers", "must be a mapping")
        for field, allowed in (("setting", SETTINGS), ("parameter_set", PARAMETER_SETS)):
            if entry.get(field) not in allowed:
                raise _malformed(
                    chapter,
                    f"{where}.{field}",
                    f"is {entry.get(field)!r}: must be one of {allowed}",
                )
        try:
            _check_facts(entry.get("facts"), f"{where}.facts")
        except ValueError as err:
            raise _malformed(chapter, f"{where}.facts", f"is not valid ({err})") from None
    return entries


def read_records(directory: str | os.PathLike, root: str | os.PathLike | None = None) -> dict:
    """Every chapter's records in ``directory``: {chapter: {"results": ..., "findings": ...}}.

    A record whose ``source_sha256`` differs from the chapter's source ``chapters/<chapter>.md``
    under ``root`` (when both exist) is left out: its chapter changed since it ran, so the
    scorecard shows it as not run. A file that is not valid JSON, or lacks a field, is a
    ValueError naming the chapter and the field.
    """
    folder = Path(directory)
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        chapter = path.stem
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise _malformed(chapter, "(file)", f"is not valid JSON ({path}: {err})") from None
        entries = check_records(chapter, data, path)
        current = source_digest(chapter, root) if root is not None else None
        if current is not None and data.get("source_sha256") != current:
            continue
        out[chapter] = entries
    return out


def check_records(chapter: str, data: object, path: str | os.PathLike = "") -> dict:
    """The ``{"results": ..., "findings": ...}`` of one chapter's records file (parsed JSON
    ``data``), checked field by field: a ValueError names the chapter and the field."""
    if not isinstance(data, dict):
        raise _malformed(chapter, "(file)", f"must hold a mapping ({path})")
    if data.get("format") != FORMAT:
        raise _malformed(chapter, "format", f"is {data.get('format')!r}: must be {FORMAT}")
    if data.get("chapter") != chapter:
        raise _malformed(chapter, "chapter", f"is {data.get('chapter')!r}: must be the file name")
    results = _check_entries(chapter, "results", data.get("results"), verdicts=True)
    findings = _check_entries(chapter, "findings", data.get("findings", {}), verdicts=False)
    return {"results": results, "findings": findings}


def scorecard_rows(records: dict, book_chapters) -> list[dict]:
    """One row per entry of ``RESULTS``: result, chapter, the paper's statement, verdict,
    measured, and what it was measured on (setting, parameter_set, facts; None when not run).

    ``book_chapters`` are the chapter stems in the book (``_toc.yml``): a result whose chapter is
    not among them is "not in the book yet"; one whose chapter left no record, "not run".
    """
    book = set(book_chapters)
    rows = []
    for key, chapter, paper in RESULTS:
        entry = records.get(chapter, {}).get("results", {}).get(key)
        if chapter not in book:
            entry, verdict = None, NOT_IN_BOOK
        else:
            verdict = NOT_RUN if entry is None else entry["verdict"]
        entry = entry or {}
        rows.append(
            {
                "result": key,
                "chapter": chapter,
                "paper": paper,
                "verdict": verdict,
                "measured": entry.get("measured", ""),
                "setting": entry.get("setting"),
                "parameter_set": entry.get("parameter_set"),
                "facts": entry.get("facts", {}),
            }
        )
    return rows


def finding_rows(records: dict) -> list[dict]:
    """The results measured beyond the paper, in chapter order: chapter, title, measured,
    setting, parameter_set, facts."""
    return [
        {
            "chapter": chapter,
            "title": title,
            "measured": entry["measured"],
            "setting": entry["setting"],
            "parameter_set": entry["parameter_set"],
            "facts": entry["facts"],
        }
        for chapter in sorted(records)
        for title, entry in records[chapter]["findings"].items()
    ]


def measured_on(row: dict) -> str:
    """What a row was measured on, in a few words: "reduced sizes, book set; MNIST-5k, mlp"."""
    if row.get("setting") is None:
        return "—"
    facts = row.get("facts") or {}
    what = [str(facts[k]) for k in ("dataset", "model", "backbone") if k in facts]
    text = f"{SETTING_NAMES[row['setting']]}, {row['parameter_set']} set"
    if facts.get("settled") is False:
        text += ", runs still moving"
    return text + (f"; {', '.join(what)}" if what else "")


def count_verdicts(rows: list[dict]) -> dict:
    """How many rows have each verdict (every verdict, NOT_RUN and NOT_IN_BOOK, zeros included)."""
    counts = dict.fromkeys((*VERDICTS, NOT_RUN, NOT_IN_BOOK), 0)
    for row in rows:
        counts[row["verdict"]] += 1
    return counts


def count_settings(rows: list[dict]) -> dict:
    """{verdict: {setting: count}} over the rows with a setting (the summary's brackets)."""
    out: dict = {}
    for row in rows:
        if row.get("setting") is not None:
            by = out.setdefault(row["verdict"], dict.fromkeys(SETTINGS, 0))
            by[row["setting"]] += 1
    return out


def summary_line(counts: dict, settings: dict | None = None) -> str:
    """One sentence with the counts, for the intro and the README's opening line; with
    ``settings`` (``count_settings``), each drawn verdict says how many were measured at the
    paper's setting: "13 reproduced (8 at the paper's setting, 5 reduced or on stand-ins)"."""
    total = sum(counts.values())
    parts = []
    for verdict in (*VERDICTS, NOT_RUN, NOT_IN_BOOK):
        if not counts[verdict]:
            continue
        part = f"{counts[verdict]} {verdict}"
        by = (settings or {}).get(verdict)
        if by and verdict in DRAWN:
            other = by["reduced"] + by["stand-in"]
            if by["paper"] and other:
                part += f" ({by['paper']} at the paper's setting, {other} reduced or on stand-ins)"
            elif by["paper"]:
                part += " (all at the paper's setting)"
            else:
                part += " (all reduced or on stand-ins)"
        parts.append(part)
    return f"Of the paper's {total} numbered results and figures: " + ", ".join(parts) + "."
