"""Paper-scale sweeps that survive interruption (Figures 2 and 5: many runs per point).

``run_sweep`` groups run configurations (seed, width d, init scale, weight decay lam) into
batches, trains each batch with ``dufm.trainer.train`` and saves each finished batch's compact
results atomically (temporary file, then ``os.replace``) to ``out_dir/batch-<hash>.pt``, the
hash covering everything that determines the batch's numbers (the settings, the runs and the
source of the engine). A rerun with the same arguments loads the finished batches and trains only
the missing ones, so an interrupted sweep (Ctrl-C, a killed job, a timeout) loses at most the
batch in progress. Example::

    configs = grid(seeds=range(10), d=[20, 40, 70, 100], lam=2**-10)
    result = run_sweep(configs, "runs/fig2", K=10, n=5, L=2, steps=40000, device="cuda")
    result.final_loss, result.logit_svals  # one row per configuration, in the given order

With ``executor`` (any ``concurrent.futures.Executor``; ``dufm.cluster.sweep_executor`` gives a
Dask cluster's) each batch is one task: the executor trains it and returns its compact record,
and this process alone writes the batch files.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import trainer
from .cluster import completed
from .files import write_atomic
from .losses import forward
from .progress import progress_bar
from .trainer import RunConfig, train
from .validation import check_bool, check_int, check_nonnegative, check_positive, check_sizes

FORMAT_VERSION = 4  # 4: a batch records the steps each run took (run_steps)
# train() arguments that do not change the numbers a batch produces (beyond rounding): a sweep
# started on the CPU can be finished on a GPU.
_NOT_HASHED = ("device", "progress", "compile", "on_divergence")
_FROM_CONFIGS = ("seeds", "d", "lam", "init_scale", "params")
_CONFIG_KEYS = ("seed", "d", "lam", "init_scale", "lr")


@dataclass
class SweepResult:
    """Per-run results of ``run_sweep`` in the order of the given configurations.

    ``configs[i]``: run i's ``dufm.trainer.RunConfig``, with the learning rate it was trained at.
    Shapes (R runs): ``final_loss`` (R,); ``logits`` (R, K, Kn), the output Z (columns in class
    order); ``logit_svals`` (R, K), singular values of Z in decreasing order; ``feature_svals``
    (R, L, m), singular values of H_1, ..., H_L (m = min(largest d, Kn), zero-padded);
    ``losses[i]`` the loss history of run i at ``record_steps[i]``. All float64 on the CPU.
    A diverged run (``diverged[i]`` is the step of its first NaN or infinite loss) has NaN in
    ``logits``, ``logit_svals`` and ``feature_svals``.
    """

    configs: list
    final_loss: torch.Tensor
    logits: torch.Tensor
    logit_svals: torch.Tensor
    feature_svals: torch.Tensor
    losses: list
    record_steps: list
    converged: list
    batches_trained: int
    batches_loaded: int
    diverged: list = None  # per run: the step of its first non-finite loss, or None
    run_steps: list = None  # per run: the gradient-descent steps it took (a settled run stops)


def grid(seeds, d, lam, init_scale=1.0, lr=None) -> list:
    """All combinations of the given seeds, widths, weight decays, init scales and learning rates
    (scalars or sequences) as ``RunConfig`` objects, seeds varying fastest (``lr=None``: the
    sweep's ``lr``)."""

    def seq(x):
        return list(x) if isinstance(x, list | tuple | range) or getattr(x, "ndim", 0) == 1 else [x]

    return [
        RunConfig(seed=s, d=w, lam=la, init_scale=sc, lr=eta)
        for w, la, sc, eta, s in itertools.product(
            seq(d), seq(lam), seq(init_scale), seq(lr), seq(seeds)
        )
    ]


def _as_run(config, index: int, lr: float) -> RunConfig:
    """``configs[index]`` as a validated ``RunConfig``; one without a learning rate gets ``lr``."""
    if isinstance(config, RunConfig):
        run = config
    elif isinstance(config, dict):
        unknown = set(config) - set(_CONFIG_KEYS)
        if unknown:
            allowed = ", ".join(_CONFIG_KEYS)
            raise ValueError(f"configs[{index}] has keys {sorted(unknown)}: allowed are {allowed}")
        try:
            run = RunConfig(**config)
        except TypeError as exc:
            raise ValueError(f"configs[{index}]={config!r} is not allowed: {exc}") from None
    else:
        raise ValueError(
            f"configs[{index}]={config!r} is not allowed: must be a RunConfig or a dict with "
            "keys seed, d, lam (and optionally init_scale, lr)"
        )
    return RunConfig(
        seed=check_int(f"configs[{index}].seed", run.seed, 0),
        d=check_int(f"configs[{index}].d", run.d, 1),
        lam=check_positive(f"configs[{index}].lam", run.lam),
        init_scale=check_nonnegative(f"configs[{index}].init_scale", run.init_scale),
        lr=check_positive(f"configs[{index}].lr", lr if run.lr is None else run.lr),
    )


def _train_defaults() -> dict:
    """The keyword arguments of ``train`` a sweep passes through, with their defaults (so that
    leaving one out and giving its default value name the same batch)."""
    return {
        name: p.default
        for name, p in inspect.signature(trainer.train).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _FROM_CONFIGS
    }


# The sources that compute a batch's numbers: a change to any of them trains the batch again, so
# a sweep never returns results of older code. Which kernels ran (dufm.kernels) is not part of a
# batch's key: both paths give the same numbers to rounding (tests/test_kernels.py).
_CODE = ("trainer.py", "_engine.py", "kernels.py", "_kernel_loops.py", "losses.py", "sweep.py")


def _code_fingerprint() -> str:
    """sha256 (first 16 hex digits) of the sources in ``_CODE``."""
    digest = hashlib.sha256()
    for name in _CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:16]


