"""The chapters' code style: every code cell formatted by ruff at 88 columns, at most 40 lines.

``python -m dufm.style --check chapters/*.md`` (``make lint``) lists each cell longer than 40
lines or with a line wider than 88 columns, and each cell ruff would reformat; without
``--check`` it reformats the cells in place. Only the code of the cells changes: the file's front
matter, its Markdown and the cells' options stay byte for byte (``jupytext --pipe`` would rewrite
the front matter).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext

from .book import unreadable_parameter_lines

MAX_LINES, MAX_COLUMNS = 40, 88


def _ruff() -> str:
    here = Path(sys.executable).with_name("ruff")
    return str(here) if here.is_file() else (shutil.which("ruff") or "ruff")


def format_source(source: str) -> str:
    """``source`` formatted by ``ruff format --line-length 88`` (unchanged if ruff cannot parse
    it, e.g. a cell with IPython magics)."""
    proc = subprocess.run(
        [_ruff(), "format", "--line-length", str(MAX_COLUMNS), "--quiet", "-"],
        input=source,
        capture_output=True,
        text=True,
    )
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else source


def problems(path: str | Path, formatted: bool = True) -> list[str]:
    """What breaks the style in the chapter at ``path``: long cells, wide lines and (with
    ``formatted``) cells that ruff would reformat."""
    out = []
    cells = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
    for number, cell in enumerate(cells, 1):
        lines = cell.source.splitlines()
        if len(lines) > MAX_LINES:
            out.append(f"code cell {number} has {len(lines)} lines (at most {MAX_LINES})")
        out += [
            f"code cell {number}, line {i}: {len(line)} columns (at most {MAX_COLUMNS})"
            for i, line in enumerate(lines, 1)
            if len(line) > MAX_COLUMNS
        ]
        if "parameters" in cell.metadata.get("tags", []):
            out += [
                f"code cell {number} (parameters), line {i}: more than one '=' "
                "(papermill cannot read the line)"
                for i, _ in unreadable_parameter_lines(cell.source)
            ]
        if formatted and format_source(cell.source) != cell.source.rstrip("\n"):
            out.append(f"code cell {number} is not formatted (python -m dufm.style {path})")
    return out


def format_chapter(path: str | Path) -> bool:
    """Reformat the code cells of the chapter at ``path`` in place; True if the file changed."""
    path = Path(path)
    text = path.read_text()
    pieces, at = [], 0
    for cell in jupytext.read(path).cells:
        source = cell.source.rstrip("\n")
        if cell.cell_type != "code" or not source:
            continue
        start = text.index(source, at)
        pieces += [text[at:start], format_source(source)]
        at = start + len(source)
    new = "".join(pieces) + text[at:]
    if new != text:
        path.write_text(new)
    return new != text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dufm.style", description=__doc__)
    parser.add_argument("chapters", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="report, change nothing")
    args = parser.parse_args(argv)
    status = 0
    for path in args.chapters:
        if args.check:
            for problem in problems(path):
                print(f"{path}: {problem}")
                status = 1
        elif format_chapter(path):
            print(f"formatted {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
