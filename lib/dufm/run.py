"""Run the book's chapters through papermill with checked parameters (``python -m dufm.run``).

Serves the "rerun a chapter" recipe (README, intro page) and ``tests/test_chapters.py``.

A chapter is a jupytext MyST notebook (``chapters/<stem>.md``) with one cell tagged
``parameters``. The runner converts it with jupytext, checks each given name against the names
papermill finds in that cell, executes it with papermill in the chapter's folder, and writes
``<out>/<stem>.ipynb`` atomically: a failed or interrupted run never replaces a good earlier
result (a failed run's partial notebook is kept as ``<out>/<stem>.failed.ipynb``).

Parameter sets (``--params``): ``book`` is the notebook's own defaults; ``ci`` and ``paper`` are
read from ``chapters/params/<stem>.yml`` (top-level keys ``ci``, ``paper``, optionally ``book``);
a path to a YAML file gives either one flat mapping for every chapter or a mapping keyed by
chapter stem. ``-p NAME VALUE`` overrides single values on top of the set.

Examples::

    python -m dufm.run chapters/01_deep_ufm.md -p steps 20000 -p device cuda --out runs/
    python -m dufm.run --params paper --device cuda --out runs/
    python -m dufm.run chapters/05_dnc_prevalence.md --scheduler tcp://host:8786
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill
import yaml
from papermill.exceptions import PapermillExecutionError

SET_NAMES = ("ci", "book", "paper")
PARAMS_DIR = "params"
SOURCE_LINES = 6

__all__ = [
    "SET_NAMES",
    "ChapterError",
    "allowed_parameters",
    "check_parameters",
    "execute_chapter",
    "main",
    "parameter_set",
    "parse_value",
    "toc_chapters",
    "toc_documents",
]


class ChapterError(RuntimeError):
    """A chapter failed to execute: names the chapter, the cell, its first lines and the error."""

    def __init__(self, chapter, cell_index, source, ename, evalue, partial=None, exec_count=None):
        self.chapter, self.cell_index, self.source = chapter, cell_index, source
        self.ename, self.evalue, self.partial = ename, evalue, partial
        self.exec_count = exec_count
        super().__init__(self._message())

    def _message(self) -> str:
        where = "execution"
        if self.cell_index is not None:
            where = f"cell {self.cell_index} of the executed notebook"
            where = f"In [{self.exec_count}] ({where})" if self.exec_count else where
        lines = [f"chapter {self.chapter}: {where} failed with {self.ename}: {self.evalue}"]
        if self.source:
            src = self.source.splitlines()
            shown = src[:SOURCE_LINES] + (["..."] if len(src) > SOURCE_LINES else [])
            lines += ["failing cell:"] + ["    " + line for line in shown]
        if self.partial is not None:
            lines.append(f"partial output: {self.partial}")
        return "\n".join(lines)


# --- YAML values -------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot, YAML 1.2 style) as a float."""