def _plain(settings: dict) -> dict:
    """``settings`` as plain JSON values (a torch dtype becomes its name), as stored and hashed."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _batch_key(settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _summarise(result) -> dict:
    """The compact per-run record of one trained batch (float64 CPU tensors)."""
    logits, logit_svals, feature_svals = [], [], []
    diverged = result.diverged or [None] * len(result.configs)
    for i in range(len(result.configs)):
        feats = forward(result.run_params(i), result.activation)
        if diverged[i] is not None:  # no singular values of a non-finite matrix
            feats = [torch.full_like(H, float("nan")) for H in feats]
            svals = [torch.full((min(H.shape),), float("nan"), dtype=H.dtype) for H in feats]
        else:
            svals = [torch.linalg.svdvals(H) for H in feats]
        logits.append(feats[-1])
        logit_svals.append(svals[-1])
        feature_svals.append(svals[:-1])
    return {
        "final_loss": result.final_loss.clone(),
        "logits": torch.stack(logits),
        "logit_svals": torch.stack(logit_svals),
        "feature_svals": feature_svals,
        "losses": result.losses.clone(),
        "record_steps": list(result.record_steps),
        "converged": bool(result.converged),
        "steps_done": int(result.steps_done),
        "run_steps": [int(s) for s in result.run_steps],
        "diverged": [None if s is None else int(s) for s in diverged],
    }


_PAYLOAD_KEYS = (
    "settings",
    "final_loss",
    "logits",
    "logit_svals",
    "feature_svals",
    "losses",
    "record_steps",
    "converged",
    "steps_done",
    "run_steps",
    "diverged",
)


def _save_atomic(payload: dict, path: Path) -> None:
    """Write ``payload`` to ``path`` so that a reader sees the old file or the whole new one."""
    write_atomic(path, lambda fh: torch.save(payload, fh))


def _load(path: Path, settings: dict):
    """A finished batch's record; None if the file is missing, unreadable or for other settings."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is retrained, not fatal
        warnings.warn(f"{path} is unreadable ({exc}); training that batch again", stacklevel=3)
        return None
    if not isinstance(payload, dict) or payload.get("settings") != settings:
        warnings.warn(f"{path} holds other settings; training that batch again", stacklevel=3)
        return None
    missing = [key for key in _PAYLOAD_KEYS if key not in payload]
    if missing:
        warnings.warn(f"{path} lacks {missing}; training that batch again", stacklevel=3)
        return None
    return payload


