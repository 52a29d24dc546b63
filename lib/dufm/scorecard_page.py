"""The scorecard page, the intro's summary and the README's line, drawn from the records.

``chapters/scorecard.md`` shows ``summary_table`` (one row a result: coloured verdict badges for
the book set of this build and for the kept paper-set run, what each was measured on, the
chapter), then ``result_details`` (a dropdown a result: the paper's statement with its math, and
the measured numbers) and ``findings_table``. The text is MyST Markdown, rendered by the page's
``Markdown`` outputs (``nb_render_markdown_format: myst`` in ``_config.yml``), so badges and
math render as in any chapter. ``python -m dufm.scorecard_page readme`` rewrites the README's
scorecard, the summary line and both verdict columns (``make book`` runs it).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .archive import kept_rows, read_kept
from .book import toc_chapters
from .scorecard import (
    NOT_IN_BOOK,
    NOT_RUN,
    VERDICTS,
    _book_root,
    count_settings,
    count_verdicts,
    measured_on,
    read_records,
    scorecard_rows,
    summary_line,
)

# sphinx-design badge colours: agreement green, more than the paper blue, disagreement red, a
# failure to show the claim amber; the two verdicts that draw nothing and "not run" grey.
BADGES = {
    "reproduced": "success",
    "sharper": "primary",
    "contradicted": "danger",
    "not reproduced": "warning",
    "not settled": "secondary-line",
    "not tested here": "dark",
    NOT_RUN: "light",
    NOT_IN_BOOK: "light",
    "stale": "light",  # a kept paper-set run whose chapter changed since (dufm.archive)
}
BOOK_COLUMN, KEPT_COLUMN = "book set (this build)", "paper set (kept run)"


def badge(verdict: str) -> str:
    """The MyST badge of a verdict, e.g. ``{bdg-success}`reproduced```."""
    return f"{{bdg-{BADGES[verdict]}}}`{verdict}`"


_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#$~])")


def plain(text: str) -> str:
    """``text`` escaped so that MyST shows it as written (measured numbers, file names)."""
    return _SPECIAL.sub(r"\\\1", str(text))


def _cell(row: dict | None) -> str:
    """A verdict cell, one line: the badge, then the setting and the parameter set ("reduced,
    book"), with the data and the model on hover, or in a few words why there is no verdict;
    the dropdowns below say the rest."""
    if row is None:
        return badge(NOT_RUN)
    if row.get("note"):
        short = row.get("short", row["note"])  # the table's few words; the dropdown has all
        return f"{badge(row['verdict'])} {plain(short)}".rstrip()
    if not row.get("setting"):
        return badge(row["verdict"])
    short = f"{row['setting']}, {row['parameter_set']}"
    facts = row.get("facts") or {}
    what = [str(facts[k]) for k in ("dataset", "data", "backbone", "model") if k in facts]
    if not what:
        return f"{badge(row['verdict'])} {plain(short)}"
    # the data and the model on hover (an abbreviation), and in the result's dropdown
    hover = "; ".join(what).replace("`", "'")
    return f"{badge(row['verdict'])} {{abbr}}`{short} ({hover})`"


def _chapter_link(chapter: str | None) -> str:
    return f"{{doc}}`{int(chapter[:2])} <{chapter}>`" if chapter else "—"


def summary_table(rows: list[dict], kept: dict | None = None) -> str:
    """The page's first table: result, the book set's verdict, the kept paper-set run's verdict
    (``kept``: {result: row}, when given), chapter. MyST Markdown."""
    head = ["result", BOOK_COLUMN] + ([KEPT_COLUMN] if kept is not None else []) + ["chapter"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{{ref}}`{row['result']} <{_anchor(row['result'])}>`", _cell(row)]
        if kept is not None:
            cells.append(_cell(kept.get(row["result"])))
        cells.append(_chapter_link(row["chapter"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _anchor(result: str) -> str:
    return "result-" + re.sub(r"[^a-z0-9]+", "-", result.lower()).strip("-")


def result_details(rows: list[dict], kept: dict | None = None) -> str:
    """One dropdown per result: the paper's statement (math rendered), the measured numbers of
    the book set and of the kept paper-set run, and what each was measured on."""
    blocks = []
    for row in rows:
        body = [f"**The paper:** {row['paper']}.", ""]
        for title, entry in ((BOOK_COLUMN, row), (KEPT_COLUMN, (kept or {}).get(row["result"]))):
            if title == KEPT_COLUMN and kept is None:
                continue
            if entry is None or not entry.get("measured"):
                why = (entry or {}).get("note") or (entry or {}).get("verdict") or NOT_RUN
                body += [f"**{title}:** {plain(why)}", ""]
                continue
            facts = ", ".join(f"{k} = {v}" for k, v in sorted(entry.get("facts", {}).items()))
            body += [
                f"**{title}:** {badge(entry['verdict'])} {plain(entry['measured'])}",
                "",
                f"*Measured on* {plain(measured_on(entry))}"
                + (f" ({plain(facts)})" if facts else ""),
                "",
            ]
        blocks.append(
            f"({_anchor(row['result'])})=\n"
            f":::{{dropdown}} {row['result']}: {row['verdict']}\n" + "\n".join(body) + "\n:::\n"
        )
    return "\n".join(blocks)


def findings_table(findings: list[dict]) -> str:
    """The results measured beyond the paper: chapter, finding, measured, measured on."""
    lines = ["| chapter | finding | measured | measured on |", "|---|---|---|---|"]
    for f in findings:
        lines.append(
            f"| {_chapter_link(f['chapter'])} | {plain(f['title'])} | {plain(f['measured'])} | "
            f"{plain(measured_on(f))} |"
        )
    return "\n".join(lines)


def verdict_badges(rows: list[dict]) -> str:
    """Each verdict's count after its badge, on one line: "{bdg-success}`reproduced` 12 ..."."""
    counts = count_verdicts(rows)
    return " ".join(f"{badge(v)} {counts[v]}" for v in (*VERDICTS, NOT_RUN) if counts[v])


def summary_badges(rows: list[dict]) -> str:
    """The intro's summary: the summary line, then each verdict's count as its badge."""
    line = summary_line(count_verdicts(rows), count_settings(rows))
    return f"{line}\n\n{verdict_badges(rows)}"


# --- the README's line ------------------------------------------------------------------------

README_MARKERS = ("<!-- scorecard -->", "<!-- /scorecard -->")


def update_readme(readme: str | os.PathLike, line: str) -> bool:
    """Replace the text between ``README_MARKERS`` in ``readme`` by ``line``; True if it changed."""
    path = Path(readme)
    text = path.read_text()
    start, end = (re.escape(m) for m in README_MARKERS)
    pattern = re.compile(f"{start}.*?{end}", flags=re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {README_MARKERS[0]} ... {README_MARKERS[1]} line")
    new = pattern.sub(lambda _: f"{README_MARKERS[0]}{line}{README_MARKERS[1]}", text, count=1)
    if new != text:
        path.write_text(new)
    return new != text


def _text_cell(row: dict | None) -> str:
    """A verdict in plain text for the README: "reproduced (reduced, book set)"."""
    if row is None:
        return NOT_RUN
    if row.get("note"):
        return row["note"]
    if not row.get("setting"):
        return row["verdict"]
    return f"{row['verdict']} ({row['setting']}, {row['parameter_set']} set)"


def kept_line(kept: dict) -> str:
    """The kept paper-set runs in one sentence: "The kept runs at the paper's own sizes (make
    paper): 9 reproduced, 5 sharper, 4 not run." (``kept``: ``dufm.archive.kept_rows``)."""
    order = [*VERDICTS, "stale", NOT_RUN]
    counts = {v: 0 for v in order}
    for row in kept.values():
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    parts = [f"{n} {v}" for v, n in counts.items() if n]
    return "The kept runs at the paper's own sizes (`make paper`): " + ", ".join(parts) + "."


def readme_text(rows: list[dict], kept: dict) -> str:
    """The README's scorecard: the summary line of the book set, then one row a result with
    the book set's verdict and the kept paper-set run's, each with its setting."""
    lines = [
        summary_line(count_verdicts(rows), count_settings(rows)),
        "",
        kept_line(kept),
        "",
        f"| result | {BOOK_COLUMN} | {KEPT_COLUMN} |",
        "|---|---|---|",
    ]
    for row in rows:
        cells = [row["result"], _text_cell(row), _text_cell(kept.get(row["result"]))]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n" + "\n".join(lines) + "\n"


def book_readme(root: str | os.PathLike, directory: str | os.PathLike | None = None) -> str:
    """``readme_text`` of the book at ``root``: this build's records and the kept runs."""
    rows = _book_rows(root, directory)
    chapters = [c.stem for c in toc_chapters(Path(root))]
    return readme_text(rows, kept_rows(read_kept(root, chapters), rows))


def book_badges(root: str | os.PathLike, directory: str | os.PathLike | None = None) -> str:
    """The intro's summary (``summary_badges``) of the records of the book at ``root``."""
    return summary_badges(_book_rows(root, directory))


def _book_rows(root, directory) -> list[dict]:
    root = Path(root)
    folder = Path(directory) if directory is not None else root / "_build" / "records"
    return scorecard_rows(read_records(folder, root), [c.stem for c in toc_chapters(root)])


def main(argv=None) -> int:
    """``python -m dufm.scorecard_page readme``: rewrite the README's scorecard (the summary
    line and both verdict columns) from this build's records and the kept paper-set runs."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["readme"]:
        print("usage: python -m dufm.scorecard_page readme", file=sys.stderr)
        return 2
    root = _book_root()
    if root is None:
        print("error: no _toc.yml here or above: run from the book's folder", file=sys.stderr)
        return 2
    try:
        text = book_readme(root)
        changed = update_readme(root / "README.md", text)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(("updated" if changed else "unchanged") + " README.md: " + text.splitlines()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
