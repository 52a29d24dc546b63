"""Batched backbones of chapter 9's real networks (Figures 3, 4, 7, 8; ``dufm.networks``).

- Backbones (``BACKBONES``): ``"resnet20"``, the CIFAR-style ResNet-20 of He et al. (three stages of
  three basic blocks with 3x3 convolutions, batch normalisation, parameter-free shortcuts that
  subsample and zero-pad the channels, global average pooling; widths d/4, d/2, d, which is
  16/32/64 for the paper's d = 64, about 0.27 M parameters for 3-channel input), ``"resnet8"``
  (the same with one block per stage) and ``"mlp"`` (fully connected ReLU layers on the
  flattened image, a CPU-sized backbone). Every backbone ends in a ReLU, so H_1 >= 0 like the
  pooled features of a ResNet.
- R independent networks (seeds, initial scales of the head) train as one tensor program: a
  convolution of the R networks is one grouped convolution (``groups=R``) and a linear layer one
  batched matrix product, so the runs never mix and never loop in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .validation import _fail, check_int

BACKBONES = ("resnet20", "resnet8", "mlp")


def _kaiming_(tensor: torch.Tensor, runs: int, fan_in: int, gens: list) -> None:
    """Fill a run-major parameter (its first dimension splits into R equal slices) with
    N(0, 2/fan_in), slice r from generator r (drawn in float64 on the CPU: the same on any
    device)."""
    with torch.no_grad():
        for r, chunk in enumerate(tensor.chunk(runs, dim=0)):
            draw = torch.randn(chunk.shape, generator=gens[r], dtype=torch.float64)
            chunk.copy_(draw * math.sqrt(2.0 / fan_in))


class _Block(nn.Module):
    """A basic residual block of R networks: conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU."""

    def __init__(self, runs: int, c_in: int, c_out: int, stride: int, gens: list):
        super().__init__()
        self.runs, self.c_in, self.c_out, self.stride = runs, c_in, c_out, stride
        R = runs
        self.conv1 = nn.Conv2d(R * c_in, R * c_out, 3, stride, 1, groups=R, bias=False)
        self.bn1 = nn.BatchNorm2d(R * c_out)
        self.conv2 = nn.Conv2d(R * c_out, R * c_out, 3, 1, 1, groups=R, bias=False)
        self.bn2 = nn.BatchNorm2d(R * c_out)
        _kaiming_(self.conv1.weight, R, 9 * c_in, gens)
        _kaiming_(self.conv2.weight, R, 9 * c_out, gens)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.c_in == self.c_out:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        N, _, h, w = x.shape
        pad = self.c_out - self.c_in
        x = x.reshape(N, self.runs, self.c_in, h, w)
        x = nn.functional.pad(x, (0, 0, 0, 0, pad // 2, pad - pad // 2))
        return x.reshape(N, self.runs * self.c_out, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class BatchedResNet(nn.Module):
    """R independent CIFAR-style ResNets (6 ``blocks`` + 2 layers) as one module (Figures 3, 4, 7).

    Stages of ``blocks`` basic blocks with widths (d/4, d/2, d), the second and third starting
    with stride 2; a 3x3 stem convolution to d/4 channels; global average pooling. ``blocks=3``
    with d = 64 is ResNet-20 (269,072 parameters for 3-channel input, 268,784 for 1 channel).
    Input (N, C, H, W) shared by all runs; output (R, N, d), nonnegative.
    """

    def __init__(self, runs: int, in_channels: int, d: int, blocks: int, seeds: Sequence[int]):
        super().__init__()
        check_int("runs", runs, 1)
        check_int("in_channels", in_channels, 1)
        check_int("blocks", blocks, 1)
        if not isinstance(d, int) or d < 4 or d % 4:
            _fail(
                "d", d, "a ResNet backbone needs a width d >= 4 divisible by 4 (stages d/4, d/2, d)"
            )
        if len(seeds) != runs:
            _fail("seeds", list(seeds), f"must hold one seed per run ({runs})")
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.runs, self.in_channels = runs, in_channels
        widths = (d // 4, d // 2, d)
        self.stem = nn.Conv2d(
            runs * in_channels, runs * widths[0], 3, 1, 1, groups=runs, bias=False
        )
        self.bn = nn.BatchNorm2d(runs * widths[0])
        _kaiming_(self.stem.weight, runs, 9 * in_channels, gens)
        layers, c_in = [], widths[0]
        for stage, c_out in enumerate(widths):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(_Block(runs, c_in, c_out, stride, gens))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        x = x.repeat(1, self.runs, 1, 1)  # (N, R*C, H, W): run r reads channels r*C..(r+1)*C
        x = torch.relu(self.bn(self.stem(x)))
        x = self.layers(x).mean(dim=(-2, -1))  # global average pooling: (N, R*d)
        return x.reshape(N, self.runs, self.d).transpose(0, 1)


class BatchedMLP(nn.Module):
    """R independent fully connected ReLU backbones on the flattened input: the CPU-sized backbone.

    Layers in_features -> hidden[0] -> ... -> d, each followed by ReLU (so H_1 >= 0 like a ResNet's
    pooled features); weights N(0, 2/fan_in), biases 0. Input (N, ...) flattened to (N, P); output
    (R, N, d).
    """

    def __init__(self, runs: int, in_features: int, d: int, hidden: Sequence[int], seeds):
        super().__init__()
        check_int("runs", runs, 1)
        check_int("in_features", in_features, 1)
        check_int("d", d, 1)
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h, 1)
        if len(seeds) != runs:
            _fail("seeds", list(seeds), f"must hold one seed per run ({runs})")
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        sizes = [in_features, *hidden, d]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            W = nn.Parameter(torch.empty(runs, fan_in, fan_out))
            _kaiming_(W, runs, fan_in, gens)
            self.weights.append(W)
            self.biases.append(nn.Parameter(torch.zeros(runs, 1, fan_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1).unsqueeze(0)  # (1, N, P), broadcast over the runs
        for W, b in zip(self.weights, self.biases, strict=True):
            h = torch.relu(torch.baddbmm(b, h.expand(W.shape[0], -1, -1), W))
        return h


def make_backbone(
    name: str, runs: int, input_shape: Sequence[int], d: int, seeds, mlp_hidden=(256,)
) -> nn.Module:
    """The batched backbone ``name`` (one of ``BACKBONES``) for inputs of shape (C, H, W)."""
    if name not in BACKBONES:
        _fail("backbone", name, f"must be one of {BACKBONES}")
    if len(input_shape) != 3:
        _fail("input_shape", tuple(input_shape), "must be (channels, height, width)")
    if name == "mlp":
        return BatchedMLP(runs, math.prod(input_shape), d, list(mlp_hidden), seeds)
    blocks = 3 if name == "resnet20" else 1
    return BatchedResNet(runs, int(input_shape[0]), d, blocks, seeds)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars of a module (of all its runs together)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
