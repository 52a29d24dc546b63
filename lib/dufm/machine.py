"""What a run ran on: the machine and the software stack (the status page, the kept paper runs).

``machine_facts`` returns a flat dict of text: Python, torch and numpy versions, the CPU model and
its cores, the GPU (or "none"), and the git commit of the book (with "-dirty" when the work tree
has uncommitted changes; "unknown" outside a git checkout).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def gpu_name() -> str:
    """The first CUDA device's name, or "none"."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def git_commit(root: str | os.PathLike | None = None) -> str:
    """HEAD of the git checkout at ``root`` (default: here), "-dirty" if it has changes."""
    where = ["-C", str(root)] if root is not None else []
    try:
        head = subprocess.run(
            ["git", *where, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", *where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine_facts(root: str | os.PathLike | None = None) -> dict:
    """Python, torch, numpy, CPU model and cores, GPU and commit, as text."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu": cpu_model(),
        "cores": str(os.cpu_count() or "unknown"),
        "gpu": gpu_name(),
        "platform": f"{sys.platform} {platform.machine()}",
        "commit": git_commit(root),
    }
