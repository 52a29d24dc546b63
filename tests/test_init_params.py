"""Unit tests of dufm.trainer.init_params: the scale of the initial output across widths.

Chapter 5 repeats its width sweep with ``init="fixed_output"`` to separate the width from the
initial output scale; these tests measure that scale on drawn parameters at several widths.
"""

import math

import pytest
import torch

from dufm.losses import forward
from dufm.outcomes import initial_output_std
from dufm.trainer import INIT_SCHEMES, init_params, make_runs

K, n = 10, 5
WIDTHS = (10, 40, 150)
SEEDS = range(300)


@pytest.mark.parametrize("L", [2, 3])
def test_fixed_output_init_has_the_same_output_scale_at_every_width(L):
    scale = 1.3
    stds = [initial_output_std(K, n, L, d, "fixed_output", scale, SEEDS) for d in WIDTHS]
    for d, std in zip(WIDTHS, stds, strict=True):
        assert std == pytest.approx(scale**L, rel=0.03), (d, std)
    assert max(stds) / min(stds) < 1.03, stds


@pytest.mark.parametrize("L", [2, 3])
def test_fan_in_init_output_scale_falls_like_the_inverse_square_root_of_the_width(L):
    scale = 1.3
    stds = [initial_output_std(K, n, L, d, "fan_in", scale, SEEDS) for d in WIDTHS]
    for d, std in zip(WIDTHS, stds, strict=True):
        assert std == pytest.approx(scale ** (L + 1) / math.sqrt(d), rel=0.03), (d, std)
    assert stds[0] / stds[-1] == pytest.approx(math.sqrt(WIDTHS[-1] / WIDTHS[0]), rel=0.05)


def test_normal_init_output_scale_grows_like_the_width_to_the_power_L_over_2():
    L, scale = 2, 0.7
    stds = [initial_output_std(K, n, L, d, "normal", scale, SEEDS) for d in WIDTHS]
    for d, std in zip(WIDTHS, stds, strict=True):
        assert std == pytest.approx(scale ** (L + 1) * d ** (L / 2), rel=0.03), (d, std)


@pytest.mark.parametrize("init", INIT_SCHEMES)
def test_each_scheme_draws_H1_then_every_W_from_the_run_seed_at_its_stated_scale(init):
    L, d, scale, seed = 3, 12, 0.9, 5
    (run,) = make_runs([seed], d, scale, 1e-3, 0.5)
    params = [P[0] for P in init_params(K, n, L, [run], init)]
    gen = torch.Generator().manual_seed(seed)
    w_std = scale if init == "normal" else scale / math.sqrt(d)
    h_std = 1.0 if init == "fixed_output" else w_std
    shapes = [(d, K * n)] + [(d, d)] * (L - 1) + [(K, d)]
    for j, (P, shape) in enumerate(zip(params, shapes, strict=True)):
        expected = torch.randn(*shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(P, expected * (h_std if j == 0 else w_std), rtol=0, atol=0)


def test_fixed_output_run_starts_the_same_alone_and_padded_in_a_wider_batch():
    L, scale = 2, 1.1
    alone = init_params(K, n, L, make_runs([3], 12, scale, 1e-3, 0.5), "fixed_output")
    batch = init_params(K, n, L, make_runs([7, 3], [30, 12], scale, 1e-3, 0.5), "fixed_output")
    for P, Q in zip(alone, batch, strict=True):
        rows, cols = P.shape[1:]
        torch.testing.assert_close(Q[1, :rows, :cols], P[0], rtol=0, atol=0)
        outside = Q[1].clone()
        outside[:rows, :cols] = 0
        assert not outside.any()  # zero padding outside its own block
    torch.testing.assert_close(forward([P[1:] for P in batch])[-1], forward(alone)[-1])


def test_fixed_output_with_gain_sqrt_d0_draws_the_normal_init_at_width_d0():
    L, d0 = 2, 70
    runs = make_runs(range(4), d0, 1.0, 1e-3, 0.5)
    gained = make_runs(range(4), d0, math.sqrt(d0), 1e-3, 0.5)
    for P, Q in zip(
        init_params(K, n, L, runs, "normal"),
        init_params(K, n, L, gained, "fixed_output"),
        strict=True,
    ):
        torch.testing.assert_close(Q, P, rtol=0, atol=0)


def test_init_params_rejects_an_unknown_scheme_by_name():
    runs = make_runs([0], 12, 1.0, 1e-3, 0.5)
    with pytest.raises(ValueError, match="init='xavier'.*fixed_output"):
        init_params(K, n, 2, runs, "xavier")
