"""Batched full-batch gradient descent on the deep UFM (linear and ReLU).

R independent runs (seeds, init scales, widths, weight decays, learning rates) advance in one
tensor program: every parameter is stacked along a leading run dimension. Runs of different
widths share a batch by zero padding, which is exact for this model: the gradient of a padded
row or column is exactly zero, so a run never leaves its own d_i block.

The gradient is analytic (no autograd): with a_0 = H_1, a_l = act(H_{l+1}) and G_Z = (P - Y)/(Kn),
dL/dW_l = G_l a_{l-1}^T + lam W_l, G_{l-1} = (W_l^T G_l) * act'(H_l). This serves Figure 1
(and every experiment that trains), and is checked against autograd in the tests.

The hot loop (``_linear_step``, ``_relu_step``) updates the parameters in place, writes the
linear model's products into preallocated buffers and fuses the weight decay into the matrix
product (``baddbmm_``). For the linear model it multiplies through the K-dimensional bottleneck:
with A_l = W_L ... W_l (K x d) and B_l = G_Z H_l^T (K x d), Z = A_1 H_1,
dL/dW_l = A_{l+1}^T B_l + lam W_l, dL/dH_1 = A_1^T G_Z + lam H_1, and B_{l+1} = B_l W_l^T. That
is the same gradient with 6Kd((L-1)d + N) instead of 6dN((L-1)d + K) multiply-adds per run
(3.3x fewer for Figure 1's model). The loss is evaluated only at the recorded steps. On the CPU
the runs advance in blocks of a few MB, each block for a whole recording interval so that its
working set stays in cache, and the blocks are shared among one worker thread per core, each
running its products single-threaded (``benchmarks/sweep.py``
measures the engine; ``benchmarks/README.md`` records why it is built this way).
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from .losses import class_labels, forward
from .validation import (
    check_activation,
    check_choice,
    check_device,
    check_dtype,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_sizes,
)

INIT_SCHEMES = ("normal", "fan_in")
ON_DIVERGENCE = ("raise", "record")
SHOWN_RUNS = 3  # diverged runs a DivergenceError describes one by one


class DivergenceError(FloatingPointError):
    """A run's loss became NaN or infinite."""


@dataclass
class RunConfig:
    """The per-run settings of one training run in a batch."""

    seed: int
    d: int
    init_scale: float
    lam: float
    lr: float


@dataclass
class TrainResult:
    """Outcome of ``train``: batched parameters, loss history and the per-run settings.

    ``params[j]`` has shape (R, rows, cols), zero-padded to the largest width; ``losses`` is
    (R, T) float64 on the CPU, recorded at ``record_steps``.
    """

    K: int
    n: int
    L: int
    activation: str
    runs: list
    params: list
    record_steps: list
    losses: torch.Tensor
    steps_done: int
    converged: bool
    stop_reason: str = field(default="")
    diverged: list = field(default_factory=list)  # per run: step of a non-finite loss, or None

    def run_params(self, i: int) -> list:
        """Run i's matrices [H_1, W_1, ..., W_L] cropped to its own width, float64 on the CPU."""
        d = self.runs[i].d
        out = [self.params[0][i, :d].double().cpu()]
        out += [W[i, :d, :d].double().cpu() for W in self.params[1:-1]]
        out.append(self.params[-1][i, :, :d].double().cpu())
        return out

    def logits(self, i: int) -> torch.Tensor:
        """Run i's output Z (K x Kn), float64 on the CPU."""
        return forward(self.run_params(i), self.activation)[-1]

    @property
    def final_losses(self) -> torch.Tensor:
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
                init_scale=check_nonnegative("init_scale", sc),
                lam=check_positive("lam", la),
                lr=check_positive("lr", eta),
            )
        )
    return runs


