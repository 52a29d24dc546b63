"""The exact Hessian of the deep-UFM loss at a point (Theorems 4 and 6: local attractiveness and
flatness of the DNC and pair critical points).

The loss Eq. (1) is written as a function of one flat vector of all parameters and differentiated
twice by autograd; the models where a full Hessian is wanted (up to a few thousand parameters)
fit in memory, and its eigenvalues then come from one symmetric eigendecomposition.
"""

from __future__ import annotations

import torch

from .losses import forward, mean_cross_entropy
from .validation import check_activation, check_positive


def flatten(params: list):
    """(theta, unflatten): all entries of [H_1, W_1, ..., W_L] as one float64 vector, each matrix
    row by row in order, and the map from such a vector back to the list of matrices."""
    shapes = [P.shape for P in params]
    sizes = [P.numel() for P in params]

    def unflatten(x):
        return [c.view(shape) for c, shape in zip(torch.split(x, sizes), shapes, strict=True)]

    return torch.cat([P.detach().double().flatten() for P in params]), unflatten


def loss_hessian(params: list, lam: float, activation: str = "linear") -> torch.Tensor:
    """Hessian (P x P, float64) of the full loss at [H_1, W_1, ..., W_L], P = number of entries,
    in the order of ``flatten`` (Theorems 4 and 6)."""
    check_positive("lam", lam)
    check_activation(activation)
    flat, unflatten = flatten(params)

    def loss(x):
        return mean_cross_entropy(forward(unflatten(x), activation)[-1]) + 0.5 * lam * x.dot(x)

    return torch.autograd.functional.hessian(loss, flat, vectorize=True)


def flatness(hessian: torch.Tensor) -> dict:
    """The three flatness measures of Theorem 6: Frobenius, spectral and trace (nuclear) norms."""
    eigenvalues = torch.linalg.eigvalsh(hessian)
    return {
        "frobenius": float(torch.linalg.vector_norm(eigenvalues)),
        "spectral": float(eigenvalues.abs().max()),
        "trace": float(eigenvalues.abs().sum()),
    }
