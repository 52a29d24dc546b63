"""What a failed chapter run reports (``dufm.run``): the chapter, the cell, its first lines and
the error, in one message; a value rejected by the chapter's own parameter check is a usage
error of its own kind (``ParameterRejected``), since nothing was computed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from papermill.exceptions import PapermillExecutionError

SOURCE_LINES = 6


class ChapterError(RuntimeError):
    """A chapter failed to execute: names the chapter, the cell, its first lines and the error."""

    def __init__(
        self,
        chapter,
        cell_index,
        source,
        ename,
        evalue,
        partial=None,
        exec_count=None,
        kernel_traceback=(),
    ):
        self.chapter, self.cell_index, self.source = chapter, cell_index, source
        self.ename, self.evalue, self.partial = ename, evalue, partial
        self.exec_count = exec_count
        self.kernel_traceback = list(kernel_traceback or ())
        self.partial_note = ""
        super().__init__(self._message())

    def without_partial(self, why: str) -> ChapterError:
        """The same error, saying why no partial notebook was kept (``why``)."""
        self.partial, self.partial_note = None, why
        self.args = (self._message(),)
        return self

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
        elif self.partial_note:
            lines.append(self.partial_note)
        return "\n".join(lines)


class ParameterRejected(ChapterError):
    """The chapter's own parameter check (the cell after ``parameters``) rejected a value: a usage
    error, reported in one line; nothing was computed and no partial notebook is kept."""

    def _message(self) -> str:
        return f"chapter {self.chapter}: parameter rejected: {self.evalue}"


def _check_cell_index(path: Path) -> int | None:
    """Index (in an executed notebook) of the first code cell after the ``parameters`` cell and
    papermill's ``injected-parameters`` cell: where a chapter checks its parameters."""
    try:
        cells = nbformat.read(path, as_version=4).cells
    except Exception:  # noqa: BLE001 - an unreadable partial notebook: no usage verdict
        return None
    marker = "papermill-error-cell-tag"  # cells papermill adds to a failed notebook
    cells = [c for c in cells if marker not in c.metadata.get("tags", [])]
    tagged = [
        i
        for i, c in enumerate(cells)
        if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))
    ]
    if not tagged:
        return None
    after = [i for i in range(tagged[-1] + 1, len(cells)) if cells[i].cell_type == "code"]
    return after[0] if after else None


def _chapter_error(stem: str, err: Exception, partial: Path | None) -> ChapterError:
    if isinstance(err, PapermillExecutionError):
        args = (stem, err.cell_index, err.source, err.ename, err.evalue)
        if (
            err.ename == "ValueError"
            and partial is not None
            and err.cell_index == _check_cell_index(partial)
        ):
            partial.unlink(missing_ok=True)  # nothing was computed: the message says it all
            return ParameterRejected(*args, None, err.exec_count, err.traceback)
        return ChapterError(*args, partial, err.exec_count, err.traceback)
    return ChapterError(stem, None, "", type(err).__name__, str(err).strip(), partial)