def run_sweep(
    configs,
    out_dir,
    *,
    K: int,
    n: int,
    L: int,
    batch_size: int = 256,
    progress: bool = True,
    stop_on_divergence: bool = False,
    executor=None,
    **train_kwargs,
) -> SweepResult:
    """Train every configuration, resuming from the finished batches in ``out_dir`` (Figs. 2, 5).

    ``configs``: ``dufm.trainer.RunConfig`` objects or dicts with keys seed, d, lam (optionally
    init_scale and lr; one without lr trains at the ``lr`` given here, or ``train``'s default).
    They are sorted by width (so a batch pads little) and cut into batches of ``batch_size``;
    ``train_kwargs`` go to ``dufm.trainer.train`` for every batch (steps, lr, activation, init,
    record_every, tol, device, dtype, compile). Each finished batch is saved at once, so an
    interruption loses only the batch in progress; a rerun with the same arguments trains only
    the missing batches. A progress bar over runs (stderr, updated at most every 5 s) shows
    the ETA across batches. A run whose loss becomes NaN or infinite is recorded as diverged
    (``SweepResult.diverged``, with a warning naming how many) and the sweep goes on; with
    ``stop_on_divergence=True`` the first divergence raises ``dufm.trainer.DivergenceError``.
    ``executor``: None trains the batches one after another in this process; a
    ``concurrent.futures.Executor`` (``client.get_executor()`` of a Dask client, see
    ``dufm.cluster``) gets every missing batch as one task at once, and each batch is saved here
    as its task finishes (the numbers are the same either way).
    """
    check_sizes(K=K, n=n, L=L)
    check_int("batch_size", batch_size, 1)
    check_bool("stop_on_divergence", stop_on_divergence)
    if "on_divergence" in train_kwargs:
        raise ValueError(
            "train argument on_divergence is not allowed in run_sweep: use stop_on_divergence"
        )
    clash = sorted(set(train_kwargs) & set(_FROM_CONFIGS))
    if clash:
        raise ValueError(
            f"train arguments {clash} are not allowed in run_sweep: seed, d, lam and init_scale "
            "come from configs"
        )
    defaults = _train_defaults()
    unknown = sorted(set(train_kwargs) - set(defaults))
    if unknown:
        raise ValueError(
            f"train arguments {unknown} are not allowed: dufm.trainer.train takes "
            f"{sorted(defaults)}"
        )
    lr = check_positive("lr", train_kwargs.pop("lr", defaults.pop("lr")))  # per run from here
    runs = [_as_run(c, i, lr) for i, c in enumerate(configs)]
    if not runs:
        raise ValueError("configs=[] is not allowed: give at least one run configuration")
    for i, run in enumerate(runs):
        if run.d < K:
            raise ValueError(
                f"configs[{i}].d={run.d} is not allowed: the width must be at least K={K}"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    order = sorted(range(len(runs)), key=lambda i: (runs[i].d, i))
    batches = [order[a : a + batch_size] for a in range(0, len(order), batch_size)]
    hashed = {
        k: str(v).removeprefix("torch.") if isinstance(v, torch.dtype) else v
        for k, v in {**defaults, **train_kwargs}.items()
        if k not in _NOT_HASHED
    }
    code = _code_fingerprint()
    records: dict[int, dict] = {}
    trained = loaded = 0
    pending = []
    for idx in batches:
        settings = _plain(
            {
                "format": FORMAT_VERSION,
                "code": code,
                "K": K,
                "n": n,
                "L": L,
                "train": hashed,
                "runs": [asdict(runs[i]) for i in idx],
            }
        )
        path = out / f"batch-{_batch_key(settings)}.pt"
        payload = _load(path, settings)
        if payload is None:
            pending.append((idx, settings, path))
        else:
            _collect(records, idx, payload)
            loaded += 1

    done_runs = len(runs) - sum(len(idx) for idx, _, _ in pending)
    bar = progress_bar(len(runs), "sweep", show=progress, initial=done_runs, unit="run")
    try:
        kwargs = {**train_kwargs, "on_divergence": "raise" if stop_on_divergence else "record"}
        # in this process, a batch shows its own bar too (steps done, runs settled)
        inner = (True,) if progress and executor is None else ()
        jobs = [
            ((idx, settings, path), (K, n, L, [runs[i] for i in idx], kwargs, *inner))
            for idx, settings, path in pending
        ]
        for (idx, settings, path), record in completed(_train_batch, jobs, executor):
            payload = {"settings": settings, **record}
            _save_atomic(payload, path)
            _collect(records, idx, payload)
            trained += 1
            bar.update(len(idx))
    finally:
        bar.close()
    result = _assemble(runs, records, trained, loaded)
    bad = [i for i, step in enumerate(result.diverged) if step is not None]
    if bad:
        shown = ", ".join(f"configs[{i}]={runs[i]}" for i in bad[:3])
        warnings.warn(
            f"{len(bad)} of {len(runs)} runs diverged (NaN or infinite loss) and are recorded as "
            f"diverged: {shown}{', ...' if len(bad) > 3 else ''}; a smaller lr avoids this",
            stacklevel=2,
        )
    return result


def _train_batch(
    K: int, n: int, L: int, runs: list, train_kwargs: dict, progress: bool = False
) -> dict:
    """Train one batch of ``RunConfig`` configurations and return its compact record (the task
    an executor's worker runs); ``progress`` shows the batch's own bar."""
    result = train(
        K,
        n,
        L,
        [r.d for r in runs],
        [r.lam for r in runs],
        seeds=[r.seed for r in runs],
        init_scale=[r.init_scale for r in runs],
        lr=[r.lr for r in runs],
        progress=progress,
        **train_kwargs,
    )
    return _summarise(result)


def _collect(records: dict, idx: list, payload: dict) -> None:
    for j, i in enumerate(idx):
        records[i] = {
            "final_loss": payload["final_loss"][j],
            "logits": payload["logits"][j],
            "logit_svals": payload["logit_svals"][j],
            "feature_svals": payload["feature_svals"][j],
            "losses": payload["losses"][j],
            "record_steps": payload["record_steps"],
            "converged": payload["converged"],
            "diverged": payload["diverged"][j],
            "run_steps": payload["run_steps"][j],
        }


def _assemble(runs: list, records: dict, trained: int, loaded: int) -> SweepResult:
    R = len(runs)
    rec = [records[i] for i in range(R)]
    m = max(s.numel() for r in rec for s in r["feature_svals"])
    L = len(rec[0]["feature_svals"])
    feature_svals = torch.zeros(R, L, m, dtype=torch.float64)
    for i, r in enumerate(rec):
        for layer, s in enumerate(r["feature_svals"]):
            feature_svals[i, layer, : s.numel()] = s
    return SweepResult(
        configs=list(runs),
        final_loss=torch.stack([r["final_loss"] for r in rec]),
        logits=torch.stack([r["logits"] for r in rec]),
        logit_svals=torch.stack([r["logit_svals"] for r in rec]),
        feature_svals=feature_svals,
        losses=[r["losses"] for r in rec],
        record_steps=[r["record_steps"] for r in rec],
        converged=[r["converged"] for r in rec],
        batches_trained=trained,
        batches_loaded=loaded,
        diverged=[r["diverged"] for r in rec],
        run_steps=[r["run_steps"] for r in rec],
    )
