"""Run the book's chapters through papermill with checked parameters (``python -m dufm.run``).

Serves the "rerun a chapter" recipe (README, intro page) and ``tests/test_chapters.py``.

A chapter is a jupytext MyST notebook (``chapters/<stem>.md``) with one cell tagged
``parameters``. The runner converts it with jupytext, checks each given name against the names
papermill finds in that cell, executes it with papermill in the chapter's folder, and writes
``<out>/<stem>.ipynb`` atomically: a failed or interrupted run never replaces a good earlier
result (a failed run's partial notebook is kept as ``<out>/<stem>.failed.ipynb`` when it was
written whole; one cut short, e.g. by a full disk, is dropped and the error says so). A run holds
``<out>/.<stem>.lock`` (its process id) while it runs: a second run of the same chapter into the
same folder stops at once with one line naming the first (a lock left by a killed run is
cleared). ``--params paper --archive`` also keeps each chapter's finished run in
``results/paper/`` (``dufm.archive``; ``make paper``).

Parameter sets (``--params``): ``book`` is the notebook's own defaults; ``ci`` and ``paper`` are
read from ``chapters/params/<stem>.yml`` (top-level keys ``ci``, ``paper``, optionally ``book``);
a path to a YAML file gives either one flat mapping for every chapter or a mapping keyed by
chapter stem (every key a chapter of ``_toc.yml``, and an entry for each chapter run).
``-p NAME VALUE`` overrides single values on top of the set. Values are read with the YAML 1.2
core schema (``010`` is 10, ``1:30`` and ``yes`` are strings).

Bad input is a one-line ``error:`` and exit status 2 before anything runs (a chapter's own check
of its values, in the cell after its ``parameters`` cell, also ends with status 2); a failed
chapter gives status 1, an interrupt (Ctrl-C: 130, SIGTERM: 143, SIGHUP: 129) leaves the
earlier results as they were and no temporary file. ``--debug`` shows the tracebacks.

Examples::

    python -m dufm.run chapters/01_deep_ufm.md -p steps 20000 -p device cuda --out runs/
    python -m dufm.run --params paper --device cuda --out runs/
    python -m dufm.run chapters/05_dnc_prevalence.md --scheduler tcp://host:8786
    python -m dufm.run --params paper --archive        # what make paper runs
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat
import papermill

from . import archive
from .book import (
    SET_NAMES,
    _read_chapter,
    allowed_parameters,
    check_parameters,
    parameter_set,
    parse_value,
    toc_chapters,
    toc_documents,
)
from .failures import ChapterError, ParameterRejected, _chapter_error
from .files import LockHeld, hold_lock, new_temp_file, stale_temp_files, write_atomic
from .progress import drop_progress_frames
from .scorecard import (
    EXECUTION_KEYS,
    PARAMETER_SET_ENV,
    PARAMETER_SETS,
    RECORDS_TARGET_ENV,
    _book_root,
)
from .validation import check_choice

__all__ = [
    "SET_NAMES",
    "ChapterError",
    "ParameterRejected",
    "allowed_parameters",
    "check_parameters",
    "execute_chapter",
    "main",
    "parameter_set",
    "parse_value",
    "toc_chapters",
    "toc_documents",
]


# --- execution ---------------------------------------------------------------------------------

RECORDS_SUFFIX = ".records.tmp"  # a running chapter's records: <out>/.<stem>.<pid>.records.tmp/


def _kernel_arguments(kernel_name: str) -> list[str]:
    """Quiet an IPython kernel's own log (the shutdown's "KeyboardInterrupt caught in kernel",
    the TCP notice): the chapter's output and errors come through the notebook, not this log."""
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    except Exception:  # noqa: BLE001 - unknown kernel: papermill reports it
        return []
    return ["--IPKernelApp.log_level=CRITICAL"] if any("ipykernel" in a for a in argv) else []


