"""Figure helpers: one legend entry per group of runs, one line per layer."""

import matplotlib.pyplot as plt
import pytest
import torch

from dufm.plotting import grouped_loss_curves, layer_singular_values


def test_grouped_loss_curves_give_one_legend_entry_per_group_and_reference():
    fig, ax = plt.subplots()
    losses = torch.rand(5, 4) + 0.1
    groups = ["init 0.05", "init 0.05", "stuck (a class not separated)", "init 0.3", "init 0.3"]
    grouped_loss_curves(ax, [0, 1, 2, 3], losses, groups, references={"bound": 0.1})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["init 0.05 (2 runs)", "stuck (a class not separated) (1 run)",
                      "init 0.3 (2 runs)", "bound"]  # fmt: skip
    assert len(ax.lines) == 6  # five runs and the reference
    grey = [line for line in ax.lines if line.get_color() == "0.55"]
    assert len(grey) == 1  # the stuck run is drawn in grey
    plt.close(fig)


def test_layer_singular_values_draw_each_matrix_down_to_the_floor():
    fig, ax = plt.subplots()
    rank_two = torch.randn(6, 2, dtype=torch.float64) @ torch.randn(2, 8, dtype=torch.float64)
    layer_singular_values(ax, [torch.eye(6), rank_two], ["$H_1$", "$Z$"], 5, floor=1e-17)
    assert [line.get_label() for line in ax.lines] == ["$H_1$", "$Z$"]
    assert len(ax.lines[1].get_ydata()) == 5 and min(ax.lines[1].get_ydata()) < 1e-10
    plt.close(fig)


def test_metric_trajectories_draw_each_layer_on_log_axes_with_a_floor():
    from dufm.plotting import metric_trajectories, metric_trajectory_figure

    steps, nan = [1, 10, 100], float("nan")
    values = {
        "rank": torch.tensor([[9.0, 9.0], [7.0, 5.0], [5.0, 4.0]]),
        "cdnv": torch.tensor([[1.0, 2.0], [0.1, 0.2], [0.0, 1e-3]]),
        "self_duality": torch.tensor([[nan, 1.0], [nan, 0.5], [nan, 0.1]]),
    }
    fig, axes = plt.subplots(1, 3)
    metric_trajectories(axes, steps, values, ["rank", "cdnv", "self_duality"], ["H_1", "H_2"])
    assert [ax.get_xscale() for ax in axes] == ["log"] * 3
    assert [ax.get_yscale() for ax in axes] == ["linear", "log", "log"]
    assert [line.get_label() for line in axes[0].lines] == ["H_1", "H_2"]
    assert list(axes[1].lines[0].get_ydata()) == pytest.approx([1.0, 0.1, 1e-8])  # 0 at the floor
    assert [line.get_label() for line in axes[2].lines] == ["H_2"]  # no line where all nan
    with pytest.raises(ValueError, match="steps="):
        metric_trajectories(axes, [0, 1, 2], values, ["rank"], ["H_1", "H_2"])
    with pytest.raises(ValueError, match="shape"):
        metric_trajectories(axes, [1, 2], values, ["rank"], ["H_1", "H_2"])
    plt.close(fig)
    fig = metric_trajectory_figure(steps, values, ["rank", "cdnv", "self_duality"], ["H_1", "H_2"],
                                   "a run", ncols=2)  # fmt: skip
    assert sum(ax.get_visible() for ax in fig.axes) == 3 and len(fig.legends) == 1
    plt.close(fig)


def test_threshold_sign_change_draws_each_structure_on_a_symmetric_log_axis():
    from dufm.plotting import threshold_sign_change

    points = [("dnc", 4, 2, 0.9, -1e-3), ("dnc", 6, 3, 1.2, 1e-2), ("pair", 4, 2, 1.1, 1e-5)]
    fig, axes = plt.subplots(1, 2)
    threshold_sign_change(axes, points, [4, 5, 6], [1, 2, 3])
    assert [len(ax.collections) for ax in axes] == [2, 1]
    assert [ax.get_yscale() for ax in axes] == ["symlog", "symlog"]
    assert [ax.get_xscale() for ax in axes] == ["log", "log"]
    assert axes[0].collections[1].get_facecolor()[0][:3] == pytest.approx(
        (0.17, 0.63, 0.17), abs=0.01
    )
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
    assert labels == [["K = 4", "K = 5", "K = 6"], ["L = 2", "L = 3"]]
    plt.close(fig)


def test_flatness_ratio_curves_draw_a_line_a_star_and_a_limit_per_curve():
    from dufm.plotting import flatness_ratio_curves

    curve = {"K": 4, "L": 2, "lams": [0.1, 0.01], "ratios": [1.2, 1.1], "measured": 1.05,
             "limit": 1.0}  # fmt: skip
    curves = {"frobenius": [curve], "spectral": [curve, {**curve, "K": 6, "L": 1}]}
    fig, axes = plt.subplots(1, 2)
    flatness_ratio_curves(axes, curves, 1e-3, [4, 6], [1, 2])
    assert [len(ax.lines) for ax in axes] == [3, 6]  # line, star, limit per curve
    assert axes[0].lines[1].get_xdata()[0] == 1e-3 and axes[0].lines[2].get_ydata()[0] == 1.0
    assert [ax.get_title() for ax in axes] == ["frobenius norm", "spectral norm"]
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
    assert labels == [["K = 4", "K = 6"], ["L = 1", "L = 2"]]
    plt.close(fig)