def init_params(K: int, n: int, L: int, runs: list, init: str = "normal") -> list:
    """Stacked float64 CPU initialisation, zero-padded to the largest width.

    Run i draws from its own generator (seed_i), so it starts identically alone or in any batch.
    ``init="normal"``: entries N(0, init_scale^2); ``"fan_in"``: N(0, init_scale^2 / d_i).
    """
    if init not in INIT_SCHEMES:
        raise ValueError(f"init={init!r} is not allowed: must be one of {INIT_SCHEMES}")
    R, N, dmax = len(runs), K * n, max(r.d for r in runs)
    shapes = [(dmax, N)] + [(dmax, dmax)] * (L - 1) + [(K, dmax)]
    params = [torch.zeros((R, *shape), dtype=torch.float64) for shape in shapes]
    for i, run in enumerate(runs):
        gen = torch.Generator().manual_seed(run.seed)
        std = run.init_scale / (math.sqrt(run.d) if init == "fan_in" else 1.0)
        own = [(run.d, N)] + [(run.d, run.d)] * (L - 1) + [(K, run.d)]
        for P, (rows, cols) in zip(params, own, strict=True):
            P[i, :rows, :cols] = torch.randn(rows, cols, generator=gen, dtype=torch.float64) * std
    return params


def loss_and_grads(params: list, targets: torch.Tensor, lam: torch.Tensor, activation: str):
    """Per-run loss (R,) and the analytic gradients of the deep-UFM loss, batched over runs.

    The reference form of the gradient (Section 2; every training figure), checked against
    autograd in the tests. ``targets`` is the one-hot Y (K, Kn); ``lam`` has shape (R, 1, 1).
    """
    feats = forward(params, activation)
    Z = feats[-1]
    N = Z.shape[-1]
    logp = torch.log_softmax(Z, dim=-2)
    fit = -(logp * targets).sum(dim=(-2, -1)) / N
    reg = sum(P.pow(2).sum(dim=(-2, -1)) for P in params)
    loss = fit + 0.5 * lam.view(-1) * reg
    G = (logp.exp() - targets) / N  # dL/dZ
    grads = [None] * len(params)
    for layer in range(len(params) - 1, 0, -1):
        inp = feats[layer - 1]
        if activation == "relu" and layer >= 2:
            inp = torch.relu(inp)
        grads[layer] = G @ inp.transpose(-2, -1) + lam * params[layer]
        G = params[layer].transpose(-2, -1) @ G
        if activation == "relu" and layer >= 2:
            G = G * (feats[layer - 1] > 0)
    grads[0] = G + lam * params[0]
    return loss, grads


# --- the hot loop ------------------------------------------------------------------------------
#
# A step function takes (params, shift, coef, beta, decay) and updates params in place:
# P <- decay * P - lr * (fit gradient of P). The factor -lr/N (``coef``) is folded into G_Z once,
# G = coef * (softmax(Z) - Y) = coef * softmax(Z) + shift with shift = -coef * Y, so every fit
# gradient, being linear in G_Z, arrives already scaled. decay = 1 - lr * lam goes through
# baddbmm's beta when it is one scalar for the block (``decay`` is None), else it is a per-run
# (R, 1, 1) tensor (then beta = 1); ``coef`` likewise is a float or an (R, 1, 1) tensor.


def _output_grad(P, shift, coef):
    """G = -lr * dL/dZ = coef * P + shift, written over the softmax P (one pass for scalar lr)."""
    if isinstance(coef, float):
        return torch.add(shift, P, alpha=coef, out=P)
    return P.mul_(coef).add_(shift)


def _update(P, X, Y, beta, decay):
    """P <- decay * P + X @ Y (batched), fused into one baddbmm when decay is a scalar."""
    if decay is not None:
        P.mul_(decay)
    P.baddbmm_(X, Y, beta=beta)


def _decay_add(P, G, beta, decay):
    """P <- decay * P + G (one pass when decay is a scalar)."""
    if decay is not None:
        P.mul_(decay).add_(G)
    else:
        torch.add(G, P, alpha=beta, out=P)


class _Workspace:
    """One block of the linear model: its parameters, cached transposed views and preallocated
    products, so that the step allocates nothing (about 6% faster in float64 on the 2-core CPU)."""

    def __init__(self, params: list):
        H, Ws = params[0], params[1:]
        (R, d, N), K, L = H.shape, Ws[-1].shape[-2], len(Ws)
        self.H, self.Ws, self.Ht = H, Ws, H.mT
        self.Wt = [W.mT for W in Ws]
        self.A = [None] + [H.new_empty(R, K, d) for _ in range(1, L)] + [Ws[-1]]
        self.At = [None] + [A.mT for A in self.A[1:]]
        self.Z, self.G = H.new_empty(R, K, N), H.new_empty(R, K, N)
        self.B = [None] + [H.new_empty(R, K, d) for _ in range(L)]