def check_out_dir(out: str | os.PathLike) -> Path:
    """Raise ValueError unless ``out`` is a writable folder or can be created as one."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out {out} is not allowed: it is an existing file, not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out} is not allowed: the folder is not writable")
        return out
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ValueError(f"--out {out} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} cannot be created: {parent} is not writable")
    return out


def execute_chapter(
    path: str | os.PathLike,
    parameters: Mapping | None = None,
    out_dir: str | os.PathLike = "runs",
    kernel_name: str = "python3",
    parameter_set_name: str = "custom",
) -> Path:
    """Execute one chapter with papermill; return ``<out_dir>/<stem>.ipynb``.

    ``parameter_set_name`` (``ci``, ``book``, ``paper`` or ``custom``) is what the chapter's
    scorecard records say they ran under (``$DUFM_PARAMETER_SET`` in the kernel).

    Raises ValueError for an unknown parameter name or an unusable ``out_dir``,
    ``ParameterRejected`` when the chapter's own check rejects a value, and ChapterError when a
    cell fails (the partial notebook is then at ``<out_dir>/<stem>.failed.ipynb``). An earlier
    ``<stem>.ipynb`` and the chapter's earlier scorecard records are left untouched by every
    failure and interrupt: records reach ``<out_dir>/records`` (or ``$DUFM_RECORDS``) only when
    the whole chapter ran. Temporary files that a killed run of the same chapter left in
    ``out_dir`` are removed.
    """
    path, parameters = Path(path), dict(parameters or {})
    check_choice("parameter_set_name", parameter_set_name, PARAMETER_SETS)
    nb = _read_chapter(path)
    check_parameters(path.stem, nb, parameters)
    out = check_out_dir(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out} cannot be created: {err.strerror}") from None
    for target in (out / f"{path.stem}.ipynb", out / f"{path.stem}.failed.ipynb"):
        if target.is_dir():
            raise ValueError(f"--out {out} is not allowed: {target} is a folder, not a notebook")
    try:
        with hold_lock(out / f".{path.stem}.lock"):
            return _execute(path, nb, parameters, out, kernel_name, parameter_set_name)
    except LockHeld as err:
        raise ValueError(
            f"--out {out}: another run of chapter {path.stem} is writing there (process "
            f"{err.pid}, lock file {err.path}); wait for it to end or use another --out"
        ) from None


def _execute(path, nb, parameters, out, kernel_name, parameter_set_name) -> Path:
    """``execute_chapter`` once the chapter's lock in ``out`` is held."""
    final, failed = out / f"{path.stem}.ipynb", out / f"{path.stem}.failed.ipynb"
    prefix, suffix = f".{path.stem}.", ".tmp.ipynb"
    for stale in stale_temp_files(out, prefix, suffix):
        stale.unlink(missing_ok=True)
    for stale in stale_temp_files(out, prefix, RECORDS_SUFFIX):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = new_temp_file(out, prefix, suffix)
    try:
        stage = out / f"{prefix}{os.getpid()}{RECORDS_SUFFIX}"
        with (
            _records_in(records_target(out), stage),
            _environment(PARAMETER_SET_ENV, parameter_set_name),
        ):
            papermill.execute_notebook(
                nb,
                str(tmp),
                parameters=parameters,
                cwd=str(path.resolve().parent),
                kernel_name=kernel_name,
                progress_bar=False,
                log_output=True,
                extra_arguments=_kernel_arguments(kernel_name),
            )
    except Exception as err:
        why = _keep_partial(tmp, failed)
        error = _chapter_error(path.stem, err, failed if failed.exists() else None)
        raise (error.without_partial(why) if why else error) from None
    except BaseException:  # KeyboardInterrupt, SIGTERM, SystemExit: drop the half-written file
        tmp.unlink(missing_ok=True)
        raise
    try:
        _drop_frames(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)  # gone after a successful replace; never left behind
    failed.unlink(missing_ok=True)
    return final


def _drop_frames(path: Path) -> None:
    """The kept notebook without progress-bar frames (the log had them; a page shows none),
    and with papermill's injected-parameters cell shown as the chapter shows its own
    ``parameters`` cell (a page that removes that cell removes the injected one too)."""
    nb = nbformat.read(path, as_version=4)
    changed = drop_progress_frames(nb) > 0
    tags = [set(c.metadata.get("tags", [])) for c in nb.cells]
    shown = next((t for t in tags if "parameters" in t), set())
    display = {t for t in shown if t.startswith(("remove-", "hide-"))}
    for cell, cell_tags in zip(nb.cells, tags, strict=True):
        if "injected-parameters" in cell_tags and display - cell_tags:
            cell.metadata["tags"] = sorted(cell_tags | display)
            changed = True
    if changed:
        nbformat.write(nb, path)


