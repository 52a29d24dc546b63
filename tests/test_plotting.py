"""Figure helpers: one legend entry per group of runs, one line per layer."""

import matplotlib.pyplot as plt
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
