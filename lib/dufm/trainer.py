"""Batched full-batch gradient descent on the deep UFM (linear and ReLU).

R independent runs (seeds, init scales, widths, weight decays, learning rates) advance in one
tensor program: every parameter is stacked along a leading run dimension. Runs of different
widths share a batch by zero padding, which is exact for this model: the gradient of a padded
row or column is exactly zero, so a run never leaves its own d_i block.

The gradient is analytic (no autograd): with a_0 = H_1, a_l = act(H_{l+1}) and G_Z = (P - Y)/(Kn),
dL/dW_l = G_l a_{l-1}^T + lam W_l, G_{l-1} = (W_l^T G_l) * act'(H_l). This serves Figure 1
(and every experiment that trains), and is checked against autograd in the tests.

The engine itself (in-place step kernels, cache-sized blocks, worker threads, the
``torch.compile`` fallback) is ``dufm._engine``; this module holds the public API: the run
settings, the initialisation, ``train`` and its result. ``loss_and_grads`` (the reference
gradient) lives in ``dufm.losses`` and is re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch

from ._engine import _advance, _Block, _block_bounds, _losses, _threads
from .kernels import backend
from .losses import forward, one_hot_labels
from .progress import progress_bar
from .validation import (
    check_activation,
    check_choice,
    check_class_sizes,
    check_device,
    check_dtype,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_sizes,
)

__all__ = [
    "DivergenceError",
    "RunConfig",
    "TrainResult",
    "init_params",
    "make_runs",
    "train",
]

INIT_SCHEMES = ("normal", "fan_in", "fixed_output")
ON_DIVERGENCE = ("raise", "record")
SHOWN_RUNS = 3  # diverged runs a DivergenceError describes one by one


class DivergenceError(FloatingPointError):
    """A run's loss became NaN or infinite."""


@dataclass(frozen=True)
class RunConfig:
    """The settings one run of a batch or a sweep varies: seed, width d, weight decay lam,
    initial scale and learning rate (Figures 1, 2 and 5). ``lr=None`` (in a sweep's
    configurations) means the sweep's ``lr``; a ``TrainResult`` always holds the value used.
    """

    seed: int
    d: int
    lam: float
    init_scale: float = 1.0
    lr: float | None = None


@dataclass
class TrainResult:
    """Outcome of ``train``: batched parameters, loss history and the per-run settings.

    ``configs[i]`` is run i's ``RunConfig``; ``params[j]`` has shape (R, rows, cols), zero-padded
    to the largest width; ``losses`` is (R, T) float64 on the CPU, recorded at ``record_steps``.
    ``final_loss`` (R,) and ``logits`` (R, K, N) are read as on a ``dufm.sweep.SweepResult``.
    """

    K: int
    n: int
    L: int
    activation: str
    configs: list
    params: list
    record_steps: list
    losses: torch.Tensor
    steps_done: int
    converged: bool
    stop_reason: str = field(default="")
    diverged: list = field(default_factory=list)  # per run: step of a non-finite loss, or None
    class_sizes: list | None = None
    run_steps: list = field(default_factory=list)  # per run: the steps it took (tol: fewer)
    kernels: str = "torch"  # the step's products: "mkl" (dufm.kernels) or "torch" (torch.bmm)

    def run_params(self, i: int) -> list:
        """Run i's matrices [H_1, W_1, ..., W_L] cropped to its own width, float64 on the CPU."""
        d = self.configs[i].d
        out = [self.params[0][i, :d].double().cpu()]
        out += [W[i, :d, :d].double().cpu() for W in self.params[1:-1]]
        out.append(self.params[-1][i, :, :d].double().cpu())
        return out

    @cached_property
    def logits(self) -> torch.Tensor:
        """Every run's output Z, shape (R, K, N), float64 on the CPU (``logits[i]``: run i's)."""
        return torch.stack(
            [forward(self.run_params(i), self.activation)[-1] for i in range(len(self.configs))]
        )

    @property
    def final_loss(self) -> torch.Tensor:
        """The last recorded loss of every run, shape (R,)."""
        return self.losses[:, -1]


