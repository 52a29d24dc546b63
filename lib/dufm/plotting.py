"""Figure helpers shared by the chapters (loss curves, logit heatmaps, singular-value profiles)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter


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


def region_map(ax, codes, Ks, Ls, categories: dict, outline=None, title: str = "") -> None:
    """Categorical (K, L) map (Theorem 1): one coloured cell per (K, L), a legend, an outline.

    ``codes`` (len(Ks), len(Ls)) holds integer codes; ``categories`` maps each code to
    (label, colour). ``outline`` is an optional boolean array of the same shape whose region's
    boundary is drawn as a thick black line (e.g. the region stated in the paper).
    """
    codes = np.asarray(codes)
    keys = sorted(categories)
    index = {key: i for i, key in enumerate(keys)}
    mapped = np.vectorize(index.get)(codes)
    cmap = ListedColormap([categories[key][1] for key in keys])
    x_edges = np.arange(len(Ks) + 1) + Ks[0] - 0.5
    y_edges = np.arange(len(Ls) + 1) + Ls[0] - 0.5
    ax.pcolormesh(x_edges, y_edges, mapped.T, cmap=cmap, vmin=-0.5, vmax=len(keys) - 0.5)
    if outline is not None:
        inside = np.pad(np.asarray(outline, dtype=bool), 1)
        last_i, last_j = inside.shape[0] - 2, inside.shape[1] - 2
        for i in range(inside.shape[0] - 1):
            for j in range(inside.shape[1] - 1):
                x, y = Ks[0] - 1.5 + i, Ls[0] - 1.5 + j
                # boundaries between two cells of the map (not along the map's outer edge)
                if inside[i, j] != inside[i + 1, j] and 0 < j and 0 < i < last_i:
                    ax.plot([x + 1, x + 1], [y, y + 1], color="k", linewidth=2.5)
                if inside[i, j] != inside[i, j + 1] and 0 < i and 0 < j < last_j:
                    ax.plot([x, x + 1], [y + 1, y + 1], color="k", linewidth=2.5)
    ax.set_xlabel("number of classes K")
    ax.set_ylabel("depth L")
    ax.set_xticks(list(Ks)[::2])
    ax.set_yticks(list(Ls))
    present = [key for key in keys if (codes == key).any()]
    handles = [
        Patch(facecolor=categories[key][1], edgecolor="0.4", label=categories[key][0])
        for key in present
    ]
    if outline is not None:
        handles.append(plt.Line2D([], [], color="k", linewidth=2.5, label="stated region"))
    ax.legend(
        handles=handles, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2
    )
    if title:
        ax.set_title(title)


def singular_value_scatter(ax, depths, values, floor: float, color: str = "C0", label: str = ""):
    """Singular values against depth on a log scale, with multiplicities and exact zeros (Thm 3).

    ``values[j]`` holds the singular values at ``depths[j]``. Equal values (to 1e-6 relative) are
    drawn as one dot labelled with their multiplicity; exact zeros, which a log scale cannot show,
    are drawn as crosses at ``floor`` labelled with their count.
    """
    first = True
    for L, row in zip(depths, values, strict=True):
        row = np.sort(np.asarray(row, dtype=float))[::-1]
        nonzero, zeros = row[row > 0], int((row == 0).sum())
        groups = []
        for value in nonzero:
            if groups and abs(groups[-1][0] - value) <= 1e-6 * groups[-1][0]:
                groups[-1][1] += 1
            else:
                groups.append([value, 1])
        for value, count in groups:
            ax.plot(L, value, "o", color=color, label=label if first else None)
            first = False
            if count > 1:
                _count_label(ax, f"{count}×", (L, value), color)
        if zeros:
            ax.plot(L, floor, "x", color="C3", markersize=7)
            _count_label(ax, f"{zeros}", (L, floor), "C3")
    ax.set_yscale("log")
    ax.set_xticks(list(depths))
    ax.set_xlabel("depth L")


def _count_label(ax, text: str, xy, color) -> None:
    """A small count written just above and right of a marker (singular_value_scatter)."""
    ax.annotate(
        text, xy, textcoords="offset points", xytext=(5, 3), fontsize="x-small", color=color
    )


def threshold_sign_change(axes, points, Ks, depths) -> None:
    """Chapter 6's Hessian figure: the smallest eigenvalue off the symmetry orbit against the
    scale in units of its threshold, DNC on ``axes[0]``, the pair structure on ``axes[1]``.

    ``points``: (structure, K, L, scale / threshold, value) as ``dufm.critical_grid.
    sign_change_points`` gives them; colour by K (the index in ``Ks``), marker by L (the depths
    >= 2 of ``depths``). The horizontal axis is logarithmic, the vertical one symmetric-log
    (linear within 1e-4), with reference lines at a scale of 1 and a value of 0.
    """
    markers = dict(zip((L for L in depths if L >= 2), ["o", "s", "^", "D", "v", "P"], strict=False))
    colours = {K: f"C{i}" for i, K in enumerate(Ks)}
    for ax, structure in zip(axes, ("dnc", "pair"), strict=True):
        for s, K, L, x, y in points:
            if s == structure:
                ax.scatter(x, y, s=16, marker=markers[L], color=colours[K], alpha=0.7)
        ax.axvline(1, color="gray", lw=0.8, ls="--")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xlabel("α / α_c" if structure == "dnc" else "β / β_c")
        ax.set_title("DNC" if structure == "dnc" else "pair structure (even K)")
    axes[0].set_ylabel("smallest eigenvalue off the orbit\n/ largest eigenvalue")
    axes[0].legend(
        handles=[
            Line2D([], [], ls="", marker="o", color=c, label=f"K = {K}") for K, c in colours.items()
        ],
        fontsize="small",
    )
    axes[1].legend(
        handles=[
            Line2D([], [], ls="", marker=m, color="gray", label=f"L = {L}")
            for L, m in markers.items()
        ],
        fontsize="small",
    )


def flatness_ratio_curves(axes, curves: dict, far_lam: float, Ks, depths) -> None:
    """Chapter 6's flatness figure: F_DNC / F_LR against lam, one panel per norm of ``curves``.

    ``curves`` maps a norm to its curves (``dufm.critical_grid.flatness_ratio_series``): each a
    line through its ratios (colour by K, the index in ``Ks``; line style by L, ``depths``), a
    star at (``far_lam``, the ratio measured there) and a thin horizontal line at its limit.
    """
    styles = dict(zip(depths, ["-", "--", ":", "-.", (0, (1, 3))], strict=False))
    colours = {K: f"C{i}" for i, K in enumerate(Ks)}
    for ax, (norm, lines) in zip(axes, curves.items(), strict=True):
        for c in (c for c in lines if c["L"] in styles):
            style, colour = styles[c["L"]], colours[c["K"]]
            ax.plot(c["lams"], c["ratios"], ls=style, marker="o", ms=3, color=colour)
            ax.plot(far_lam, c["measured"], "*", ms=8, color=colour)
            ax.axhline(c["limit"], color=colour, lw=0.6, ls=style)
        ax.set(xscale="log", xlabel="weight decay λ", title=f"{norm} norm")
    axes[0].set_ylabel("F_DNC / F_LR")
    axes[0].legend(
        handles=[Line2D([], [], color=colours[K], label=f"K = {K}") for K in Ks if K % 2 == 0],
        fontsize="small",
    )
    axes[1].legend(
        handles=[Line2D([], [], color="gray", ls=s, label=f"L = {L}") for L, s in styles.items()],
        fontsize="small",
    )


def grouped_loss_curves(ax, steps, losses, groups, references: dict | None = None) -> None:
    """Loss curves coloured by group, one legend entry per group (chapter 8's Figure 6).

    ``losses`` (R, T) recorded at ``steps``; ``groups`` R labels (runs with the same label share
    a colour and a legend entry, which gives the group's size); ``references`` maps a label to a
    loss drawn as a black horizontal line (dashed, dotted, dash-dotted). The legend sits below
    the axes, in text at 9 pt, so that it reads at the width of the book's content column.
    """
    losses = torch.as_tensor(losses).double().cpu().numpy()
    names = list(dict.fromkeys(groups))
    for k, name in enumerate(names):
        rows = [row for row, group in zip(losses, groups, strict=True) if group == name]
        colour = f"C{k}" if not name.startswith("stuck") else "0.55"
        for j, row in enumerate(rows):
            label = f"{name} ({len(rows)} run{'s' * (len(rows) != 1)})" if j == 0 else None
            ax.plot(steps, row, color=colour, linewidth=1.2, alpha=0.85, label=label)
    for (label, value), style in zip((references or {}).items(), ("--", ":", "-."), strict=False):
        ax.axhline(value, color="k", linestyle=style, linewidth=1.2, label=label)
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=9, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.17))


def layer_singular_values(ax, matrices, names, count: int, floor: float = 1e-17) -> None:
    """The largest ``count`` singular values of each matrix, one line per matrix, on a log scale
    (chapter 8: the feature matrices H_1, ..., H_L and Z of a Figure-6 run); exact zeros are
    drawn at ``floor``. Legend at 9 pt."""
    for name, M in zip(names, matrices, strict=True):
        sv = torch.linalg.svdvals(M.double()).cpu().numpy()[:count]
        ax.semilogy(np.arange(1, len(sv) + 1), np.maximum(sv, floor), "o-", ms=4, label=name)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value $s_i$")
    ax.legend(fontsize=9)


def metric_trajectories(axes, steps, values: dict, names, layer_labels, floor: float = 1e-8):
    """Collapse metrics against the training step on log axes, one line per head layer (chapter 9).

    ``axes``: one axis per metric of ``names``; ``values``: {name: (T, L)} for one run (a
    ``dufm.network_outcomes.trajectories`` entry at that run), measured at ``steps`` (T steps,
    all >= 1); ``layer_labels``: L names. Both axes are logarithmic, as the neural-collapse
    literature draws these curves, except for ``"rank"`` (a count, linear axis); values below
    ``floor`` (an exact 0, say) are drawn at ``floor``, and a metric that is nan for a layer
    (the self-duality of a layer that is not the classifier) draws no line for it.
    """
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or not len(steps) or steps.min() < 1:
        raise ValueError(f"steps={steps.tolist()} is not allowed: need steps >= 1 for a log axis")
    names = list(names)
    if len(axes) < len(names):
        raise ValueError(f"axes has {len(axes)} axes: need one per metric ({len(names)})")
    for ax, name in zip(axes, names, strict=False):
        data = torch.as_tensor(values[name]).double().cpu().numpy()
        if data.shape != (len(steps), len(layer_labels)):
            raise ValueError(
                f"values[{name!r}] has shape {data.shape}: need (steps, layers) = "
                f"({len(steps)}, {len(layer_labels)})"
            )
        for j, label in enumerate(layer_labels):
            column = data[:, j]
            if np.isnan(column).all():
                continue
            shown = column if name == "rank" else np.maximum(column, floor)
            ax.plot(steps, shown, "o-", ms=2, lw=1, color=f"C{j}", label=label)
        ax.set_xscale("log")
        if name != "rank":
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")


def metric_trajectory_figure(steps, values: dict, names, layer_labels, title: str, ncols: int = 4):
    """A figure of ``metric_trajectories``: one small panel per metric, ``ncols`` per row, one
    legend (the layers) and the title above; returns the figure."""
    names = list(names)
    rows = -(-len(names) // ncols)
    fig, axes = plt.subplots(
        rows, ncols, figsize=(2.6 * ncols, 2.2 * rows + 0.6), layout="constrained", squeeze=False
    )
    flat = list(axes.flat)
    metric_trajectories(flat, steps, values, names, layer_labels)
    for ax in flat[len(names) :]:
        ax.set_visible(False)
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    fig.suptitle(title, fontsize="medium")
    return fig
