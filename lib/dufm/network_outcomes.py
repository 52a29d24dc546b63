"""What a trained real network ended in (chapter 9; Figures 3, 4, 7 and 8).

For the runs of a ``dufm.networks.train_network`` result:

- ``head_layer_metrics``: per run and head layer, the rank under the library's cut-off, the
  paper's DNC1-3 (Definition 1, ``dufm.metrics.dnc1``-``dnc3``) and the field's metrics
  (``dufm.metrics.field_metrics``: Papyan et al.'s NC1-NC4, the CDNV); pass it as
  ``train_network(..., measure=partial(head_layer_metrics, activation=...))`` to measure them
  against the training step, and ``trajectories`` stacks those snapshots;
- ``run_summary``: final loss, ranks and singular-value counts of every feature matrix, the
  structure of the logits and the relative loss change over the last tenth of training (the
  settling test, ``dufm.checks.loss_tail_change``);
- ``rank_trend``: whether smaller initial scales end in lower ranks, over seeds (a permutation
  test, ``dufm.stats.increasing_trend_pvalue``);
- ``runs_settled``: which runs settled (relative loss change over the last tenth of training
  within a tolerance, ``dufm.checks.loss_settled``);
- ``verdict``: a result's verdict from a settled measurement;
- ``snapshot_schedule``: log-spaced steps at which to measure the metrics during training;
- ``layer_metric_rows``: the final metrics of one run, one table row per head layer;
- ``check_chapter_parameters``: chapter 9's parameter check.

Ranks use the book's one cut-off, ``dufm.metrics.numerical_rank`` at its default ``RANK_RTOL``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable

import torch

from .checks import loss_settled, loss_tail_change
from .metrics import (
    classify_structure,
    dnc1,
    dnc2,
    dnc3,
    field_metrics,
    numerical_rank,
    singular_values,
)
from .stats import increasing_trend_pvalue
from .structures import expand_classes, simplex_matrix
from .validation import (
    _fail,
    check_activation,
    check_bool,
    check_choice,
    check_device,
    check_dtype,
    check_int,
    check_int_list,
    check_nonnegative,
    check_number_list,
    check_positive,
)

# The per-layer metrics of ``head_layer_metrics``: the rank, the paper's DNC1-3, the field's.
PAPER_METRICS = ("rank", "DNC1", "DNC2", "DNC3")
FIELD_METRICS = (
    "papyan_nc1",
    "cdnv",
    "equinorm",
    "equiangularity",
    "max_angle_gap",
    "self_duality",
    "ncc_mismatch",
)
LAYER_METRICS = PAPER_METRICS + FIELD_METRICS
# The book's rank cut-off: singular values above this times the largest (numerical_rank's default).
RANK_RTOL = inspect.signature(numerical_rank).parameters["rtol"].default


def _layer_input(H: torch.Tensor, layer: int, activation: str) -> torch.Tensor:
    """The matrix W_layer reads: H_1, then act(H_l) (layers numbered from 1)."""
    return torch.relu(H) if activation == "relu" and layer >= 2 else H


def head_layer_metrics(
    features: list, weights: list, activation: str = "linear", rank_rtol: float = RANK_RTOL
) -> dict:
    """Every metric of ``LAYER_METRICS`` for each run and head layer l = 1..L (chapter 9).

    ``features`` = [H_1, ..., H_L, Z] (each (R, rows, N), columns in class order, n per class)
    and ``weights`` = [W_1, ..., W_L] (each (R, rows, cols)), as ``train_network`` returns them.
    On layer l's features H_l (pre-activations): ``rank`` (singular values above ``rank_rtol``
    times the largest, ``dufm.metrics.numerical_rank``), DNC1, DNC2, and the field's
    papyan_nc1, cdnv, equinorm, equiangularity, max_angle_gap and ncc_mismatch (nearest class
    centre of H_l against the network's prediction argmax Z). On W_l and the matrix it reads
    (H_1, then act(H_l)): DNC3, and for l = L the self-duality of the classifier W_L (nan for
    l < L, whose W_l is not a classifier). Returns {metric: tensor (R, L) float64}.
    """
    check_activation(activation)
    check_positive("rank_rtol", rank_rtol)
    if len(features) != len(weights) + 1:
        _fail("features", len(features), f"must hold L + 1 = {len(weights) + 1} matrices")
    K, N = features[-1].shape[-2:]
    labels = torch.arange(K).repeat_interleave(N // K)
    R, L = features[0].shape[0], len(weights)
    out = {name: torch.full((R, L), math.nan, dtype=torch.float64) for name in LAYER_METRICS}
    for r in range(R):
        Z = features[-1][r].double()
        for j in range(L):  # layer j + 1
            H = features[j][r].double()
            H_in = _layer_input(H, j + 1, activation)
            W = weights[j][r].double()
            field = field_metrics(H, labels, Z=Z)
            if j == L - 1:
                field["self_duality"] = field_metrics(H_in, labels, W=W)["self_duality"]
            values = {
                "rank": numerical_rank(H, rank_rtol),
                "DNC1": dnc1(H, K),
                "DNC2": dnc2(H, K),
                "DNC3": dnc3(W, H_in, K),
                **field,
            }
            for name, value in values.items():
                out[name][r, j] = value
    return out


def trajectories(result) -> dict:
    """The ``head_layer_metrics`` snapshots of a ``train_network`` result, stacked against the
    step: {metric: tensor (R, T, L)} for T = len(result.snapshot_steps)."""
    if not result.snapshots:
        _fail("result.snapshots", [], "is empty: train with snapshot_steps and a measure")
    names = result.snapshots[0]
    return {name: torch.stack([s[name] for s in result.snapshots], dim=1) for name in names}


def singular_value_counts(features: list, threshold: float = 1e-6) -> list:
    """Per layer, the number of singular values above ``threshold`` of each run's feature matrix.

    Figures 3 and 7 (the paper counts singular values above 1e-6). ``features`` is
    ``NetworkResult.features`` ([H_1, ..., H_L, Z], each (R, rows, N)); returns a list of
    (R,) integer tensors, one per layer.
    """
    check_nonnegative("threshold", threshold)
    return [(singular_values(F) > threshold).sum(dim=-1) for F in features]


def run_summary(result, r: int, rank_rtol: float = RANK_RTOL, threshold: float = 1e-6) -> dict:
    """What run r of a ``train_network`` result ended in (chapter 9's tables and checks).

    Returns a dict: ``loss`` and ``fit`` (final full-data loss and mean cross-entropy),
    ``ranks`` (per feature matrix [H_1, ..., H_L, Z], the number of singular values above
    ``rank_rtol`` times the largest: ``dufm.metrics.numerical_rank``), ``counts`` (per feature
    matrix, singular values above the absolute ``threshold``, the paper's 1e-6 criterion),
    ``structure`` and ``dnc_distance`` (``dufm.metrics.classify_structure`` of Z: its name and
    the normalised Frobenius distance of Z from S kron 1_n^T), ``change`` (the relative loss
    change over the last tenth of training: the range of the loss over that window relative to
    the final loss, ``dufm.checks.loss_tail_change``) and the run's ``seed`` and ``init_scale``.
    """
    check_int("r", r, 0)
    if r >= len(result.seeds):
        _fail("r", r, f"must be below the number of runs {len(result.seeds)}")
    check_positive("rank_rtol", rank_rtol)
    Z = result.logits[r]
    template = expand_classes(simplex_matrix(result.K), result.n)
    distance = torch.linalg.matrix_norm(
        Z / torch.linalg.matrix_norm(Z) - template / torch.linalg.matrix_norm(template)
    )
    return {
        "loss": float(result.losses[r, -1]),
        "fit": float(result.fits[r, -1]),
        "ranks": [numerical_rank(F[r], rank_rtol) for F in result.features],
        "counts": [int(c[r]) for c in singular_value_counts(result.features, threshold)],
        "structure": classify_structure(Z).name,
        "dnc_distance": float(distance),
        "change": loss_tail_change(result.losses[r], result.record_steps),
        "seed": result.seeds[r],
        "init_scale": result.init_scales[r],
    }


def rank_trend(scales, ranks, permutations: int = 20000) -> dict:
    """Do smaller initial scales end in lower ranks? Measured over the seeds of each scale.

    ``scales`` and ``ranks``: one entry per run (several seeds per scale). Returns
    ``mean_ranks`` {scale: mean rank over its seeds}, ``monotone`` (the mean rank never falls as
    the scale grows and rises somewhere) and ``p`` (one-sided permutation p-value of "the rank
    increases with the scale", ``dufm.stats.increasing_trend_pvalue``; 1.0 with one scale).
    """
    scales, ranks = [float(s) for s in scales], [float(k) for k in ranks]
    if len(scales) != len(ranks) or not scales:
        _fail("ranks", ranks, f"must hold one rank per run ({len(scales)} scales given)")
    levels = sorted(set(scales))
    pairs = list(zip(scales, ranks, strict=True))
    means = {s: sum(k for t, k in pairs if t == s) / scales.count(s) for s in levels}
    seq = [means[s] for s in levels]
    monotone = all(a <= b for a, b in zip(seq, seq[1:], strict=False)) and seq[0] < seq[-1]
    if len(levels) < 2:
        return {"mean_ranks": means, "monotone": False, "p": 1.0}
    p = increasing_trend_pvalue(scales, ranks, permutations=permutations)
    return {"mean_ranks": means, "monotone": monotone, "p": p}


def runs_settled(result, tol: float) -> list[bool]:
    """Per run of a ``train_network`` result: did its full-data loss settle? True when the loss
    moved by at most ``tol`` (relative to its final value) over the last tenth of training
    (``dufm.checks.loss_settled`` on ``result.losses`` at ``result.record_steps``)."""
    check_positive("tol", tol)
    return [bool(x) for x in loss_settled(result.losses, tol, result.record_steps)]


def verdict(holds: bool, settled) -> str:
    """A result's verdict from a measurement: "not settled" while any of its runs still moves
    (``settled``: a bool, or one bool per run behind the result), else "reproduced" when the
    paper's claim ``holds`` and "not reproduced" when it does not."""
    if isinstance(settled, Iterable):
        settled = list(settled)
        if not settled:
            _fail("settled", settled, "must name at least one run")
        settled = all(bool(x) for x in settled)
    if not settled:
        return "not settled"
    return "reproduced" if holds else "not reproduced"


def snapshot_schedule(steps: int, count: int) -> list[int]:
    """About ``count`` steps from 1 to ``steps``, evenly spaced on a log axis (the NC literature
    plots its metrics against the training step on log axes): the distinct integers nearest
    to a geometric sequence from 1 to ``steps``, both ends included."""
    check_int("steps", steps, 1)
    check_int("count", count, 2)
    points = {round(steps ** (i / (count - 1))) for i in range(count)}
    return sorted(points | {1, steps})


def _format_metric(name: str, value: float) -> str:
    if math.isnan(value):
        return "–"
    return str(int(value)) if name == "rank" else f"{value:.3g}"


def layer_metric_rows(metrics: dict, r: int, names=LAYER_METRICS, label: str = "") -> list:
    """Table rows of run r: one per head layer l = 1..L, [label, "H_l", the value of each of
    ``names``] from ``head_layer_metrics`` output ``metrics`` ({name: (R, L)}); ranks as
    integers, other values to 3 significant digits, "–" where a metric does not apply (nan)."""
    check_int("r", r, 0)
    for name in names:
        if name not in metrics:
            _fail("names", name, f"must be metrics of the table: {sorted(metrics)}")
    R, L = metrics[names[0]].shape
    if r >= R:
        _fail("r", r, f"must be below the number of runs {R}")
    return [
        [label, f"H_{j + 1}", *(_format_metric(m, float(metrics[m][r, j])) for m in names)]
        for j in range(L)
    ]


def any_run_verdict(holds, settled) -> str:
    """The verdict of a claim that some run shows (e.g. "gradient descent reaches a low-rank
    solution below the DNC bound"), from one ``holds`` and one ``settled`` flag per run:
    "reproduced" when a settled run shows it; "not reproduced" when every run settled and none
    shows it; else "not settled" (a run that still moves may yet show it)."""
    holds, settled = [bool(h) for h in holds], [bool(s) for s in settled]
    if not holds or len(holds) != len(settled):
        _fail("settled", settled, f"must hold one flag per run ({len(holds)} runs)")
    if any(h and s for h, s in zip(holds, settled, strict=True)):
        return "reproduced"
    return "not reproduced" if all(settled) else "not settled"


def check_chapter_parameters(p) -> None:
    """Check chapter 9's parameters (a mapping such as the notebook's ``globals()``), each by
    its own name, before any computation: a bad value raises a ValueError naming the
    parameter, its value and what is allowed (``dufm.validation``)."""
    from .backbones import BACKBONES
    from .data import DATASETS

    check_choice("dataset", p["dataset"], DATASETS)
    if p["dataset"] in ("mnist", "cifar10") and not p["data_dir"]:
        _fail("data_dir", p["data_dir"], f"must name the folder that holds {p['dataset']} "
              "(README: Data sets)")  # fmt: skip
    check_choice("backbone", p["backbone"], BACKBONES)
    check_bool("standardise", p["standardise"])
    check_int_list("mlp_hidden", p["mlp_hidden"], 1)
    check_int_list("seeds", p["seeds"], 0)
    check_number_list("init_scales", p["init_scales"], positive=True)
    check_int("d", p["d"], 10)
    check_int("snapshots", p["snapshots"], 2)
    for name in ("L_linear", "L_relu", "L_standard", "steps", "steps_relu", "steps_standard",
                 "record_every", "torch_threads"):  # fmt: skip
        check_int(name, p[name], 1)
    for name in ("n_per_class", "batch_size", "warmup_steps", "seed"):
        check_int(name, p[name], 0)
    for name in ("lam_W", "lam_H", "lam", "lr_linear", "lr_relu", "lr_standard",
                 "init_scale", "settle_tol", "margin_tol", "trend_alpha"):  # fmt: skip
        check_positive(name, p[name])
    check_nonnegative("sv_threshold", p["sv_threshold"])
    check_device(p["device"])
    check_dtype(p["dtype"])