def _per_run(name: str, value, R: int) -> list:
    """Broadcast a scalar or a length-R sequence (list, tuple, 1-D array or tensor) to R values."""
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:
        values = [v.item() if isinstance(v, torch.Tensor) else v for v in value]
        if len(values) != R:
            raise ValueError(f"{name} has {len(values)} entries: must be a scalar or have R={R}")
        return values
    return [value] * R


def make_runs(seeds, d, init_scale, lam, lr) -> list:
    """Validated ``RunConfig`` list; every argument is a scalar or one value per seed."""
    if isinstance(seeds, str) or not hasattr(seeds, "__iter__") or getattr(seeds, "ndim", 1) == 0:
        seeds = [seeds]  # one seed: an int, a numpy integer or a 0-d tensor
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds=[] is not allowed: give at least one seed")
    R = len(seeds)
    runs = []
    for s, di, sc, la, eta in zip(
        seeds,
        _per_run("d", d, R),
        _per_run("init_scale", init_scale, R),
        _per_run("lam", lam, R),
        _per_run("lr", lr, R),
        strict=True,
    ):
        runs.append(
            RunConfig(
                seed=check_int("seed", s, 0),
                d=check_int("d", di, 1),
                lam=check_positive("lam", la),
                init_scale=check_nonnegative("init_scale", sc),
                lr=check_positive("lr", eta),
            )
        )
    return runs


def init_params(K: int, n, L: int, runs: list, init: str = "normal", class_sizes=None) -> list:
    """Stacked float64 CPU initialisation [H_1 (R, d, Kn), W_1 .. W_{L-1} (R, d, d), W_L (R, K, d)],
    zero-padded to the largest width d (Figures 1, 2 and 5; chapters 1 and 5).

    Run i draws from its own generator (seed_i), so it starts identically alone or in any batch.
    With s = init_scale: ``init="normal"``: every entry N(0, s^2), so the initial output Z has
    entries of standard deviation s^(L+1) d^(L/2); ``"fan_in"``: every entry, H_1's included,
    N(0, s^2 / d_i), so Z's entries have standard deviation s^(L+1) d^(-1/2);
    ``"fixed_output"``: H_1's entries N(0, 1) (the features at a fixed per-entry scale) and
    W_l's N(0, s^2 / d_i) (fan-in scale with gain s), so Z's entries have variance exactly s^(2L)
    at every width (each of the d^L paths through the product contributes (s^2 / d)^L); with
    s = sqrt(d_0) it draws, at d = d_0, the same numbers as ``"normal"`` with s = 1 (the width
    control of chapter 5). H_1 has N = Kn columns, or N = sum n_c with ``class_sizes``
    (Appendix A; then ``n`` is unused).
    """
    if init not in INIT_SCHEMES:
        raise ValueError(f"init={init!r} is not allowed: must be one of {INIT_SCHEMES}")
    N = K * n if class_sizes is None else sum(class_sizes)
    R, dmax = len(runs), max(r.d for r in runs)
    shapes = [(dmax, N)] + [(dmax, dmax)] * (L - 1) + [(K, dmax)]
    params = [torch.zeros((R, *shape), dtype=torch.float64) for shape in shapes]
    for i, run in enumerate(runs):
        gen = torch.Generator().manual_seed(run.seed)
        w_std = run.init_scale / (1.0 if init == "normal" else math.sqrt(run.d))  # W_1 .. W_L
        h_std = 1.0 if init == "fixed_output" else w_std  # H_1
        stds = [h_std] + [w_std] * L
        own = [(run.d, N)] + [(run.d, run.d)] * (L - 1) + [(K, run.d)]
        for P, (rows, cols), s in zip(params, own, stds, strict=True):
            P[i, :rows, :cols] = torch.randn(rows, cols, generator=gen, dtype=torch.float64) * s
    return params


