"""Figure helpers shared by the chapters (loss curves, logit heatmaps, singular-value profiles)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
import torch


def logit_heatmap(ax, M: torch.Tensor, title: str = "") -> None:
    """Draw a K x K class-mean logit matrix (Figure 1, middle/right) with a diverging colour map."""
    M = M.detach().double().cpu().numpy()
    bound = abs(M).max() or 1.0
    sns.heatmap(M, ax=ax, cmap="RdBu_r", vmin=-bound, vmax=bound, square=True, cbar=True)
    ax.set_xlabel("class of the samples (column)")
    ax.set_ylabel("logit (row)")
    K = M.shape[0]
    ax.set_xticks([k + 0.5 for k in range(K)], [str(k + 1) for k in range(K)])
    ax.set_yticks([k + 0.5 for k in range(K)], [str(k + 1) for k in range(K)], rotation=0)
    if title:
        ax.set_title(title)


def loss_curves(ax, steps, losses, labels, references: dict | None = None) -> None:
    """Loss against gradient-descent step for several runs, with optional horizontal references.

    ``losses`` is (R, T); ``references`` maps a label to a loss value drawn as a dashed line.
    """
    losses = torch.as_tensor(losses).double().cpu().numpy()
    for row, label in zip(losses, labels, strict=True):
        ax.plot(steps, row, label=label)
    for (label, value), style in zip((references or {}).items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, color="k", linestyle=style, linewidth=1, label=label)
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 4.0):
    """A figure with ``ncols`` axes side by side and constrained layout."""
    return plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained")
