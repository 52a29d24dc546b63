"""Sweeps on a Dask cluster (``run_sweep(..., executor=...)``, ``dufm.cluster``): a real
``distributed.LocalCluster`` of two worker processes, started and closed here."""

import concurrent.futures
import os
import signal
import socket
import threading
import time

import psutil
import pytest
from test_sweep import assert_same  # one definition of "the same sweep result"

from dufm.cluster import check_scheduler, sweep_executor
from dufm.run import _parser, _plan
from dufm.sweep import grid, run_sweep

K, n, L = 4, 3, 2
TRAIN = dict(steps=400, lr=0.2, record_every=100, dtype="float64")


@pytest.fixture(scope="module")
def cluster():
    """(executor, client) of a LocalCluster with two single-threaded worker processes; after
    the module's tests it is closed and none of its worker processes is left (a worker killed
    by a test is restarted by its nanny and must end too)."""
    from distributed import get_client

    with sweep_executor("local", n_workers=2) as executor:
        client = get_client()
        assert len(client.scheduler_info()["workers"]) == 2
        assert len(_cluster_processes()) == 2
        yield executor, client
    gone, alive = psutil.wait_procs(_cluster_processes(), timeout=20)
    assert not alive, f"cluster processes left running: {alive}"


def _cluster_processes() -> list:
    """This process's children but Python's resource tracker (it lives as long as this one)."""
    children = psutil.Process().children(recursive=True)
    return [p for p in children if "resource_tracker" not in " ".join(p.cmdline())]


def test_a_sweep_through_the_cluster_gives_bit_identical_float64_results(tmp_path, cluster):
    executor, _ = cluster
    configs = grid(seeds=[0, 1, 2], d=[4, 6], lam=[0.01, 0.03])  # 12 runs, 4 batches
    here = run_sweep(
        configs, tmp_path / "here", K=K, n=n, L=L, batch_size=3, progress=False, **TRAIN
    )
    there = run_sweep(
        configs,
        tmp_path / "there",
        K=K,
        n=n,
        L=L,
        batch_size=3,
        progress=False,
        executor=executor,
        **TRAIN,
    )
    assert there.batches_trained == here.batches_trained == 4
    assert_same(there, here)
    names = sorted(p.name for p in (tmp_path / "there").glob("batch-*.pt"))
    assert names == sorted(p.name for p in (tmp_path / "here").glob("batch-*.pt"))
    again = run_sweep(
        configs, tmp_path / "there", K=K, n=n, L=L, batch_size=3, progress=False, **TRAIN
    )
    assert again.batches_loaded == 4 and again.batches_trained == 0  # the same batch files


def test_a_worker_killed_mid_sweep_costs_at_most_one_more_training_per_batch(tmp_path, cluster):
    executor, client = cluster
    configs = grid(seeds=range(12), d=6, lam=0.01)  # 6 batches of 2 runs, in seed order
    settings = dict(K=K, n=n, L=L, batch_size=2, progress=False, **{**TRAIN, "steps": 3000})
    reference = run_sweep(configs, tmp_path / "here", **settings)
    starts, out = tmp_path / "starts", tmp_path / "there"
    starts.mkdir()

    def logged(K, n, L, batch, train_kwargs):  # shipped by value: a nested function
        import time
        import uuid

        import dufm.sweep

        (starts / f"{batch[0].seed}-{uuid.uuid4().hex}").touch()
        time.sleep(0.5)  # every batch busy long enough to be killed, however fast training is
        return dufm.sweep._train_batch(K, n, L, batch, train_kwargs)

    class Logging(concurrent.futures.Executor):
        def submit(self, fn, *args, **kwargs):
            return executor.submit(logged, *args, **kwargs)

    killed = {}

    def kill_a_busy_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if keys]
            if list(out.glob("batch-*.pt")) and busy:
                killed["files"] = {p.name: _identity(p) for p in out.glob("batch-*.pt")}
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        result = run_sweep(configs, out, executor=Logging(), **settings)
    finally:
        killer.join()
    assert "pid" in killed, "no worker was killed: the sweep finished before one was busy"
    assert_same(result, reference)
    assert result.batches_trained == 6 and len(list(out.glob("batch-*.pt"))) == 6
    assert not list(out.glob(".*tmp"))
    for name, identity in killed["files"].items():  # finished before the kill: not rewritten
        assert _identity(out / name) == identity, f"{name} was rewritten"
    counts = {}
    for path in starts.iterdir():
        first_seed = int(path.name.split("-")[0])
        counts[first_seed] = counts.get(first_seed, 0) + 1
    assert sorted(counts) == [0, 2, 4, 6, 8, 10], counts
    assert max(counts.values()) <= 2, f"a batch trained more than twice: {counts}"


def _identity(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def test_an_unreachable_scheduler_is_an_error_naming_it_before_any_training():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    entered = []
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=f"scheduler='{address}'.*no Dask scheduler"):
        with sweep_executor(address, timeout=2):
            entered.append(True)  # where a sweep would train
    assert not entered
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("value", ["cluster", "tcp//host:8786", "host:8786", 8786, None])
def test_a_malformed_scheduler_is_a_value_error_naming_it(value):
    with pytest.raises(ValueError, match=f"scheduler={value!r} is not allowed"):
        check_scheduler(value)


def test_the_runner_passes_scheduler_to_the_chapter():
    args = _parser().parse_args(
        ["chapters/05_dnc_prevalence.md", "--params", "ci", "--scheduler", "tcp://host:8786"]
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args.chapters = [type(args.chapters[0])(root) / args.chapters[0]]
    [(_, parameters, set_name)] = _plan(args)
    assert parameters["scheduler"] == "tcp://host:8786"
    assert set_name == "ci"  # the scheduler chooses where it runs, not what it measures