def train(
    K: int,
    n: int,
    L: int,
    d,
    lam,
    *,
    seeds,
    init_scale=1.0,
    lr=0.5,
    steps: int = 20000,
    activation: str = "linear",
    init: str = "normal",
    record_every: int = 100,
    tol: float | None = None,
    device="cpu",
    dtype="float64",
    progress: bool = True,
    params: list | None = None,
    compile: bool = False,
    on_divergence: str = "raise",
    class_sizes=None,
    kernels: str = "auto",
) -> TrainResult:
    """Full-batch gradient descent on the deep UFM for R runs at once (Figures 1, 2, 5, 6).

    d, lam, init_scale and lr are scalars or one value per seed (R = len(seeds)). The loss is
    recorded every ``record_every`` steps; with ``tol`` set, a run whose loss changed by less
    than ``tol`` (relative) over the last ``record_every`` steps has settled, and training stops
    early once every run has. On the CPU a cache-sized block of runs stops costing steps as soon
    as all of its runs have settled (it leaves the batch: its parameters and loss stay as they
    are), so a batch costs what its runs need, not R times what its slowest run needs;
    ``TrainResult.run_steps`` holds the steps each run took. The progress bar shows the steps
    done and how many runs have settled.
    ``params`` optionally gives a starting point (stacked float64 tensors, as ``init_params``
    returns; they are copied, not modified) instead of the random initialisation. A NaN or
    infinite loss raises ``DivergenceError`` naming the diverged runs (``on_divergence="raise"``)
    or, with ``on_divergence="record"``, marks those runs in ``TrainResult.diverged`` (the step
    of their first non-finite loss) while the others train on. ``compile=True`` runs the step
    through ``torch.compile`` (falling back to eager, with a warning, where it fails; slower than
    eager on the CPU). On the CPU the runs train in cache-sized blocks on min(R,
    ``torch.get_num_threads()``) worker threads, each product single-threaded
    (``torch.set_num_threads(1)`` while it runs), with subnormal floats flushed to zero (both
    restored afterwards; see ``dufm._engine``). ``class_sizes`` (Appendix A,
    chapter 10): K class sizes n_1..n_K instead of n per class (pass n=None); they change only
    the targets and the 1/N of the fit. ``kernels`` chooses the step's products: ``"mkl"``
    (MKL's JIT kernels for the exact shapes in one numba loop, ``dufm.kernels``; the linear model
    on the CPU), ``"torch"`` (batched ``torch.bmm``; every device and activation) or ``"auto"``
    (``$DUFM_KERNELS`` if set, else ``"mkl"`` wherever it runs); ``TrainResult.kernels`` says
    which ran. The two agree to rounding (float64 final losses to about 1e-15 relative).
    """
    if class_sizes is not None:
        if n is not None:
            raise ValueError(f"n={n!r} is not allowed with class_sizes: pass n=None")
        class_sizes = check_class_sizes(class_sizes, K=K)
    check_sizes(K=K, n=n, L=L)
    check_activation(activation)
    check_int("steps", steps, 0)
    check_int("record_every", record_every, 1)
    if tol is not None:
        check_positive("tol", tol)
    if not isinstance(compile, bool):
        raise ValueError(f"compile={compile!r} is not allowed: must be True or False")
    check_choice("on_divergence", on_divergence, ON_DIVERGENCE)
    dev, dt = check_device(device), check_dtype(dtype)
    path = backend(kernels, device_type=dev.type, activation=activation, compile=compile)
    runs = make_runs(seeds, d, init_scale, lam, lr)
    for run in runs:
        check_sizes(K=K, d=run.d)
    if params is None:
        params = init_params(K, n, L, runs, init, class_sizes)
    else:
        _check_start(params, K, K * n if class_sizes is None else sum(class_sizes), L, runs)
    params = [P.to(device=dev, dtype=dt, copy=True).contiguous() for P in params]
    targets = one_hot_labels(K, n if class_sizes is None else class_sizes, dtype=dt, device=dev)

    record_steps, history = [], []
    converged, reason, step = False, "steps exhausted", 0
    run_steps = [0] * len(runs)
    bar = progress_bar(steps, "GD", show=progress)
    with _threads(params, dev, compile) as (workers, pool), torch.no_grad():
        bounds = _block_bounds(params, dev, workers)
        blocks = [
            _Block([P[a:b] for P in params], targets, runs[a:b], activation, compile, path)
            for a, b in bounds
        ]
        moving = list(range(len(blocks)))  # the blocks that still take steps
        diverged = [None] * len(runs)
        while True:
            current = _losses(blocks, pool)
            live = _note_divergence(current, runs, step, diverged, on_divergence == "raise")
            settled = torch.zeros(len(runs), dtype=torch.bool)
            if not live:
                reason = "every run diverged"
            elif history and tol is not None:
                change = (current - history[-1]).abs() / current.abs().clamp_min(1e-300)
                settled = (change < tol) | ~torch.isfinite(current)
                if bool(settled[live].all()):
                    converged, reason = True, f"plateau (relative change < {tol:g})"
                moving = [b for b in moving if not bool(settled[slice(*bounds[b])].all())]
            record_steps.append(step)
            history.append(current)
            bar.update(step - bar.n)
            bar.set_postfix(
                loss=f"{float(current.max()):.6g}",
                settled=f"{int(settled.sum())}/{len(runs)}",
                refresh=False,
            )
            if converged or step == steps or not live:
                break
            upto = min((step // record_every + 1) * record_every, steps)
            _advance([blocks[b] for b in moving], upto - step, pool, workers)
            for b in moving:
                for i in range(*bounds[b]):
                    run_steps[i] += upto - step
            step = upto
    bar.close()
    return TrainResult(
        K=K,
        n=n,
        L=L,
        activation=activation,
        configs=runs,
        params=params,
        record_steps=record_steps,
        losses=torch.stack(history, dim=1),
        steps_done=step,
        converged=converged,
        stop_reason=reason,
        diverged=diverged,
        class_sizes=class_sizes,
        run_steps=run_steps,
        kernels=path,
    )


def _check_start(params, K: int, N: int, L: int, runs: list) -> None:
    """A given starting point must be L+1 finite real tensors of the stacked, padded shapes."""
    R, dmax = len(runs), max(r.d for r in runs)
    shapes = [(R, dmax, N)] + [(R, dmax, dmax)] * (L - 1) + [(R, K, dmax)]
    if isinstance(params, torch.Tensor) or not isinstance(params, list | tuple):
        raise ValueError(
            f"params={type(params).__name__} is not allowed: must be a list of {L + 1} tensors "
            "[H_1, W_1, ..., W_L] stacked over runs (as init_params returns)"
        )
    if len(params) != L + 1:
        raise ValueError(
            f"len(params)={len(params)} is not allowed: L={L} needs {L + 1} tensors [H_1, W_1, "
            "..., W_L]"
        )
    for j, (P, shape) in enumerate(zip(params, shapes, strict=True)):
        if not isinstance(P, torch.Tensor) or tuple(P.shape) != shape:
            raise ValueError(
                f"params[{j}].shape={tuple(getattr(P, 'shape', ()))} is not allowed: must be "
                f"{shape} (R={R} runs, padded width {dmax}, K={K}, N={N} columns)"
            )
        check_finite(f"params[{j}]", P)


def _note_divergence(loss: torch.Tensor, runs: list, step: int, diverged: list, stop: bool):
    """Mark runs whose loss is not finite in ``diverged`` (their first such step); with ``stop``
    raise ``DivergenceError`` naming them. Returns the indices of the runs still finite."""
    finite = torch.isfinite(loss).tolist()
    new = [i for i, ok in enumerate(finite) if not ok and diverged[i] is None]
    for i in new:
        diverged[i] = step
    if new and stop:
        shown = "; ".join(
            f"run {i} (seed={runs[i].seed}, d={runs[i].d}, init_scale={runs[i].init_scale:g}, "
            f"lam={runs[i].lam:g}, lr={runs[i].lr:g}): loss={float(loss[i])}"
            for i in new[:SHOWN_RUNS]
        )
        more = f"; and {len(new) - SHOWN_RUNS} more" if len(new) > SHOWN_RUNS else ""
        if step == 0:
            advice = (
                "the loss is not finite at the starting point, before any step: the initial "
                "parameters overflow; use a smaller init_scale or finite starting params"
            )
        else:
            advice = f"try a smaller learning rate lr (largest here: {max(r.lr for r in runs):g})"
        raise DivergenceError(
            f"{len(new)} of {len(runs)} run(s) diverged at step {step}: {shown}{more}. {advice}."
        )
    return [i for i, d in enumerate(diverged) if d is None]
