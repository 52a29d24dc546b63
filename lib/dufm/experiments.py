"""Compositions of the trainer that chapters use: training with snapshots of the parameters."""

from __future__ import annotations

import torch

from .progress import progress_bar
from .trainer import TrainResult, train
from .validation import check_int


def train_with_snapshots(snapshots: int, measure, **train_kwargs) -> tuple:
    """Train in ``snapshots`` equal segments and apply ``measure(result)`` after each one.

    Serves the balancedness figure of Lemma 1 (residual over training). ``train_kwargs`` are
    those of ``dufm.trainer.train``; ``steps`` is the total. Returns (final ``TrainResult``,
    the steps at which ``measure`` ran (0 included), the list of measurements, and the whole
    loss history as (steps, losses)).
    """
    check_int("snapshots", snapshots, 1)
    total = train_kwargs.pop("steps")
    show = train_kwargs.pop("progress", True)
    train_kwargs["progress"] = False
    segment = max(total // snapshots, 1)
    result: TrainResult = train(steps=0, **train_kwargs)
    points, values = [0], [measure(result)]
    steps_hist, loss_hist = [0], [result.losses[:, 0]]
    done = 0
    bar = progress_bar(total, "GD", show)
    while done < total:
        length = min(segment, total - done)
        result = train(
            steps=length, params=[P.double().cpu() for P in result.params], **train_kwargs
        )
        steps_hist += [done + s for s in result.record_steps[1:]]
        loss_hist += list(result.losses[:, 1:].unbind(dim=1))
        done += length
        points.append(done)
        values.append(measure(result))
        bar.update(length)
        bar.set_postfix(loss=f"{float(result.final_loss.max()):.6g}", refresh=False)
    bar.close()
    return result, points, values, (steps_hist, torch.stack(loss_hist, dim=1))