@contextlib.contextmanager
def _environment(name: str, value: str):
    """``os.environ[name] = value`` inside the block (the kernel inherits it), restored after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def records_target(out_dir: str | os.PathLike) -> Path:
    """Where a finished chapter's records go: ``$DUFM_RECORDS``, else ``<out_dir>/records``."""
    return Path(os.environ.get("DUFM_RECORDS") or Path(out_dir) / "records")


@contextlib.contextmanager
def _records_in(target: Path, stage: Path):
    """The chapter's scorecard records are written to ``stage`` (a temporary folder in the out
    folder) and moved to ``target`` (``records_target``: ``$DUFM_RECORDS`` if the user set it,
    else ``<out>/records``) only when the block ends without an exception; ``stage`` is removed
    either way, so a failed or interrupted chapter leaves its earlier records as they were."""
    previous = os.environ.get("DUFM_RECORDS")
    os.environ["DUFM_RECORDS"] = str(stage.resolve())
    published = os.environ.get(RECORDS_TARGET_ENV)
    os.environ[RECORDS_TARGET_ENV] = str(target.resolve())  # what the scorecard page reads
    try:
        yield
        if stage.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for record in sorted(stage.glob("*.json")):
                write_atomic(target / record.name, lambda fh, r=record: fh.write(r.read_bytes()))
    finally:
        if previous is None:
            del os.environ["DUFM_RECORDS"]
        else:
            os.environ["DUFM_RECORDS"] = previous
        if published is None:
            del os.environ[RECORDS_TARGET_ENV]
        else:
            os.environ[RECORDS_TARGET_ENV] = published
        shutil.rmtree(stage, ignore_errors=True)


def _keep_partial(tmp: Path, failed: Path) -> str:
    """Move a failed run's partial notebook to ``failed`` (one rename: a reader sees the whole
    notebook or none), if papermill wrote it whole; otherwise drop it (and any older
    ``failed``) and return why, for the error message (empty when it was kept or was empty)."""
    failed.unlink(missing_ok=True)
    if not tmp.stat().st_size:
        tmp.unlink()
        return ""
    try:
        nbformat.read(tmp, as_version=4)
    except Exception as err:  # noqa: BLE001 - cut short (a full disk) or otherwise unreadable
        tmp.unlink()
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        return f"no partial notebook kept: it was cut short while being written ({reason})"
    os.replace(tmp, failed)
    return ""


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
    parser.add_argument(
        "--archive",
        action="store_true",
        help="with --params paper: keep each finished chapter's run in results/paper/ "
        "(default chapters: those whose paper set can run on this machine)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show Python tracebacks of errors (default: one line)"
    )
    return parser


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    installed = sorted(KernelSpecManager().find_kernel_specs())
    if name not in installed:
        raise ValueError(
            f"--kernel {name!r} is not allowed: no such Jupyter kernel here "
            f"(installed: {', '.join(installed) or 'none'})"
        )


def _set_name(params: str, overrides: Mapping) -> str:
    """The name the records give the parameters: the named set, or ``custom`` for a YAML file or
    ``-p`` values that change what is measured (``--device`` and the like do not)."""
    if params not in SET_NAMES or set(overrides) - EXECUTION_KEYS:
        return "custom"
    return params


def _plan(args: argparse.Namespace) -> list[tuple[Path, dict, str]]:
    """Chapters with their parameters and set name, all checked before anything runs."""
    overrides = {name: parse_value(value, name) for name, value in args.parameter}
    if args.device is not None:
        overrides["device"] = args.device
    if args.scheduler is not None:
        overrides["scheduler"] = args.scheduler
    if args.archive and _set_name(args.params, overrides) != "paper":
        given = " ".join(f"-p {k}" for k in sorted(set(overrides) - EXECUTION_KEYS))
        raise ValueError(
            f"--archive is not allowed with --params {args.params}{' ' + given if given else ''}"
            ": it keeps runs of the paper set only (--params paper, with no -p value that "
            f"changes what is measured; allowed: {', '.join(sorted(EXECUTION_KEYS))})"
        )
    chapters = args.chapters or _default_chapters(args.archive, overrides.get("device"))
    check_out_dir(args.out)
    _check_kernel(args.kernel)
    plan = []
    for chapter in chapters:
        nb = _read_chapter(chapter)  # a missing chapter is named before its parameter sets
        parameters = {**parameter_set(chapter, args.params), **overrides}
        check_parameters(chapter.stem, nb, parameters)
        plan.append((chapter, parameters, _set_name(args.params, overrides)))
    return plan


