"""Benchmark of the batched deep-UFM engine against a per-run PyTorch loop (issue 4, Figure 1).

One workload, four implementations, measured side by side in one process in interleaved
rounds (so a load change on the machine hits all of them), medians reported:

(a) the naive loop: one run at a time, autograd, ``torch.optim.SGD``; its cost is per run, so
    it is timed on a few runs of the full length and reported per run-step;
(b) ``dufm.trainer.train``, R runs in one batched program, on MKL's small-matrix kernels where
    they load (``dufm.kernels``; the header says which path, and the torch path is timed beside
    it at R=256 and 1024; ``--kernels torch`` measures the torch path as (b));
(c) the same with ``compile=True`` (``torch.compile``);
(d) the peer a performance-minded researcher would pick: the model in JAX (``jax.grad``,
    ``jax.vmap`` over runs, ``jax.jit`` of a ``lax.scan`` of steps; ``jax_peer.py``), skipped
    with one line where JAX is not installed (``pip install -r benchmarks/requirements.txt``).

Subnormal floats: the engine flushes them to zero while it trains (``dufm._engine``); the naive
loop runs in the process's default mode (subnormals kept, as a researcher's script runs; set
explicitly, ``--naive-flush`` turns flushing on for it); the header prints the CPU and the modes.
``--contention`` also measures the engine with a competing busy-loop process on the machine
(started and stopped by the benchmark) against the same measurement without it.

Workload: the Figure 1 model (K=10, n=5, d=70, L=2, lam=2^-10, lr=0.5), R=64 runs x 2000 steps,
float32 and float64. Also: agreement of (a), (b), (c) on the same seeds; the machine's
sustained large-matmul GFLOP/s (same process, same dtype) and the fraction of it the engine
reaches at R=64, 256, 1024; scaling in R (1..1024) and width d (10..150), printed and plotted to
``benchmarks/scaling.png``. The last line is the machine-readable summary
``ratio_f32_R256=<x> ratio_f64_R256=<y> peak_frac_R1024=<z> vs_jax_f64_R256=<u>
vs_jax_f32_R256=<v>`` (the last two: the engine's run-steps/s over JAX's; n/a without JAX).

FLOPs of one engine step, per run (linear model, N = Kn samples, counted from the shapes of the
matrix products the engine does; the softmax and elementwise updates, O(Kn + params), are
left out): 6 K d ((L-1) d + N) (K-bottleneck association, see ``dufm/trainer.py``). Plain
backpropagation would do 6 d N ((L-1) d + K); for Figure 1 that is 0.504 vs 1.68 MFLOP.

    python benchmarks/sweep.py            # full (about 15 min on a 2-core CPU)
    python benchmarks/sweep.py --quick    # fewer repeats and points (under 5 min)
    python benchmarks/sweep.py --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
sys.path.insert(0, str(HERE))

import jax_peer  # noqa: E402

from dufm._engine import _flushing  # noqa: E402
from dufm.kernels import KERNELS as KERNEL_CHOICES  # noqa: E402
from dufm.kernels import backend, mkl_unavailable_reason  # noqa: E402
from dufm.losses import class_labels, full_loss  # noqa: E402
from dufm.trainer import init_params, make_runs, train  # noqa: E402

K, NPC, D, L, LAM, LR = 10, 5, 70, 2, 2.0**-10, 0.5
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def engine_flops(K: int, n: int, L: int, d: int) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of one engine step of one linear run."""
    return 6 * K * d * ((L - 1) * d + K * n)


