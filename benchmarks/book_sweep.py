"""Wall time of chapter 5's book sweep in this process against a 2-worker Dask LocalCluster.

Chapter 5 (``chapters/05_dnc_prevalence.md``, its ``book`` parameters) trains 220 runs of the
Figure 1 model (K=10, n=5, L=2, lr=0.5): widths 10..150 at lam=2^-10 twice (two
initialisations) and six weight decays at d=70, ten seeds each, in batches of 10, for at most
200,000 steps (stopping once a batch has settled). ``--steps 0`` runs exactly that;
``--steps N`` (default 2000) caps every run at N steps without the early stop: the same 22
batches and tasks, a fixed amount of work. Both sides write their batches into
fresh temporary folders; the results are compared (bit-identical in float64).

    python benchmarks/book_sweep.py               # 220 runs x 2000 steps, in-process then cluster
    python benchmarks/book_sweep.py --steps 500   # shorter
    python benchmarks/book_sweep.py --steps 0     # the whole book sweep (chapter's early stop)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))

from dufm.cluster import sweep_executor  # noqa: E402
from dufm.sweep import grid, run_sweep  # noqa: E402

# chapters/05_dnc_prevalence.md, parameters cell (the book set)
K, NPC, L, LR, LAM = 10, 5, 2, 0.5, 0.0009765625
WIDTHS = [10, 20, 30, 40, 50, 70, 100, 150]
D_LAM, LAMS = 70, [0.00048828125, 0.0009765625, 0.001953125, 0.00390625, 0.0078125, 0.015625]
SEEDS, BATCH, CONTROL_SCALE = range(10), 10, 8.366600265340756


def sweeps(out: Path, steps: int, executor) -> list:
    """The chapter's three sweeps (220 runs), each capped at ``steps`` steps."""
    settings = dict(
        K=K, n=NPC, L=L, batch_size=BATCH, steps=steps or 200000, lr=LR, record_every=500
    )
    if not steps:  # the book's settings: up to 200,000 steps, a batch stops once it has settled
        settings["tol"] = 1e-10
    settings.update(progress=False, executor=executor)
    return [
        run_sweep(grid(SEEDS, WIDTHS, LAM, 1.0), out, init="normal", **settings),
        run_sweep(grid(SEEDS, WIDTHS, LAM, CONTROL_SCALE), out, init="fixed_output", **settings),
        run_sweep(grid(SEEDS, D_LAM, LAMS, 1.0), out, init="normal", **settings),
    ]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--steps", type=int, default=2000, help="steps of every run; 0: the whole book sweep"
    )
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    args = ap.parse_args(argv)
    steps = f"{args.steps} steps" if args.steps else "up to 200000 steps (book settings)"
    print(f"# chapter 5 book sweep, 220 runs x {steps}  {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads; load {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        here = sweeps(Path(tmp) / "here", args.steps, None)
        t_here = time.perf_counter() - t0
        print(f"in-process: {t_here:.1f} s; load {load()}", flush=True)
        t0 = time.perf_counter()
        with sweep_executor("local", n_workers=args.workers) as executor:
            t_start = time.perf_counter() - t0
            there = sweeps(Path(tmp) / "there", args.steps, executor)
            t_there = time.perf_counter() - t0 - t_start
        t_total = time.perf_counter() - t0
        print(
            f"LocalCluster ({args.workers} single-threaded workers): {t_there:.1f} s training, "
            f"{t_start:.1f} s to start, {t_total:.1f} s with start and close; load {load()}"
        )
    same = all(
        torch.equal(a.final_loss, b.final_loss) and torch.equal(a.logits, b.logits)
        for a, b in zip(here, there, strict=True)
    )
    print(f"results bit-identical: {same}")
    print(
        f"in_process_s={t_here:.1f} cluster_s={t_there:.1f} cluster_total_s={t_total:.1f} "
        f"cluster_over_in_process={t_total / t_here:.2f}"
    )


if __name__ == "__main__":
    main()
