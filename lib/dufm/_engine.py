"""The CPU/GPU engine behind ``dufm.trainer.train``: in-place step kernels, blocks, worker threads.

Serves every experiment that trains (Figures 1, 2, 5, 6) through ``train``; nothing else imports it.

The hot loop (``_linear_step``, ``_relu_step``) updates the parameters in place, writes the
linear model's products into preallocated buffers and fuses the weight decay into the matrix
product (``baddbmm_``). For the linear model it multiplies through the K-dimensional bottleneck:
with A_l = W_L ... W_l (K x d) and B_l = G_Z H_l^T (K x d), Z = A_1 H_1,
dL/dW_l = A_{l+1}^T B_l + lam W_l, dL/dH_1 = A_1^T G_Z + lam H_1, and B_{l+1} = B_l W_l^T. That
is the same gradient with 6Kd((L-1)d + N) instead of 6dN((L-1)d + K) multiply-adds per run
(3.3x fewer for Figure 1's model). On the CPU the runs advance in blocks of a few MB, each block
for a whole recording interval so that its working set stays in cache; worker threads (one per
core, each running its products single-threaded) take the blocks from one shared queue, so a
worker that gets less of a core (another process on the machine) takes fewer blocks. Subnormal
floats are flushed to zero while the engine runs (``flush_denormals``). On the CPU the linear
step's products can instead run through MKL's JIT kernels for the exact shapes, one run at a
time inside a numba loop (``dufm.kernels``, chosen by ``train(kernels=...)``); the torch step
below is the reference they agree with, and the only path on a GPU and for the ReLU model.
``benchmarks/sweep.py`` measures the engine; ``benchmarks/README.md`` records why it is built
this way.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

from .kernels import LinearKernels

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


# Steps one call of the MKL loop takes per run before the worker looks at its stop flag again:
# a failed worker or Ctrl-C stops the others within about 60 ms (a float64 block of 28 runs at
# about 10 us per run-step), and each run still takes 200 steps while its matrices are in cache.
KERNEL_STEPS = 200


class _Block:
    """A contiguous block of runs (views into the batched parameters) and its step settings."""

    def __init__(self, params, targets, runs, activation, compile, kernels="torch"):
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
        self._kernels = None
        if kernels == "mkl" and not self.relu:
            self._kernels = LinearKernels(params, targets, [-x / N for x in lr], decay)
        elif compile:
            eager = _relu_step if self.relu else _linear_step_unbuffered
            fn = _compiled_step(eager, params, settings)
            self.step = functools.partial(fn, params, *settings)
        elif self.relu:
            self.step = functools.partial(_relu_step, params, *settings)
        else:
            self.step = functools.partial(_linear_step, _Workspace(params), *settings)

    def advance(self, n: int, stop: threading.Event | None = None) -> None:
        """``n`` steps of every run of the block, returning early once ``stop`` is set (the MKL
        loop takes them run by run, ``KERNEL_STEPS`` at a time; the torch step block by block)."""
        if self._kernels is not None:
            for done in range(0, n, KERNEL_STEPS):
                if stop is not None and stop.is_set():
                    return
                self._kernels.advance(min(KERNEL_STEPS, n - done))
            return
        for _ in range(n):
            if stop is not None and stop.is_set():
                return
            self.step()

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
    """CPU worker threads: one per torch thread (at most one per run), each running whole
    blocks single-threaded.

    Parallel over blocks instead of inside each small product: no OpenMP barrier per product,
    so a busy machine (another process on a core) slows training in proportion instead of
    stalling every product (measured: up to 10x in float64 with 2 OpenMP threads on 2 busy
    cores), and the engine sets the flush-to-zero mode on every thread that computes (OpenMP's
    own threads would keep theirs). A batch smaller than ``workers`` cache-sized blocks is cut
    into ``workers`` blocks. Not with ``compile`` (compiled code is not run from several threads
    here; its products run multi-threaded as usual).
    """
    if device.type != "cpu" or compile:
        return 1
    return max(1, min(torch.get_num_threads(), params[0].shape[0]))


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


def _advance(blocks: list, n: int, pool, workers: int) -> None:
    """Run every block ``n`` steps. With a pool, ``workers`` threads take the blocks from one
    shared queue (a worker slowed by another process on its core takes fewer of them)."""
    if pool is None:
        _run_blocks(iter(blocks), n)
        return
    stop, queue = threading.Event(), _Queue(blocks)
    futures = [pool.submit(_run_blocks, queue, n, stop) for _ in range(workers)]
    try:
        for future in futures:
            future.result()  # re-raises a worker's exception here
    except BaseException:  # Ctrl-C or a failed worker: the others stop at their next step
        stop.set()
        raise


class _Queue:
    """The blocks of one recording interval, handed out one at a time to the worker threads."""

    def __init__(self, blocks: list):
        self._blocks, self._lock = iter(blocks), threading.Lock()

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            return next(self._blocks)


def _losses(blocks: list, pool) -> torch.Tensor:
    """The loss of every run, (R,) float64 on the CPU; the blocks' losses on the workers."""
    if pool is None:
        parts = [block.loss() for block in blocks]
    else:
        parts = list(pool.map(_block_loss, blocks))
    return torch.cat(parts).double().cpu()


def _block_loss(block) -> torch.Tensor:
    with torch.no_grad(), flush_denormals():
        return block.loss()


def _run_blocks(blocks, n: int, stop: threading.Event | None = None) -> None:
    with torch.no_grad(), flush_denormals():  # grad and flush modes are per thread
        for block in blocks:  # each block runs the whole interval while it is in cache
            if stop is not None and stop.is_set():
                return
            block.advance(n, stop)


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


@contextlib.contextmanager
def _threads(params, device: torch.device, compile: bool):
    """(workers, pool) for training ``params``: on the CPU single-threaded products, subnormals
    flushed to zero on this thread, and a pool of ``workers`` threads when there are several;
    every setting is restored on exit."""
    workers = _workers(params, device, compile)
    cpu = device.type == "cpu"
    with (
        _single_threaded_ops(cpu and not compile),
        flush_denormals(cpu),
        ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool,
    ):
        yield workers, pool


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


def _flushing() -> bool:
    """Whether this thread flushes subnormal floats to zero now (a subnormal float32 times one)."""
    return float(torch.tensor(1e-39, dtype=torch.float32).mul(1.0)) == 0.0


@contextlib.contextmanager
def flush_denormals(active: bool = True):
    """Flush subnormal floats to zero on this thread for the duration, then restore the mode.

    On x86 CPUs a product with subnormal operands (a float32 softmax entry below 1.2e-38, which
    trained runs produce) is many times slower; flushing them costs nothing here, changes results
    by far less than float32 rounding, and leaves float64 results unchanged unless an entry falls
    below 2.2e-308 (``tests/test_trainer.py`` checks both). The mode is per thread: the engine
    sets it on every thread that runs a block. A no-op where the CPU cannot flush.
    """
    if not active:
        yield
        return
    before = _flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