def _linear_step(ws: _Workspace, shift, coef, beta, decay) -> None:
    """One GD step of the linear deep UFM through the K-dimensional bottleneck (Figures 1, 2, 5).

    A_l = W_L...W_l, Z = A_1 H_1, B_1 = G H_1^T, B_{l+1} = B_l W_l^T;
    W_l += A_{l+1}^T B_l (l < L), W_L += B_L, H_1 += A_1^T G (G = -lr dL/dZ), plus the decay.
    Every product is written into the block's workspace ``ws``.
    """
    Ws, A, B, L = ws.Ws, ws.A, ws.B, len(ws.Ws)
    for layer in range(L - 1, 0, -1):
        torch.bmm(A[layer + 1], Ws[layer - 1], out=A[layer])
    torch.bmm(A[1], ws.H, out=ws.Z)
    G = _output_grad(torch.ops.aten._softmax.out(ws.Z, -2, False, out=ws.G), shift, coef)
    torch.bmm(G, ws.Ht, out=B[1])
    for layer in range(1, L):
        torch.bmm(B[layer], ws.Wt[layer - 1], out=B[layer + 1])
    _update(ws.H, ws.At[1], G, beta, decay)
    for layer in range(1, L):  # W_L (= A[L]) is read here and updated last
        _update(Ws[layer - 1], ws.At[layer + 1], B[layer], beta, decay)
    _decay_add(Ws[-1], B[L], beta, decay)


def _linear_step_unbuffered(params, shift, coef, beta, decay) -> None:
    """``_linear_step`` on a fresh workspace: the form ``torch.compile`` gets (it plans the
    buffers itself, and a workspace's aliased views are not valid compiled-function inputs)."""
    _linear_step(_Workspace(params), shift, coef, beta, decay)


def _relu_step(params, shift, coef, beta, decay):
    """One GD step of the deep ReLU UFM by backpropagation (Figure 6), L >= 2."""
    H, Ws = params[0], params[1:]
    inputs = [H]  # the input of W_1, ..., W_L
    X = torch.bmm(Ws[0], H)
    for W in Ws[1:]:
        X = X.relu_()
        inputs.append(X)
        X = torch.bmm(W, X)
    G = _output_grad(torch.softmax(X, dim=-2), shift, coef)
    for layer in range(len(Ws), 0, -1):
        W, inp = Ws[layer - 1], inputs[layer - 1]
        below = torch.bmm(W.mT, G)  # with the old W
        if layer >= 2:
            below = torch.ops.aten.threshold_backward(below, inp, 0)
        _update(W, G, inp.mT, beta, decay)
        G = below
    _decay_add(H, G, beta, decay)


def _output(params, relu: bool) -> torch.Tensor:
    """Z of a block, associated as the step does (bottleneck for linear, layerwise for ReLU)."""
    H, Ws = params[0], params[1:]
    if relu:
        X = torch.bmm(Ws[0], H)
        for W in Ws[1:]:
            X = torch.bmm(W, torch.relu(X))
        return X
    A = Ws[-1]
    for W in reversed(Ws[:-1]):
        A = torch.bmm(A, W)
    return torch.bmm(A, H)


class _Block:
    """A contiguous block of runs (views into the batched parameters) and its step settings."""

    def __init__(self, params, targets, runs, activation, compile):
        self.params, self.targets = params, targets
        dev, dt = params[0].device, params[0].dtype
        N = targets.shape[-1]
        self.relu = activation == "relu" and len(params) > 2
        lr = [r.lr for r in runs]
        decay = [1.0 - r.lr * r.lam for r in runs]
        self.lam = torch.tensor([r.lam for r in runs], device=dev, dtype=dt)
        if len(set(lr)) == 1:
            self.coef = -lr[0] / N
        else:
            self.coef = torch.tensor([-x / N for x in lr], device=dev, dtype=dt).view(-1, 1, 1)
        self.shift = -self.coef * targets
        if len(set(decay)) == 1:
            self.beta, self.decay = decay[0], None
        else:
            self.beta = 1.0
            self.decay = torch.tensor(decay, device=dev, dtype=dt).view(-1, 1, 1)
        settings = (self.shift, self.coef, self.beta, self.decay)
        if compile:
            eager = _relu_step if self.relu else _linear_step_unbuffered
            fn = _compiled_step(eager, params, settings)
            self.step = functools.partial(fn, params, *settings)
        elif self.relu:
            self.step = functools.partial(_relu_step, params, *settings)
        else:
            self.step = functools.partial(_linear_step, _Workspace(params), *settings)

    def loss(self) -> torch.Tensor:
        """The deep-UFM loss of every run in the block, shape (R_block,)."""
        Z = _output(self.params, self.relu)
        fit = -(torch.log_softmax(Z, dim=-2) * self.targets).sum(dim=(-2, -1)) / Z.shape[-1]
        reg = sum(torch.linalg.vector_norm(P, dim=(-2, -1)).square() for P in self.params)
        return fit + 0.5 * self.lam * reg


