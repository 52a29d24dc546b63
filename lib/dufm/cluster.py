"""Sweeps on a Dask cluster: the executor behind ``run_sweep(..., executor=...)``.

Serves the paper-scale sweeps of Figures 2 and 5 (chapter 5's ``scheduler`` parameter, and
``python -m dufm.run ... --scheduler ADDR``). ``scheduler`` is one of

- ``"none"``: no cluster, every batch trains in this process (the default everywhere);
- ``"local"``: a ``distributed.LocalCluster`` on this machine, one single-threaded worker process
  per core, started here and closed afterwards;
- a Dask scheduler address such as ``"tcp://host:8786"``: an existing cluster (workers started by
  ``dask-jobqueue`` on SLURM or PBS, ``dask-cuda`` on GPUs, or ``dask worker`` by hand).

Each batch of runs is one task; the workers send back the batch's compact record and this
process alone writes the batch files, so the workers need no shared file system. Example::

    with sweep_executor("tcp://login1:8786") as executor:
        result = run_sweep(configs, "_sweeps", K=10, n=5, L=2, executor=executor)
"""

from __future__ import annotations

import contextlib
import os
import re
from concurrent.futures import as_completed

NONE, LOCAL = "none", "local"
# scheme://host[:port]; the schemes distributed's communication layer knows
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://[^\s/:]+(:\d{1,5})?/?$")


def check_scheduler(scheduler) -> str:
    """``scheduler`` itself if it is ``"none"``, ``"local"`` or a scheduler address; else a
    ValueError naming the value and what is allowed (no connection is tried here)."""
    if isinstance(scheduler, str) and (scheduler in (NONE, LOCAL) or _ADDRESS.match(scheduler)):
        return scheduler
    raise ValueError(
        f"scheduler={scheduler!r} is not allowed: must be 'none' (train in this process), "
        "'local' (a Dask LocalCluster on this machine) or a Dask scheduler address such as "
        "'tcp://host:8786'"
    )


@contextlib.contextmanager
def sweep_executor(scheduler: str = NONE, *, timeout: float = 10.0, n_workers: int | None = None):
    """The ``concurrent.futures`` executor for ``scheduler`` (None for ``"none"``), for the
    duration of the ``with`` block; a LocalCluster and the client it starts are closed after it.

    An address where no scheduler answers within ``timeout`` seconds raises ConnectionError
    naming the address, before anything is submitted. ``n_workers`` (``"local"`` only) defaults
    to the number of CPU cores; each worker is one process with one thread.
    """
    scheduler = check_scheduler(scheduler)
    if scheduler == NONE:
        yield None
        return
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        address = scheduler
        if scheduler == LOCAL:
            cluster = LocalCluster(
                n_workers=n_workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            stack.enter_context(cluster)
            address = cluster.scheduler_address
        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"scheduler={scheduler!r}: no Dask scheduler answered at {address} within "
                f"{timeout:g} s ({type(exc).__name__}: {exc})"
            ) from None
        stack.enter_context(client)
        yield client.get_executor()


def completed(fn, jobs: list, executor=None):
    """``(key, fn(*args))`` for every ``(key, args)`` of ``jobs`` (``run_sweep``'s batches): one
    after another in this process when ``executor`` is None, else all submitted at once and
    yielded as they finish (the tasks not yet finished are cancelled if the caller stops)."""
    if executor is None:
        for key, args in jobs:
            yield key, fn(*args)
        return
    tasks = {executor.submit(fn, *args): key for key, args in jobs}
    try:
        for future in as_completed(tasks):
            yield tasks[future], future.result()
    finally:
        for future in tasks:
            future.cancel()
