"""Files the book writes: the mode a new file gets, temporary files that name their writer, and
writes that a reader sees whole or not at all.

Serves the runner (``dufm.run``: a chapter's notebook written atomically), the sweeps
(``dufm.sweep``: finished batches, ``write_atomic``) and the chapter records
(``dufm.scorecard``). ``tempfile.mkstemp`` creates files with mode 0600; a result the user keeps
gets the mode the user's umask gives any new file instead. A temporary file's name carries the id
of the process writing it, so a later run can tell a file left by a killed process (safe to
delete) from one a running process is still writing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

__all__ = [
    "LockHeld",
    "default_file_mode",
    "hold_lock",
    "new_temp_file",
    "stale_temp_files",
    "write_atomic",
]


def default_file_mode() -> int:
    """The mode a new regular file gets here: 0o666 less the process's umask."""
    try:  # Linux: read it without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status") as fh:
            mask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def new_temp_file(folder: str | os.PathLike, prefix: str, suffix: str) -> Path:
    """An empty file ``<folder>/<prefix><pid>.<random><suffix>`` with the default mode."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=f"{prefix}{os.getpid()}.", suffix=suffix)
    os.close(fd)
    os.chmod(name, default_file_mode())
    return Path(name)


def write_atomic(path: str | os.PathLike, write, mode: str = "wb") -> Path:
    """Write ``path`` so that a reader sees the old file or the whole new one: ``write(fh)`` fills
    a temporary file beside it (default file mode, synced), which then replaces ``path``; on any
    failure or interrupt the temporary file is removed and ``path`` is unchanged."""
    path = Path(path)
    tmp = new_temp_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with open(tmp, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_temp_files(folder: str | os.PathLike, prefix: str, suffix: str) -> list[Path]:
    """Temporary files ``new_temp_file(folder, prefix, suffix)`` made whose writer has exited
    (killed, or a version that did not record its id)."""
    stale = []
    for path in Path(folder).glob(f"{prefix}*{suffix}"):
        head = path.name[len(prefix) :].split(".", 1)[0]
        if not (head.isdigit() and _alive(int(head))):
            stale.append(path)
    return stale


class LockHeld(ValueError):
    """Another live process holds the lock file (its id is ``pid``)."""

    def __init__(self, path: Path, pid: int):
        self.path, self.pid = path, pid
        if pid < 0:
            super().__init__(f"{path} stays empty: remove it if no run is using it")
        else:
            super().__init__(f"{path} is held by process {pid}")


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike):
    """Hold the lock file ``path`` (created exclusively, holding this process's id) for the
    block, and remove it after. A lock whose process has exited (killed) is stale: it is
    cleared and taken. Raises ``LockHeld`` while a live process holds it."""
    path = Path(path)
    for _ in range(20):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, default_file_mode())
        except FileExistsError:
            try:
                text = path.read_text().strip()
            except FileNotFoundError:  # released meanwhile: try again
                continue
            if not text:  # its writer has not written its id yet
                time.sleep(0.05)
                continue
            if text.isdigit() and _alive(int(text)) and int(text) != os.getpid():
                raise LockHeld(path, int(text)) from None
            path.unlink(missing_ok=True)  # stale: its process is gone (or it is unreadable)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    else:
        raise LockHeld(path, -1)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