# Runs per block on the CPU: about this many bytes (twice the block's parameters, for the step's
# temporaries), so that a block stays in the cache for a whole recording interval. 4 MB (28 runs
# of the Figure 1 model in float64, 57 in float32) ran 1.3-2x faster than one block of R = 1024
# on the 2-core CPU; 2-5 MB were alike, 1 MB 20% and 8 MB 35% slower (benchmarks/README.md).
CPU_BLOCK_BYTES = 4 * 2**20


def _cache_blocks(params, device: torch.device) -> int:
    """How many cache-sized blocks the runs need (1 on a GPU: there all runs go in one)."""
    if device.type != "cpu":
        return 1
    per_run = 2 * sum(P[0].numel() for P in params) * params[0].element_size()
    return math.ceil(params[0].shape[0] / max(1, CPU_BLOCK_BYTES // per_run))


def _workers(params, device: torch.device, compile: bool) -> int:
    """CPU worker threads: one per torch thread (at most one per block), each running whole
    blocks single-threaded.

    Parallel over blocks instead of inside each small product: no OpenMP barrier per product,
    so a busy machine (another process on a core) slows training in proportion instead of
    stalling every product (measured: up to 10x in float64 with 2 OpenMP threads on 2 busy
    cores). Below two cache-sized blocks the products run multi-threaded as usual. Not with
    ``compile`` (compiled code is not run from several threads here).
    """
    if device.type != "cpu" or compile:
        return 1
    return max(1, min(torch.get_num_threads(), _cache_blocks(params, device)))


def _block_bounds(params, device: torch.device, workers: int) -> list:
    """[(start, stop)] of the blocks: all runs on a GPU; on the CPU cache-sized blocks, their
    number a multiple of ``workers`` and their sizes as equal as possible."""
    R = params[0].shape[0]
    count = min(R, workers * math.ceil(_cache_blocks(params, device) / workers))
    size, extra = divmod(R, count)
    bounds, start = [], 0
    for i in range(count):
        stop = start + size + (i < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def _advance(groups: list, n: int, pool) -> None:
    """Run every block of every group ``n`` steps (each group on its own worker thread)."""
    if pool is None:
        _run_group(groups[0], n)
        return
    stop = threading.Event()
    futures = [pool.submit(_run_group, group, n, stop) for group in groups]
    try:
        for future in futures:
            future.result()  # re-raises a worker's exception here
    except BaseException:  # Ctrl-C or a failed worker: the others stop at their next step
        stop.set()
        raise


def _losses(blocks: list, pool) -> torch.Tensor:
    """The loss of every run, (R,) float64 on the CPU; the blocks' losses on the workers."""
    if pool is None:
        parts = [block.loss() for block in blocks]
    else:
        parts = list(pool.map(_block_loss, blocks))
    return torch.cat(parts).double().cpu()


def _block_loss(block) -> torch.Tensor:
    with torch.no_grad():
        return block.loss()


def _run_group(blocks: list, n: int, stop: threading.Event | None = None) -> None:
    with torch.no_grad():  # grad mode is per thread
        for block in blocks:  # each block runs the whole interval while it is in cache
            for _ in range(n):
                if stop is not None and stop.is_set():
                    return
                block.step()


@contextlib.contextmanager
def _single_threaded_ops(active: bool):
    """torch.set_num_threads(1) for the duration (the workers supply the parallelism)."""
    if not active:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _compiled_step(eager, block_params, settings):
    """``torch.compile`` of the step, tried once on a copy of a block; eager where it fails.

    Measured on the 2-core CPU it is slower than eager (inductor turns the in-place ``baddbmm_``
    into an out-of-place product plus a copy), hence off by default.
    """
    try:
        fn = torch.compile(eager)
        with torch.no_grad():  # as in training, so the trial's graph is the one reused
            fn([P.clone() for P in block_params], *settings)
    except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
        warnings.warn(
            f"torch.compile failed ({type(exc).__name__}: {exc}); training eagerly", stacklevel=4
        )
        return eager
    return fn


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
) -> TrainResult:
    """Full-batch gradient descent on the deep UFM for R runs at once (Figures 1, 2, 5, 6).

    d, lam, init_scale and lr are scalars or one value per seed (R = len(seeds)). The loss is
    recorded every ``record_every`` steps; with ``tol`` set, training stops early once every
    run's loss changed by less than ``tol`` (relative) over the last ``record_every`` steps.
    ``params`` optionally gives a starting point (stacked float64 tensors, as ``init_params``
    returns; they are copied, not modified) instead of the random initialisation. A NaN or
    infinite loss raises ``DivergenceError`` naming the diverged runs (``on_divergence="raise"``)
    or, with ``on_divergence="record"``, marks those runs in ``TrainResult.diverged`` (the step
    of their first non-finite loss) while the others train on. ``compile=True`` runs the step
    through ``torch.compile`` (falling back to eager, with a warning, where it fails; slower than
    eager on the CPU). On the CPU a batch of several cache-sized blocks trains on
    ``torch.get_num_threads()`` worker threads, with ``torch.set_num_threads(1)`` while it runs
    (restored afterwards).
    """
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
    runs = make_runs(seeds, d, init_scale, lam, lr)
    for run in runs:
        check_sizes(K=K, d=run.d)
    if params is None:
        params = init_params(K, n, L, runs, init)
    else:
        _check_start(params, K, n, L, runs)
    params = [P.to(device=dev, dtype=dt, copy=True).contiguous() for P in params]
    targets = torch.nn.functional.one_hot(class_labels(K, n), K).T.to(device=dev, dtype=dt)

    workers = _workers(params, dev, compile)
    record_steps, history = [], []
    converged, reason, step = False, "steps exhausted", 0
    bar = tqdm(total=steps, disable=not progress, file=sys.stderr, mininterval=5.0, desc="GD")
    with (
        _single_threaded_ops(workers > 1),
        ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool,
        torch.no_grad(),
    ):
        bounds = _block_bounds(params, dev, workers)
        blocks = [
            _Block([P[a:b] for P in params], targets, runs[a:b], activation, compile)
            for a, b in bounds
        ]
        groups = [blocks[i::workers] for i in range(workers)]
        diverged = [None] * len(runs)
        while True:
            current = _losses(blocks, pool)
            live = _note_divergence(current, runs, step, diverged, on_divergence == "raise")
            if not live:
                reason = "every run diverged"
            elif history and tol is not None:
                change = (current - history[-1]).abs() / current.abs().clamp_min(1e-300)
                if bool((change[live] < tol).all()):
                    converged, reason = True, f"plateau (relative change < {tol:g})"
            record_steps.append(step)
            history.append(current)
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{float(current.max()):.6g}", refresh=False)
            if converged or step == steps or not live:
                break
            upto = min((step // record_every + 1) * record_every, steps)
            _advance(groups, upto - step, pool)
            step = upto
    bar.close()
    return TrainResult(
        K=K,
        n=n,
        L=L,
        activation=activation,
        runs=runs,
        params=params,
        record_steps=record_steps,
        losses=torch.stack(history, dim=1),
        steps_done=step,
        converged=converged,
        stop_reason=reason,
        diverged=diverged,
    )


def _check_start(params, K: int, n: int, L: int, runs: list) -> None:
    """A given starting point must be L+1 finite real tensors of the stacked, padded shapes."""
    R, N, dmax = len(runs), K * n, max(r.d for r in runs)
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
                f"{shape} (R={R} runs, padded width {dmax}, K={K}, N=K*n={N})"
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
