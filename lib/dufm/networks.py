"""Real networks (Figures 3, 4, 7, 8): a trained backbone followed by a deep fully connected head.

The network maps an input batch X to features H_1 = backbone(X) (d x N, the "free features" of
the deep UFM, now produced by a network) and then through a head of L fully connected layers of
width d, linear or ReLU, exactly as the deep UFM of ``dufm.losses.forward``:
H_{l+1} = W_l act(H_l) (no activation on H_1), Z = W_L act(H_L), W_1..W_{L-1}: d x d,
W_L: K x d. Chapter 9 (``chapters/09_real_networks.md``) trains it.

- Backbones (``dufm.backbones``): the CIFAR-style ResNet-20, a ResNet-8 and an MLP, batched over
  runs.
- Regularisation regimes (``REGIMES``): ``"ufm"`` (weight decay lam_W on the head's weights and
  lam_H on the features, (lam_H/2) ||H_1||_F^2 summed over all N samples; the backbone is not
  decayed), the regime of Figures 3 and 7; ``"standard"`` (one weight decay lam on every
  parameter, backbone and batch-norm parameters included; nothing on the features), the regime of
  Figures 4 and 8.
- Training (``train_network``): gradient descent on the full batch or on class-balanced batches of
  ``batch_size`` samples, deterministic for given seeds on the CPU.
- The DNC bound of the head (``head_dnc_bound``): the least loss of any parameters whose logits
  have the DNC structure, for the UFM-style regime with unequal weight decays
  (``effective_weight_decay``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .backbones import make_backbone
from .losses import forward, mean_cross_entropy
from .progress import progress_bar
from .theory import optimal_scale
from .trainer import DivergenceError
from .validation import (
    _fail,
    check_activation,
    check_device,
    check_dtype,
    check_int,
    check_positive,
    check_sizes,
)

REGIMES = ("ufm", "standard")


# ----------------------------------------------------------------------------------------------
# The DNC bound of the head (Figures 3 and 7)
# ----------------------------------------------------------------------------------------------


def effective_weight_decay(lam_W: float, lam_H: float, L: int) -> float:
    """lam_eff = lam_W^{L/(L+1)} lam_H^{1/(L+1)}: the one weight decay that unequal decays act as.

    With weight decay lam_H on the features H_1 and lam_W on each of the L head matrices,
    min over factorisations Z = W_L ... W_1 H_1 of (lam_H/2)||H_1||^2 + (lam_W/2) sum ||W_l||^2
    equals (lam_eff/2)(L+1) sum_i s_i(Z)^{2/(L+1)} (chapter 9 derives it: rescale H_1 by
    sqrt(lam_H/lam_W) and use the equal-decay identity of Lemma 1). lam_H = lam_W gives lam_W.
    """
    check_positive("lam_W", lam_W)
    check_positive("lam_H", lam_H)
    check_int("L", L, 1)
    return lam_W * (lam_H / lam_W) ** (1 / (L + 1))


def head_dnc_bound(K: int, n: int, L: int, lam_W: float, lam_H: float) -> tuple[float, float]:
    """Least loss (scale, loss) of any UFM-style-regularised network whose logits are DNC.

    Figures 3 and 7: a network with logits Z = alpha S kron 1_n^T (S = I - 11^T/K, n samples per
    class) has loss (1/(Kn)) g(Z) + (lam_H/2)||H_1||^2 + (lam_W/2) sum_l ||W_l||^2 at least the
    reduced loss of Z with weight decay ``effective_weight_decay(lam_W, lam_H, L)``, minimised over
    alpha: ``dufm.theory.optimal_scale("dnc", K, n, L, lam_eff)``. This holds for the linear head
    (Lemma 1) and, under the paper's Assumption 1, for the ReLU head (Theorem 7's DNC lower bound).
    Returns (alpha*, bound).
    """
    check_sizes(K=K, n=n, L=L)
    return optimal_scale("dnc", K, n, L, effective_weight_decay(lam_W, lam_H, L))


# ----------------------------------------------------------------------------------------------
# The head and the regularisers
# ----------------------------------------------------------------------------------------------


def init_head(K: int, d: int, L: int, init_scales: Sequence[float], seeds, dtype=torch.float64):
    """Head weights [W_1, ..., W_L] of R runs: W_l (R, d, d) for l < L, W_L (R, K, d).

    Entries N(0, s_r^2 / d) for run r with initial scale s_r = ``init_scales[r]`` (s = 1 is the
    usual 1/sqrt(fan-in) scale; the paper does not report its initialisation), drawn in float64
    on the CPU from a generator seeded with ``seeds[r] + 1_000_003`` (independent of the
    backbone's stream).
    """
    check_sizes(K=K, d=d, L=L)
    if len(init_scales) != len(seeds):
        _fail("init_scales", list(init_scales), f"must hold one scale per seed ({len(seeds)})")
    for i, s in enumerate(init_scales):
        check_positive(f"init_scales[{i}]", s)
    shapes = [(d, d)] * (L - 1) + [(K, d)]
    weights = []
    for rows, cols in shapes:
        weights.append(torch.empty(len(seeds), rows, cols, dtype=torch.float64))
    for r, (seed, s) in enumerate(zip(seeds, init_scales, strict=True)):
        gen = torch.Generator().manual_seed(int(seed) + 1_000_003)
        for W in weights:
            W[r] = torch.randn(W.shape[1:], generator=gen, dtype=torch.float64) * (s / math.sqrt(d))
    return [W.to(dtype) for W in weights]


def head_forward(H1: torch.Tensor, weights: list, activation: str = "linear") -> list:
    """[H_1, H_2, ..., H_L, Z] of the head for features H1 (R, d, N): ``dufm.losses.forward``."""
    return forward([H1, *weights], activation)


def ufm_regulariser(H1: torch.Tensor, weights: list, lam_W: float, lam_H: float, scale=1.0):
    """UFM-style regulariser of R runs, (R,): (lam_H/2) scale ||H_1||^2 + (lam_W/2) sum_l ||W_l||^2.

    Figures 3 and 7. H1 (R, d, b) holds the features of b samples; ``scale`` = N/b makes the
    feature term of a batch an unbiased estimate of the full-data term (1 for the full batch).
    """
    feat = H1.pow(2).sum(dim=(-2, -1))
    head = sum(W.pow(2).sum(dim=(-2, -1)) for W in weights)
    return 0.5 * lam_H * scale * feat + 0.5 * lam_W * head


def standard_regulariser(parameters: Sequence[torch.Tensor], runs: int, lam: float):
    """Standard weight decay of R runs, (R,): (lam/2) times the squared norm of all parameters.

    Figures 4 and 8. Every tensor is run-major (its first dimension splits into R equal slices:
    the batched backbones' weights, biases and batch-norm parameters, and the head's weights).
    """
    total = 0.0
    for p in parameters:
        total = total + p.reshape(runs, -1).pow(2).sum(dim=1)
    return 0.5 * lam * total


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


@dataclass
class NetworkResult:
    """Outcome of ``train_network`` for R runs.

    ``losses``, ``fits`` (R, T): full-data loss and mean cross-entropy at ``record_steps``;
    ``features``: [H_1, ..., H_L, Z] of the final networks on the whole data, each (R, rows, N)
    float64 on the CPU (pre-activations, columns in class order); ``weights``: the final head
    [W_1, ..., W_L], each (R, rows, cols); ``seeds``, ``init_scales``: the runs; ``steps``: the
    steps trained; ``seconds``: wall time of the training loop (snapshots included);
    ``snapshot_steps`` and ``snapshots``: what ``measure`` returned at each of those steps.
    """

    K: int
    n: int
    L: int
    activation: str
    regime: str
    backbone: str
    losses: torch.Tensor
    fits: torch.Tensor
    record_steps: list
    features: list
    weights: list
    seeds: list
    init_scales: list
    seconds: float
    steps: int = 0
    snapshot_steps: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)

    @property
    def logits(self) -> torch.Tensor:
        """Final logits Z of every run, (R, K, Kn) (``logits[r]``: run r's)."""
        return self.features[-1]


def _check_data(X: torch.Tensor, labels: torch.Tensor, K: int) -> int:
    if not isinstance(X, torch.Tensor) or X.dim() != 4:
        _fail("X", getattr(X, "shape", X), "must be a 4-D tensor (N, channels, height, width)")
    N = X.shape[0]
    if N % K:
        _fail("X.shape[0]", N, f"must be a multiple of K={K} (n samples per class)")
    n = N // K
    expected = torch.arange(K).repeat_interleave(n)
    if labels.shape != (N,) or not torch.equal(labels.cpu().long(), expected):
        _fail("labels", "given", f"must be class-ordered: n={n} of class 0, then class 1, ... ")
    return n


def train_network(
    X: torch.Tensor,
    labels: torch.Tensor,
    K: int,
    *,
    backbone: str = "mlp",
    mlp_hidden: Sequence[int] = (256,),
    d: int = 64,
    L: int = 3,
    activation: str = "linear",
    regime: str = "ufm",
    lam_W: float = 5e-3,
    lam_H: float = 1e-6,
    lam: float = 1e-2,
    lr: float = 0.05,
    steps: int = 1000,
    batch_size: int = 0,
    seeds: Sequence[int] = (0,),
    init_scales: Sequence[float] = (1.0,),
    record_every: int = 10,
    warmup_steps: int = 0,
    snapshot_steps: Sequence[int] = (),
    measure: Callable[[list, list], object] | None = None,
    device="cpu",
    dtype="float64",
    progress: bool = True,
) -> NetworkResult:
    """Train R = len(seeds) backbone + head networks by gradient descent, in one tensor program.

    Figures 3 and 7 (``regime="ufm"``: lam_W on the head, lam_H on the features) and Figures 4
    and 8 (``regime="standard"``: lam on every parameter). X (N, C, H, W) with class-ordered rows
    (n of class 0, then class 1, ...) and ``labels`` (N,) to match. ``batch_size`` 0 is full-batch
    gradient descent; otherwise a multiple b of K: each step uses b/K samples of every class
    (a fresh class-wise permutation each epoch, drawn from ``seeds[0]``), and b/K must divide n.
    Run r has backbone seed ``seeds[r]`` and head scale ``init_scales[r]``. With
    ``warmup_steps`` w > 0 the learning rate of step t < w is lr (t + 1) / w (a linear warm-up
    that keeps the first steps, where features and head grow together, stable). The recorded loss
    is the full-data objective; batch normalisation uses the statistics of the batch it sees.
    At each of ``snapshot_steps`` (steps 0..``steps``: the network after that many updates)
    ``measure(features, weights)`` is called with the full-data [H_1, ..., H_L, Z] and the head
    [W_1, ..., W_L] (float64 on the CPU, as in the result) and its return value kept in
    ``snapshots`` (the collapse metrics against the training step, chapter 9).
    Raises ``DivergenceError`` naming the run if a loss is not finite.
    """
    check_sizes(K=K, d=d, L=L)
    check_activation(activation)
    if regime not in REGIMES:
        _fail("regime", regime, f"must be one of {REGIMES}")
    for name, value in (("lam_W", lam_W), ("lam_H", lam_H), ("lam", lam), ("lr", lr)):
        check_positive(name, value)
    check_int("steps", steps, 1)
    check_int("batch_size", batch_size, 0)
    check_int("record_every", record_every, 1)
    check_int("warmup_steps", warmup_steps, 0)
    dev, dt = check_device(device), check_dtype(dtype)
    n = _check_data(X, labels, K)
    seeds, init_scales = [int(s) for s in seeds], [float(s) for s in init_scales]
    if not seeds:
        _fail("seeds", seeds, "must hold at least one seed")
    if batch_size:
        if batch_size % K or n % (batch_size // K):
            _fail(
                "batch_size",
                batch_size,
                f"must be 0 (full batch) or a multiple of K={K} whose share per class divides "
                f"n={n}",
            )
    snapshot_steps = sorted(
        {check_int(f"snapshot_steps[{i}]", t, 0) for i, t in enumerate(snapshot_steps)}
    )
    if snapshot_steps and snapshot_steps[-1] > steps:
        _fail("snapshot_steps", snapshot_steps[-1], f"must be steps between 0 and steps={steps}")
    if snapshot_steps and measure is None:
        _fail("measure", measure, "must be a function of (features, weights) for snapshot_steps")
    R, N = len(seeds), K * n
    net = make_backbone(backbone, R, tuple(X.shape[1:]), d, seeds, mlp_hidden).to(dev, dt)
    head = [nn.Parameter(W.to(dev)) for W in init_head(K, d, L, init_scales, seeds, dt)]
    params = [*net.parameters(), *head]
    X = X.to(dev, dt)

    def objective(x: torch.Tensor, scale: float):
        H1 = net(x).transpose(-2, -1)  # (R, d, b)
        feats = head_forward(H1, list(head), activation)
        fit = mean_cross_entropy(feats[-1])
        if regime == "ufm":
            reg = ufm_regulariser(H1, list(head), lam_W, lam_H, scale)
        else:
            reg = standard_regulariser(params, R, lam)
        return fit, reg, feats

    def evaluate(step: int):
        with torch.no_grad():
            fit, reg, _ = objective(X, 1.0)
        loss = (fit + reg).double().cpu()
        bad = (~torch.isfinite(loss)).nonzero().flatten().tolist()
        if bad:
            raise DivergenceError(
                f"run {bad[0]} (seed {seeds[bad[0]]}, init scale {init_scales[bad[0]]}) diverged "
                f"at step {step}: loss {float(loss[bad[0]])}; use a smaller learning rate lr={lr}"
            )
        return loss, fit.double().cpu()

    def final_features():
        with torch.no_grad():
            H1 = net(X).transpose(-2, -1)
            return [F.double().cpu() for F in head_forward(H1, list(head), activation)]

    snapshots = []

    def snapshot(step: int):
        if len(snapshots) < len(snapshot_steps) and step == snapshot_steps[len(snapshots)]:
            weights = [W.detach().double().cpu() for W in head]
            snapshots.append(measure(final_features(), weights))

    gen = torch.Generator().manual_seed(seeds[0])
    per_class = (batch_size // K) if batch_size else n
    batches_per_epoch = n // per_class
    order = None
    losses, fits, record_steps = [], [], []
    start = time.perf_counter()
    bar = progress_bar(steps, "train", show=progress)
    for step in range(steps):
        snapshot(step)
        if step % record_every == 0:
            loss, fit = evaluate(step)
            losses.append(loss)
            fits.append(fit)
            record_steps.append(step)
        if batch_size:
            j = step % batches_per_epoch
            if j == 0:  # a new epoch: a fresh permutation within every class
                order = torch.stack([torch.randperm(n, generator=gen) for _ in range(K)])
            rows = order[:, j * per_class : (j + 1) * per_class] + n * torch.arange(K).view(K, 1)
            x, scale = X[rows.flatten().to(dev)], N / batch_size
        else:
            x, scale = X, 1.0
        fit, reg, _ = objective(x, scale)
        total = (fit + reg).sum()
        grads = torch.autograd.grad(total, params)
        rate = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(g, alpha=rate)
        bar.update(1)
    bar.close()
    loss, fit = evaluate(steps)
    losses.append(loss)
    fits.append(fit)
    record_steps.append(steps)
    snapshot(steps)
    seconds = time.perf_counter() - start
    feats = final_features()
    return NetworkResult(
        K=K,
        n=n,
        L=L,
        activation=activation,
        regime=regime,
        backbone=backbone,
        losses=torch.stack(losses, dim=1),
        fits=torch.stack(fits, dim=1),
        record_steps=record_steps,
        features=feats,
        weights=[W.detach().double().cpu() for W in head],
        seeds=seeds,
        init_scales=init_scales,
        seconds=seconds,
        steps=steps,
        snapshot_steps=snapshot_steps,
        snapshots=snapshots,
    )