def backprop_flops(K: int, n: int, L: int, d: int) -> int:
    """The same for plain backpropagation (what the naive loop's autograd does)."""
    return 6 * d * K * n * ((L - 1) * d + K)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(dtype, device: str, size: int) -> float:
    """Sustained GFLOP/s of one large square matrix product (the machine's practical limit)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    c = torch.empty(size, size, dtype=dtype, device=device)
    torch.mm(a, b, out=c)
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < 0.5:
        torch.mm(a, b, out=c)
        reps += 1
    sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - t0) / 1e9


NAIVE_FLUSH = [False]  # (a)'s flush-to-zero mode, set explicitly around every naive run


def naive_run(seed: int, steps: int, dtype, device: str, d: int = D) -> tuple[float, float]:
    """(a) One run, as a researcher writes it: autograd and torch.optim.SGD.

    The weight decay goes through SGD's ``weight_decay`` (the same gradient as the penalty
    (lam/2)||P||^2, and the faster of the two usual ways: writing the penalty into the loss costs
    about 0.72 instead of 0.51 ms per step here). Same initialisation as the engine
    (``init_params`` of this seed alone). Returns (seconds for the ``steps`` updates, the full
    loss in float64 after them).
    """
    runs = make_runs([seed], d, 1.0, LAM, LR)
    params = [
        P[0].to(device=device, dtype=dtype).requires_grad_() for P in init_params(K, NPC, L, runs)
    ]
    labels = class_labels(K, NPC, device=device)
    opt = torch.optim.SGD(params, lr=LR, weight_decay=LAM)

    def fit(ps):
        Z = ps[0]
        for W in ps[1:]:
            Z = W @ Z
        return torch.nn.functional.cross_entropy(Z.T, labels)

    before = _flushing()
    torch.set_flush_denormal(NAIVE_FLUSH[0])
    try:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            fit(params).backward()
            opt.step()
        sync(device)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_flush_denormal(before)
    with torch.no_grad():
        ps = [P.detach().double() for P in params]
        final = float(fit(ps) + 0.5 * LAM * sum(P.pow(2).sum() for P in ps))
    return seconds, final


_INITS: dict = {}
KERNELS = ["auto"]  # --kernels: the engine's path for (b)


def engine_run(
    R: int, steps: int, dtype: str, device: str, d: int = D, compile: bool = False, kernels=None
):
    """(b)/(c) R runs (seeds 0..R-1) in one ``train`` call; the random initialisation is drawn
    before the clock starts (as for (a)), so the rate is the steady training rate. ``kernels``:
    the engine's path (default ``--kernels``; (c) is the torch step compiled)."""
    if (R, d) not in _INITS:
        _INITS[(R, d)] = init_params(K, NPC, L, make_runs(range(R), d, 1.0, LAM, LR))
    kernels = "torch" if compile else (kernels or KERNELS[0])
    kwargs = dict(seeds=range(R), lr=LR, steps=steps, device=device, dtype=dtype, kernels=kernels)
    sync(device)
    t0 = time.perf_counter()
    res = train(K, NPC, L, d, LAM, progress=False, compile=compile, params=_INITS[(R, d)], **kwargs)
    sync(device)
    return R * steps / (time.perf_counter() - t0), res


def jax_steps(R: int, work: float) -> int:
    """Steps of one (d) measurement: about an eighth of (b)'s run-steps, at least 20 (JAX is
    several times slower, and records no loss, so any step count is a whole measurement)."""
    return max(20, math.ceil(work / 8 / R))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return f"{min(xs):.0f}-{max(xs):.0f}" if xs else "-"


