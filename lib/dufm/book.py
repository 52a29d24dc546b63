"""The book's structure as the runner and the scorecard read it (``python -m dufm.run``).

- ``parse_value`` and the YAML reader: YAML 1.2 core-schema values for ``-p`` and parameter files
  (a malformed file names the file, the line and the column);
- ``toc_documents``, ``toc_chapters``: the pages and chapters of ``_toc.yml`` in reading order;
- ``parameter_set``: a chapter's ``ci``/``book``/``paper`` set or a user's YAML file;
- ``allowed_parameters``, ``check_parameters``: the names of a chapter's ``parameters`` cell and
  the check of given names against them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill
import yaml

SET_NAMES = ("ci", "book", "paper")
PARAMS_DIR = "params"


# --- YAML values -------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """The YAML 1.2 core schema: ``1e-3`` is a float, ``010`` is 10 and ``08`` is 8 (decimal),
    ``0o17``/``0x1f`` octal/hex; ``1:30``, ``yes``, ``on`` and ``2020-01-01`` stay strings."""

    yaml_implicit_resolvers: dict = {}  # none of PyYAML's YAML 1.1 rules


_CORE = {
    "null": (r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    "bool": (r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    "int": (r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    "float": (
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+0123456789."),
    ),
}
for _tag, (_pattern, _first) in _CORE.items():
    _Loader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), _first
    )


def _core_scalar(kind):
    def construct(loader, node):
        text = loader.construct_scalar(node)
        try:
            if kind == "bool":
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                return text.lower() == "true"
            if kind == "int":
                sign = -1 if text.startswith("-") else 1
                digits = text.lstrip("+-")
                base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
                return sign * int(digits[2:] if base != 10 else digits, base)
            special = text.lower().replace(".inf", "inf").replace(".nan", "nan")
            return float(special if special.lstrip("+-") in ("inf", "nan") else text)
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"{text!r} is not a YAML {kind}", node.start_mark
            ) from None

    return construct


for _kind in ("bool", "int", "float"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_kind}", _core_scalar(_kind))


def _yaml_problem(err: yaml.YAMLError) -> str:
    """``line L, column C: problem`` of a PyYAML error."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _load_yaml(text: str, origin: str = "YAML text") -> Any:
    """Parse YAML (core schema); a syntax error is a ValueError naming ``origin`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise ValueError(f"{origin} is not valid YAML: {_yaml_problem(err)}") from None


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} cannot be read: {err}") from None
    return _load_yaml(text, str(path))


def parse_value(text: str, name: str | None = None) -> Any:
    """Parse a ``-p`` value as YAML 1.2: ``3``, ``1e-3``, ``true``, ``cuda``, ``[1, 2]``.

    An unparseable value (``[3, 4``) is a ValueError naming the parameter ``name``.
    """
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        label = f"-p {name} {text!r}" if name else repr(text)
        raise ValueError(f"{label} is not a valid YAML value: {_yaml_problem(err)}") from None
    return text if value is None and text.strip() not in ("null", "Null", "NULL", "~") else value


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
    toc = _read_yaml(toc_path)
    if not isinstance(toc, Mapping) or "root" not in toc:
        raise ValueError(f"{toc_path}: expected a jupyter-book table of contents with a 'root' key")
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


def _known_chapters(chapter: Path) -> list[str]:
    """Stems of the chapters of the ``_toc.yml`` above ``chapter`` (else of the notebooks in its
    folder): the keys a parameter file keyed by chapter may use."""
    for folder in list(chapter.resolve().parents)[:3]:
        if (folder / "_toc.yml").is_file():
            try:
                return [p.stem for p in toc_chapters(folder)]
            except (ValueError, FileNotFoundError):
                break
    return sorted(p.stem for p in chapter.parent.glob("*.md"))


def _select(mapping: Any, chapter: Path, origin: str) -> dict:
    """A flat mapping applies to every chapter; a mapping of mappings is keyed by chapter stem."""
    if mapping is None:
        raise ValueError(
            f"{origin} is empty: give parameters (steps: 5000) or parameters keyed by chapter "
            "(01_deep_ufm: {steps: 5000})"
        )
    if not isinstance(mapping, Mapping):
        kind = type(mapping).__name__
        raise ValueError(f"{origin}: expected a mapping of parameters, got {kind}")
    if mapping and all(isinstance(v, Mapping) for v in mapping.values()):
        known = _known_chapters(chapter)
        unknown = [str(key) for key in mapping if key not in known]
        if unknown:
            raise ValueError(
                f"{origin}: unknown chapter(s) {', '.join(map(repr, unknown))} (a file keyed by "
                f"chapter needs chapter names as keys); chapters: {', '.join(known)}"
            )
        if chapter.stem not in mapping:
            raise ValueError(
                f"{origin} has no entry for chapter {chapter.stem} (it has: "
                f"{', '.join(map(str, mapping))}); add '{chapter.stem}: {{}}' to run it on its "
                "defaults"
            )
        return dict(mapping[chapter.stem])
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
        sets = _read_yaml(path) or {}
        if not isinstance(sets, Mapping):
            raise ValueError(f"{path}: expected a mapping with keys {', '.join(SET_NAMES)}")
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
    return _select(_read_yaml(path), chapter, str(path))


def _read_chapter(path: Path) -> nbformat.NotebookNode:
    if not path.is_file():
        hint = ""
        with contextlib.suppress(Exception):
            hint = f" (chapters of _toc.yml: {', '.join(p.stem for p in toc_chapters())})"
        raise FileNotFoundError(f"chapter file not found: {path}{hint}")
    if path.suffix not in (".md", ".ipynb"):
        raise ValueError(f"chapter {path} is not allowed: must be a .md or .ipynb notebook")
    try:
        return jupytext.read(path)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad input file
        raise ValueError(f"chapter {path} cannot be read as a notebook: {err}") from None


def unreadable_parameter_lines(source: str) -> list[tuple[int, str]]:
    """(line number, line) of each line of a ``parameters`` cell that papermill cannot read.

    papermill's parser skips, with only a logged warning, every line holding more than one
    ``=`` (e.g. ``x = 1  # x >= 0``), so that name would silently stop being a parameter.
    """
    return [
        (number, line)
        for number, line in enumerate(source.splitlines(), 1)
        if not line.strip().startswith("#") and line.count("=") > 1
    ]


def _parameters_source(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell.source
    return ""


def allowed_parameters(nb: nbformat.NotebookNode) -> dict:
    """Names (and papermill's inferred type/default/help) in the cell tagged ``parameters``.

    Raises ValueError if a line of that cell cannot be read by papermill
    (``unreadable_parameter_lines``), instead of leaving its name out."""
    bad = unreadable_parameter_lines(_parameters_source(nb))
    if bad:
        number, line = bad[0]
        raise ValueError(
            f"parameters cell, line {number} {line.strip()!r} is not allowed: it holds more "
            "than one '=', which papermill cannot read (keep '=' out of its comment)"
        )
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