_FLOAT = re.compile(
    r"^[-+]?(?:\d[\d_]*)?\.?\d*(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def parse_value(text: str) -> Any:
    """Parse a ``-p`` value as YAML: ``3``, ``1e-3``, ``true``, ``cuda``, ``[1, 2]``."""
    value = _load_yaml(text)
    return text if value is None and text.strip() not in ("null", "~", "None") else value


# --- chapters and parameter sets ---------------------------------------------------------------


def _toc_files(entries) -> list[str]:
    """All ``file:`` entries of a jupyter-book toc subtree, in reading order."""
    files = []
    for entry in entries or []:
        if "file" in entry:
            files.append(entry["file"])
        for key in ("parts", "chapters", "sections"):
            files += _toc_files(entry.get(key))
    return files


def _resolve_doc(root: Path, name: str) -> Path | None:
    for suffix in ("", ".md", ".ipynb"):
        path = root / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def toc_documents(root: str | os.PathLike = ".") -> list[str]:
    """Document names in ``<root>/_toc.yml`` (root page first), in reading order."""
    toc_path = Path(root) / "_toc.yml"
    if not toc_path.is_file():
        raise FileNotFoundError(f"no _toc.yml in {Path(root).resolve()}: give chapter paths")
    toc = _load_yaml(toc_path.read_text())
    body = [{"parts": toc.get("parts"), "chapters": toc.get("chapters")}]
    return [toc["root"], *_toc_files(body)]


def toc_chapters(root: str | os.PathLike = ".") -> list[Path]:
    """Chapters (pages with a kernelspec) listed in ``<root>/_toc.yml``, in reading order."""
    root = Path(root)
    chapters = []
    for name in toc_documents(root)[1:]:
        path = _resolve_doc(root, name)
        if path is None:
            raise FileNotFoundError(f"_toc.yml lists {name!r} but no such file exists in {root}")
        if "kernelspec" in jupytext.read(path).metadata:
            chapters.append(path)
    return chapters


def _select(mapping: Mapping, stem: str, origin: str) -> dict:
    """A flat mapping applies to every chapter; a mapping of mappings is keyed by chapter stem."""
    if not isinstance(mapping, Mapping):
        kind = type(mapping).__name__
        raise ValueError(f"{origin}: expected a mapping of parameters, got {kind}")
    if mapping and all(isinstance(v, Mapping) for v in mapping.values()):
        return dict(mapping.get(stem) or {})
    return dict(mapping)


def parameter_set(chapter_path: str | os.PathLike, name_or_file: str) -> dict:
    """Parameters of set ``ci``/``book``/``paper`` (or of a YAML file) for one chapter."""
    chapter = Path(chapter_path)
    if name_or_file in SET_NAMES:
        path = chapter.parent / PARAMS_DIR / f"{chapter.stem}.yml"
        if not path.is_file():
            if name_or_file == "book":
                return {}
            raise FileNotFoundError(f"set {name_or_file!r} of {chapter.stem}: no file {path}")
        sets = _load_yaml(path.read_text()) or {}
        if name_or_file not in sets and name_or_file != "book":
            raise ValueError(f"{path} has no {name_or_file!r} key (found: {', '.join(sets)})")
        chosen = sets.get(name_or_file) or {}
        if not isinstance(chosen, Mapping):
            raise ValueError(f"{path}: {name_or_file!r} must be a mapping of parameters")
        return dict(chosen)
    path = Path(name_or_file)
    if path.suffix not in (".yml", ".yaml"):
        raise ValueError(
            f"unknown parameter set {name_or_file!r}: use one of {', '.join(SET_NAMES)} "
            "or a path to a .yml file"
        )
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    return _select(_load_yaml(path.read_text()) or {}, chapter.stem, str(path))


# --- execution ---------------------------------------------------------------------------------


def _read_chapter(path: Path) -> nbformat.NotebookNode:
    if not path.is_file():
        raise FileNotFoundError(f"chapter file not found: {path}")
    return jupytext.read(path)


def allowed_parameters(nb: nbformat.NotebookNode) -> dict:
    """Names (and papermill's inferred type/default/help) in the cell tagged ``parameters``."""
    logger = logging.getLogger("papermill")
    level = logger.level
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chapter.ipynb"
        nbformat.write(nb, path)
        logger.setLevel(logging.WARNING)  # no "Input Notebook: /tmp/..." line
        try:
            return papermill.inspect_notebook(path)
        finally:
            logger.setLevel(level)


def check_parameters(chapter: str, nb: nbformat.NotebookNode, parameters: Mapping) -> None:
    """Raise ValueError naming the chapter, any unknown names and the allowed names."""
    allowed = allowed_parameters(nb)
    unknown = [name for name in parameters if name not in allowed]
    if unknown:
        listed = ", ".join(allowed) if allowed else "none (no cell tagged 'parameters')"
        raise ValueError(
            f"chapter {chapter}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {listed}"
        )


def _chapter_error(stem: str, err: Exception, partial: Path) -> ChapterError:
    if isinstance(err, PapermillExecutionError):
        return ChapterError(
            stem, err.cell_index, err.source, err.ename, err.evalue, partial, err.exec_count
        )
    return ChapterError(stem, None, "", type(err).__name__, str(err).strip(), partial)


def execute_chapter(
    path: str | os.PathLike,
    parameters: Mapping | None = None,
    out_dir: str | os.PathLike = "runs",
    kernel_name: str = "python3",
) -> Path:
    """Execute one chapter with papermill; return ``<out_dir>/<stem>.ipynb``.

    Raises ValueError for an unknown parameter name and ChapterError when a cell fails (the
    partial notebook is then at ``<out_dir>/<stem>.failed.ipynb``; an earlier ``<stem>.ipynb``
    is left untouched).
    """
    path, parameters = Path(path), dict(parameters or {})
    nb = _read_chapter(path)
    check_parameters(path.stem, nb, parameters)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final, failed = out / f"{path.stem}.ipynb", out / f"{path.stem}.failed.ipynb"
    fd, tmp_name = tempfile.mkstemp(dir=out, prefix=f".{path.stem}.", suffix=".tmp.ipynb")
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)
    try:
        papermill.execute_notebook(
            nb,
            str(tmp),
            parameters=parameters,
            cwd=str(path.resolve().parent),
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=True,
        )
    except Exception as err:
        _keep_partial(tmp, failed)
        raise _chapter_error(path.stem, err, failed if failed.exists() else None) from None
    except BaseException:  # KeyboardInterrupt, SystemExit: drop the half-written file
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    failed.unlink(missing_ok=True)
    return final


def _keep_partial(tmp: Path, failed: Path) -> None:
    """Move a failed run's partial notebook to ``failed`` (drop it if papermill wrote nothing)."""
    if tmp.stat().st_size:
        os.replace(tmp, failed)
    else:
        tmp.unlink()
        failed.unlink(missing_ok=True)


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dufm.run",
        description="Execute book chapters through papermill with checked parameters.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "chapters", nargs="*", type=Path, help="chapter .md files (default: all in _toc.yml)"
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override one parameter; VALUE is read as YAML (3, 1e-3, true, cuda, [1, 2])",
    )
    parser.add_argument("--device", help="shorthand for -p device DEV")
    parser.add_argument(
        "--scheduler", help="shorthand for -p scheduler ADDR (local, or tcp://host:8786)"
    )
    parser.add_argument("--params", default="book", help="ci | book | paper | FILE.yml")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="output folder")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    return parser


def _plan(args: argparse.Namespace) -> list[tuple[Path, dict]]:
    """Chapters with their parameters, all checked before anything runs."""
    chapters = args.chapters or toc_chapters(Path.cwd())
    overrides = {name: parse_value(value) for name, value in args.parameter}
    if args.device is not None:
        overrides["device"] = args.device
    if args.scheduler is not None:
        overrides["scheduler"] = args.scheduler
    plan = []
    for chapter in chapters:
        parameters = {**parameter_set(chapter, args.params), **overrides}
        check_parameters(chapter.stem, _read_chapter(chapter), parameters)
        plan.append((chapter, parameters))
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0: every chapter ran)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        plan = _plan(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failures = 0
    for chapter, parameters in plan:
        print(f"== {chapter.stem} with {parameters or 'its defaults'}", file=sys.stderr)
        try:
            print(execute_chapter(chapter, parameters, args.out, args.kernel))
        except ChapterError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
        except KeyboardInterrupt:
            print(f"interrupted in {chapter.stem}; earlier results kept", file=sys.stderr)
            return 130
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