def steps_for(R: int, work: float, full: int = 2000) -> int:
    """Steps so that one measurement does about ``work`` run-steps: a multiple of 100 (the
    default recording interval, so the loss evaluations weigh as in real use), 100..full."""
    return int(min(full, max(100, 100 * math.ceil(work / R / 100))))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and scaling points")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    ap.add_argument("--repeats", type=int, default=None, help="rounds of the main comparison")
    ap.add_argument("--no-compile", action="store_true", help="skip (c), torch.compile")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling tables and plot")
    ap.add_argument("--plot", default=str(HERE / "scaling.png"), help="where the plot goes")
    ap.add_argument("--json", default=None, help="also write every measurement to this file")
    ap.add_argument("--no-jax", action="store_true", help="skip (d), the JAX peer")
    ap.add_argument("--naive-flush", action="store_true", help="(a) flushes subnormals too")
    ap.add_argument(
        "--contention", action="store_true", help="also measure with a competing busy process"
    )
    ap.add_argument(
        "--kernels",
        default="auto",
        choices=KERNEL_CHOICES,
        help="the engine's products for (b): auto (default), mkl or torch (dufm.kernels)",
    )
    args = ap.parse_args(argv)
    NAIVE_FLUSH[0] = args.naive_flush
    KERNELS[0] = args.kernels
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {dev}: CUDA is not available on this machine")
    gpu = dev.startswith("cuda")
    rounds = args.repeats or (2 if args.quick else 5)
    naive_runs = 2 if args.quick else 3  # naive runs per round, each the full 2000 steps
    work = 128_000 * (8 if gpu else 1)  # run-steps per measurement (R = 64: 64 x 2000)
    Rs_main = (64, 256, 1024)
    Rs_comp = () if args.no_compile else ((64, 256) if args.quick else Rs_main)
    mm_size = 4096 if gpu else 2048
    name = torch.cuda.get_device_name(dev) if gpu else _cpu_model()
    jax_version = None if args.no_jax or gpu else jax_peer.available()
    Rs_jax = (256, 1024) if jax_version else ()
    path = backend(args.kernels, device_type=torch.device(dev).type, activation="linear")
    Rs_torch = (256, 1024) if path == "mkl" else ()  # the torch path side by side

    print(f"# dufm engine benchmark  {time.strftime('%Y-%m-%d %H:%M')}  {'--quick' * args.quick}")
    print(
        f"torch {torch.__version__}; device {dev}: {name}; {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"load average at start: {_load()}")
    print(
        f"CPU: {_cpu_model()}; flush-to-zero of subnormal floats: process default "
        f"{'on' if _flushing() else 'off'}; (a) naive loop {'on' if args.naive_flush else 'off'} "
        "(set explicitly); (b)/(c) engine on while it trains, on each of its threads"
    )
    if path == "mkl":
        how = "MKL JIT GEMM kernels in a numba loop (dufm.kernels); the torch path timed beside it"
    elif gpu or args.kernels == "torch":
        how = "batched torch products"
    else:
        how = f"batched torch products; the MKL kernels do not load: {mkl_unavailable_reason()}"
    print(f"(b) engine kernels: {path} ({how})")
    if jax_version:
        print(
            f"(d) JAX {jax_version} (XLA CPU, its own threads and flush mode): R = 256 and 1024 x "
            f"{jax_steps(256, work)} and {jax_steps(1024, work)} steps per measurement"
        )
    elif not args.no_jax and not gpu:
        print(
            "(d) JAX peer skipped: JAX is not installed "
            "(pip install -r benchmarks/requirements.txt)"
        )
    print(
        f"workload: K={K} n={NPC} d={D} L={L} lam=2^-10 lr={LR}; (a) naive: {naive_runs} runs "
        f"x 2000 steps per round; (b) R=64 x 2000 steps, R=256 and 1024 x {steps_for(256, work)} "
        f"and {steps_for(1024, work)} steps; {rounds} interleaved rounds; medians (min-max)"
    )
    flops = engine_flops(K, NPC, L, D)
    print(f"FLOPs per run-step: engine {flops:,}; plain backprop {backprop_flops(K, NPC, L, D):,}")

    res = {
        dt: {
            "mm": [],
            "naive": [],
            "naive_loss": {},
            "b": {R: [] for R in Rs_main},
            "t": {R: [] for R in Rs_torch},
            "c": {R: [] for R in Rs_comp},
            "b_loss": None,
            "c_loss": None,
            "compile_s": 0.0,
            "d": {R: [] for R in Rs_jax},
            "d_loss": None,
            "jax_compile_s": 0.0,
        }
        for dt in DTYPES
    }
    jax_runs = {}

    # Warm-up: first calls (allocator, BLAS handles) and torch.compile's compilations.
    for dt in DTYPES:
        engine_run(64, 100, dt, dev)
        naive_run(0, 20, DTYPES[dt], dev)
        t0 = time.perf_counter()
        for R in Rs_comp:
            engine_run(R, 101, dt, dev, compile=True)
        res[dt]["compile_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for R in Rs_jax:
            jax_runs[(dt, R)] = _jax_setup(R, jax_steps(R, work), dt)
        res[dt]["jax_compile_s"] = time.perf_counter() - t0

    for rnd in range(rounds):
        seeds = [(rnd * naive_runs + j) % 64 for j in range(naive_runs)]
        for dt, torch_dt in DTYPES.items():
            r = res[dt]
            r["mm"].append(matmul_gflops(torch_dt, dev, mm_size))
            for seed in seeds:
                secs, final = naive_run(seed, 2000, torch_dt, dev)
                r["naive"].append(2000 / secs)
                r["naive_loss"][seed] = final
            for R in Rs_main:
                steps = steps_for(R, work)
                rate, out = engine_run(R, steps, dt, dev)
                r["b"][R].append(rate)
                assert out.kernels == path, (out.kernels, path)
                if R == 64:
                    r["b_loss"] = out.final_loss
                if R in Rs_torch:
                    rate_t, out_t = engine_run(R, steps, dt, dev, kernels="torch")
                    r["t"][R].append(rate_t)
                    rel = (out.final_loss - out_t.final_loss).abs() / out_t.final_loss.abs()
                    r["t_rel"] = max(r.get("t_rel", 0.0), float(rel.max()))
                if R in Rs_comp:
                    rate, out = engine_run(R, steps, dt, dev, compile=True)
                    r["c"][R].append(rate)
                    if R == 64:
                        r["c_loss"] = out.final_loss
                if R in Rs_jax:
                    run, params = jax_runs[(dt, R)]
                    r["d"][R].append(R * jax_steps(R, work) / jax_peer.seconds(run, params))
            r["mm"].append(matmul_gflops(torch_dt, dev, mm_size))
        print(f"  round {rnd + 1}/{rounds} done, load average {_load()}", flush=True)

    print("\n## (a) naive loop, (b) engine, (c) compiled engine: run-steps per second")
    print(
        f"{'dtype':8} {'implementation':22} {'R':>5} {'run-steps/s':>12} {'min-max':>15} "
        f"{'vs (a)':>8}"
    )
    ratio = {}
    for dt in DTYPES:
        r = res[dt]
        a = med(r["naive"])
        print(
            f"{dt:8} {'(a) naive, one run':22} {1:>5} {a:>12.0f} {spread(r['naive']):>15} "
            f"{1.0:>7.1f}x"
        )
        rows = (("b", f"(b) engine, {path}", Rs_main), ("t", "(b) engine, torch", Rs_torch))
        rows += (("c", "(c) engine, compiled", Rs_comp),)
        for key, label, Rs in (*rows, ("d", "(d) JAX vmap+jit+scan", Rs_jax)):
            for R in Rs:
                v = med(r[key][R])
                ratio[(dt, key, R)] = v / a
                versus = {
                    "d": f"   engine / JAX: {med(r['b'][R]) / v:.1f}x",
                    "t": f"   mkl / torch: {med(r['b'][R]) / v:.2f}x",
                }.get(key, "")
                print(
                    f"{dt:8} {label:22} {R:>5} {v:>12.0f} {spread(r[key][R]):>15} "
                    f"{v / a:>7.1f}x{versus}"
                )
        if Rs_comp:
            print(
                f"{dt:8} (c) compile time (warm-up, {len(Rs_comp)} batch sizes): "
                f"{r['compile_s']:.0f} s"
            )
        if Rs_jax:
            print(f"{dt:8} (d) jit compile time (2 batch sizes): {r['jax_compile_s']:.0f} s")

    print("\n## agreement on the same seeds: final loss after 2000 steps (R = 64 batch)")
    agree = {}
    for dt in DTYPES:
        r = res[dt]
        seeds = sorted(r["naive_loss"])
        da = max(abs(r["naive_loss"][s] - float(r["b_loss"][s])) for s in seeds)
        line = f"{dt}: max |(a)-(b)| = {da:.1e} over seeds {seeds}"
        dc = 0.0
        if Rs_comp:
            dc = float((r["b_loss"] - r["c_loss"]).abs().max())
            line += f"; max |(b)-(c)| = {dc:.1e} over 64 runs"
        dd = float("nan")
        if Rs_jax:
            jax_loss = _jax_final_losses(JAX_SEEDS, dt)
            dd = max(abs(jax_loss[s] - float(r["b_loss"][s])) for s in range(JAX_SEEDS))
            line += f"; max |(b)-(d)| = {dd:.1e} over seeds 0-{JAX_SEEDS - 1}"
        if Rs_torch:
            line += (
                f"; {path} vs torch path: max relative {r['t_rel']:.1e} over R = "
                f"{', '.join(map(str, Rs_torch))} runs"
            )
        agree[dt] = (da, dc, dd)
        if dt == "float64":
            worst = max(x for x in (da, dc, dd) if x == x)
            line += "  [OK: < 1e-10]" if worst < 1e-10 else "  [FAIL: >= 1e-10]"
            if Rs_torch:
                line += "  [paths OK: < 1e-12]" if r["t_rel"] < 1e-12 else "  [paths FAIL]"
        print(line)

    print("\n## the limit: engine FLOP rate against a large matmul (same process, same dtype)")
    print(
        f"engine step {flops:,} FLOP per run (6Kd((L-1)d+N)); matmul: {mm_size}^3, timed "
        "before and after every round"
    )
    print(
        f"{'dtype':8} {'matmul GFLOP/s':>23} {'R':>5} {'engine GFLOP/s':>15} {'fraction':>9} "
        f"{'(backprop-equivalent)':>22}"
    )
    fracs = {}
    for dt in DTYPES:
        r = res[dt]
        mm = med(r["mm"])
        for R in Rs_main:
            g = med(r["b"][R]) * flops / 1e9
            fracs[(dt, R)] = g / mm
            eq = med(r["b"][R]) * backprop_flops(K, NPC, L, D) / 1e9
            print(
                f"{dt:8} {mm:>8.1f} ({spread(r['mm']):>12}) {R:>5} {g:>15.1f} {g / mm:>9.1%} "
                f"{eq:>12.1f} GFLOP/s"
            )

    contended = _contention(args, dev, work, rounds) if args.contention else {}
    scaling = {"R": (), "d": ()} if args.no_scaling else _scaling(args, dev, work // 2)
    if not (args.no_plot or args.no_scaling):
        _plot(scaling, res, args.plot, dev, name)
        print(f"\nplot: {args.plot}")
    if args.json:
        _dump(args.json, res, scaling, ratio, fracs, agree, name, dev, contended, path)
        print(f"measurements: {args.json}")
    print(f"load average at end: {_load()}")
    peak = min(fracs[(dt, 1024)] for dt in DTYPES)
    vs_jax = {
        dt: f"{med(res[dt]['b'][256]) / med(res[dt]['d'][256]):.1f}" if Rs_jax else "n/a"
        for dt in DTYPES
    }
    print(
        f"ratio_f32_R256={ratio[('float32', 'b', 256)]:.1f} "
        f"ratio_f64_R256={ratio[('float64', 'b', 256)]:.1f} peak_frac_R1024={peak:.2f} "
        f"vs_jax_f64_R256={vs_jax['float64']} vs_jax_f32_R256={vs_jax['float32']}"
    )


def _dump(path, res, scaling, ratio, fracs, agree, name, dev, contended, kernels) -> None:
    import json

    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "device": dev,
        "name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "kernels": kernels,
    }
    for dt, r in res.items():
        out[dt] = {
            "matmul_gflops": r["mm"],
            "naive": r["naive"],
            "compile_s": r["compile_s"],
            "engine": {str(R): v for R, v in r["b"].items()},
            "engine_torch_path": {str(R): v for R, v in r["t"].items()},
            "paths_max_relative_loss_difference": r.get("t_rel"),
            "compiled": {str(R): v for R, v in r["c"].items()},
            "jax": {str(R): v for R, v in r["d"].items()},
            "agreement": {"a_b": agree[dt][0], "b_c": agree[dt][1], "b_d": agree[dt][2]},
        }
    out["ratios"] = {f"{dt}_{impl}_R{R}": v for (dt, impl, R), v in ratio.items()}
    out["peak_fraction"] = {f"{dt}_R{R}": v for (dt, R), v in fracs.items()}
    out["contention"] = {f"{dt}_R{R}_{k}": v for (dt, R, k), v in contended.items()}
    out["scaling"] = {"R": list(scaling["R"]), "d": list(scaling["d"])}
    for key, val in scaling.items():
        if isinstance(key, tuple):
            out["scaling"]["_".join(key)] = val
    Path(path).write_text(json.dumps(out, indent=1))


JAX_SEEDS = 8  # seeds whose final losses (d) and (b) are compared


def _jax_setup(R: int, steps: int, dtype: str):
    """(d): the jitted trainer for R runs and ``steps`` steps, compiled by one call, and the
    same initialisation as (b) (``init_params`` of seeds 0..R-1) as JAX arrays."""
    params = jax_peer.to_jax(init_params(K, NPC, L, make_runs(range(R), D, 1.0, LAM, LR)), dtype)
    run = jax_peer.make_trainer(K, NPC, LAM, LR, steps, dtype)
    jax_peer.seconds(run, params)  # compiles
    return run, params


def _jax_final_losses(R: int, dtype: str) -> list:
    """(d)'s full loss (float64, ``dufm.losses.full_loss``) of seeds 0..R-1 after 2000 steps."""
    run, params = _jax_setup(R, 2000, dtype)
    out = [torch.from_numpy(np.array(P, dtype=np.float64)) for P in run(params)]
    return [full_loss([P[i] for P in out], LAM) for i in range(R)]


def _busy_process() -> subprocess.Popen:
    """A competing process: one thread spinning in a Python loop until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _contention(args, dev: str, work: int, rounds: int) -> dict:
    """The engine at R = 256 and 1024 with and without a competing busy process, interleaved.

    With w worker threads and one busy thread on c cores, a share in proportion to the cores
    the engine gets is min(w, c * w / (w + 1)) / min(w, c) of its rate alone (2/3 on 2 cores).
    """
    cores, w = os.cpu_count() or 1, torch.get_num_threads()
    fair = min(w, cores * w / (w + 1)) / min(w, cores)
    rates = {(dt, R, k): [] for dt in DTYPES for R in (256, 1024) for k in ("alone", "busy")}
    for rnd in range(rounds):
        for dt in DTYPES:
            for R in (256, 1024):
                rates[(dt, R, "alone")].append(engine_run(R, steps_for(R, work), dt, dev)[0])
                busy = _busy_process()
                try:
                    time.sleep(0.3)
                    rates[(dt, R, "busy")].append(engine_run(R, steps_for(R, work), dt, dev)[0])
                finally:
                    busy.kill()
                    busy.wait()
        print(f"  contention round {rnd + 1}/{rounds} done, load average {_load()}", flush=True)
    print(
        f"\n## contention: the engine alone and with one competing busy process ({cores} cores, "
        f"{w} torch threads; in proportion to the cores it gets: {fair:.2f})"
    )
    print(f"{'dtype':8} {'R':>5} {'alone':>10} {'with busy':>10} {'ratio':>7}")
    out = {}
    for dt in DTYPES:
        for R in (256, 1024):
            alone, busy = med(rates[(dt, R, "alone")]), med(rates[(dt, R, "busy")])
            out[(dt, R, "alone")] = rates[(dt, R, "alone")]
            out[(dt, R, "busy")] = rates[(dt, R, "busy")]
            out[(dt, R, "ratio")] = busy / alone
            print(f"{dt:8} {R:>5} {alone:>10.0f} {busy:>10.0f} {busy / alone:>7.2f}")
    return out


def _scaling(args, dev: str, work: int) -> dict:
    """Run-steps/s against R (d = 70) and against d (R = 256), both dtypes (one repeat each
    in --quick, else the median of three)."""
    Rs = (1, 4, 16, 64, 256, 1024) if args.quick else (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    ds = (10, 30, 70, 150) if args.quick else (10, 20, 30, 50, 70, 100, 150)
    reps = 1 if args.quick else 3
    out = {"R": Rs, "d": ds}
    print("\n## scaling in R (d = 70): engine run-steps/s and GFLOP/s")
    print(f"{'R':>5} " + " ".join(f"{dt + ' rs/s':>14} {'GFLOP/s':>8}" for dt in DTYPES))
    for dt in DTYPES:
        out[("R", dt)] = []
    for R in Rs:
        cells = []
        for dt in DTYPES:
            rate = med([engine_run(R, steps_for(R, work), dt, dev)[0] for _ in range(reps)])
            out[("R", dt)].append(rate)
            cells.append(f"{rate:>14.0f} {rate * engine_flops(K, NPC, L, D) / 1e9:>8.1f}")
        print(f"{R:>5} " + " ".join(cells), flush=True)
    print("\n## scaling in d (R = 256): engine run-steps/s (GFLOP/s), naive run-steps/s, ratio")
    print(
        f"{'d':>5} " + " ".join(f"{dt + ' engine':>22} {'naive':>7} {'ratio':>7}" for dt in DTYPES)
    )
    for dt in DTYPES:
        out[("d", dt)], out[("dn", dt)] = [], []
    for d in ds:
        cells = []
        fl = engine_flops(K, NPC, L, d)
        steps = steps_for(256, work * engine_flops(K, NPC, L, D) / fl)  # about equal FLOPs
        for dt, torch_dt in DTYPES.items():
            rate = med([engine_run(256, steps, dt, dev, d=d)[0] for _ in range(reps)])
            naive = med([500 / naive_run(s, 500, torch_dt, dev, d=d)[0] for s in range(reps)])
            out[("d", dt)].append(rate)
            out[("dn", dt)].append(naive)
            cells.append(
                f"{rate:>14.0f} ({rate * fl / 1e9:>5.1f}) {naive:>7.0f} {rate / naive:>6.1f}x"
            )
        print(f"{d:>5} " + " ".join(cells), flush=True)
    return out


def _plot(scaling: dict, res: dict, path: str, dev: str, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    flops = engine_flops(K, NPC, L, D)
    for dt, color in zip(DTYPES, ("tab:blue", "tab:red"), strict=True):
        naive = med(res[dt]["naive"])
        axes[0].loglog(
            scaling["R"], scaling[("R", dt)], "o-", color=color, label=f"(b) engine {dt}"
        )
        axes[0].axhline(naive, color=color, ls=":", label=f"(a) naive {dt}")
        comp = sorted(res[dt]["c"])
        if comp:
            rates = [med(res[dt]["c"][R]) for R in comp]
            axes[0].loglog(comp, rates, "x", color=color, ms=8, label=f"(c) compiled {dt}")
        mm = med(res[dt]["mm"])
        frac = [x * flops / 1e9 / mm for x in scaling[("R", dt)]]
        axes[1].semilogx(
            scaling["R"], frac, "o-", color=color, label=f"{dt} (matmul {mm:.0f} GFLOP/s)"
        )
        axes[2].semilogy(
            scaling["d"], scaling[("d", dt)], "o-", color=color, label=f"(b) engine {dt}, R=256"
        )
        axes[2].semilogy(
            scaling["d"], scaling[("dn", dt)], "s:", color=color, label=f"(a) naive {dt}"
        )
    lowest = min(med(res[dt]["naive"]) for dt in DTYPES)
    axes[0].set_ylim(bottom=lowest / 2)
    axes[0].set(
        xlabel="runs R in the batch",
        ylabel="run-steps per second",
        title=f"Figure-1 model (d={D}), {dev}",
    )
    axes[1].axhline(0.25, color="gray", ls="--", lw=0.8)
    axes[1].set(
        xlabel="runs R in the batch",
        ylabel="fraction of large-matmul GFLOP/s",
        title="engine FLOP rate / machine limit",
    )
    axes[2].set(xlabel="width d", ylabel="run-steps per second", title="scaling in width")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"dufm engine vs a per-run autograd loop; {name}, {time.strftime('%Y-%m-%d')}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