def _default_chapters(archiving: bool, device) -> list[Path]:
    """Every chapter of ``_toc.yml``; when archiving, only the chapters that check a result of
    the paper (``archive.RESULT_CHAPTERS``: not the scorecard or the status page), and on a machine
    without the GPU a chapter's paper set needs (``archive.NOT_KEPT``) that chapter is left
    out with a line saying why."""
    chapters = toc_chapters(Path.cwd())
    if not archiving:
        return chapters
    chapters = [c for c in chapters if c.stem in archive.RESULT_CHAPTERS]
    if str(device or "cpu").startswith("cuda"):
        return chapters
    kept = []
    for chapter in chapters:
        if chapter.stem in archive.NOT_KEPT:
            why = archive.NOT_KEPT[chapter.stem]
            print(f"== {chapter.stem} left out: its paper set {why}", file=sys.stderr)
        else:
            kept.append(chapter)
    return kept


class _Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C: the run in progress is dropped cleanly."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


@contextlib.contextmanager
def _signals_as_interrupts():
    """While running, SIGTERM (timeout, CI cancellation, schedulers) and SIGHUP raise
    ``_Signalled`` in the main thread, so the cleanup of a Ctrl-C runs for them too."""
    names = ("SIGTERM", "SIGHUP")
    caught = [getattr(signal, n) for n in names if hasattr(signal, n)]
    try:
        previous = {s: signal.signal(s, _raise_signalled) for s in caught}
    except ValueError:  # not the main thread: leave the handlers alone
        previous = {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _report(err: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(err, file=sys.stderr)
        for line in getattr(err, "kernel_traceback", []):
            print(line, file=sys.stderr)
    print(f"error: {err}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status.

    0: every chapter ran; 1: a chapter failed; 2: bad input (arguments, parameter names or
    values, parameter files, ``--out``); 130/143/129: interrupted by Ctrl-C/SIGTERM/SIGHUP.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with _signals_as_interrupts():
        try:
            return _main(args)
        except KeyboardInterrupt as err:
            signum = getattr(err, "signum", signal.SIGINT)
            name = signal.Signals(signum).name
            print(f"interrupted ({name}); earlier results kept", file=sys.stderr)
            return 128 + signum
        except Exception as err:  # noqa: BLE001 - no traceback for users, unless --debug
            if args.debug:
                raise
            kind = type(err).__name__
            print(f"error: {kind}: {err} (rerun with --debug for the traceback)", file=sys.stderr)
            return 1


def _main(args: argparse.Namespace) -> int:
    try:
        plan = _plan(args)
    except (ValueError, FileNotFoundError) as err:
        _report(err, args.debug)
        return 2
    status = 0
    for chapter, parameters, set_name in plan:
        print(f"== {chapter.stem} with {parameters or 'its defaults'}", file=sys.stderr)
        try:
            start = time.monotonic()
            print(execute_chapter(chapter, parameters, args.out, args.kernel, set_name))
            if args.archive:
                _archive(chapter, args.out, time.monotonic() - start, set_name)
        except ParameterRejected as err:
            _report(err, args.debug)
            status = 2
        except (ValueError, FileNotFoundError) as err:  # e.g. --out removed meanwhile
            _report(err, args.debug)
            status = 2
        except ChapterError as err:
            _report(err, args.debug)
            status = max(status, 1)
        except KeyboardInterrupt as err:
            signum = getattr(err, "signum", signal.SIGINT)
            name = signal.Signals(signum).name
            print(f"interrupted ({name}) in {chapter.stem}; earlier results kept", file=sys.stderr)
            return 128 + signum
    return status


def _archive(chapter: Path, out: Path, wall_s: float, set_name: str) -> None:
    """Keep a finished chapter's paper-set run in ``<book root>/results/paper/``."""
    root = _book_root(chapter.resolve().parent)
    if root is None:
        raise ValueError(f"--archive: no _toc.yml above {chapter}: cannot find the book's folder")
    records = records_target(out) / f"{chapter.stem}.json"
    kept = archive.keep_run(chapter.stem, records, root=root, wall_s=wall_s, parameter_set=set_name)
    print(f"kept {kept} ({wall_s:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
