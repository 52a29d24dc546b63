"""Second-order geometry of the deep-UFM loss at a critical point (Theorems 4, 5 and 6).

- ``loss_hessian``, ``flatness``: the exact Hessian of the loss Eq. (1) as a function of one flat
  vector of all parameters (autograd, twice), its eigenvalues and norms (chapter 6: local
  attractiveness and flatness of the DNC and pair critical points); models up to a few thousand
  parameters fit in memory.
- ``orbit_dimension``, ``flat_output_dimension``: two independent measurements of the dimension
  of the set of parameters that produce a critical output (Definition 4, Theorem 5; chapter 7):
  the rank of the tangent map of the layer-wise orthogonal symmetries
  H_1 -> U_0 H_1, W_l -> U_l W_l U_{l-1}^T, W_L -> W_L U_{L-1}^T (U_l in O(d)), and the dimension
  of the kernel of the output Jacobian intersected with the kernel of the Hessian, which contains
  the tangent of every smooth set of critical points with output Z.
"""

from __future__ import annotations

import torch

from .losses import forward, mean_cross_entropy, regulariser
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
        params = unflatten(x)
        return mean_cross_entropy(forward(params, activation)[-1]) + lam * regulariser(params)

    return torch.autograd.functional.hessian(loss, flat, vectorize=True)


def flatness(hessian: torch.Tensor) -> dict:
    """The three flatness measures of Theorem 6: Frobenius, spectral and trace (nuclear) norms."""
    eigenvalues = torch.linalg.eigvalsh(hessian)
    return {
        "frobenius": float(torch.linalg.vector_norm(eigenvalues)),
        "spectral": float(eigenvalues.abs().max()),
        "trace": float(eigenvalues.abs().sum()),
    }


def orbit_dimension(params: list, rtol: float = 1e-9) -> int:
    """Dimension of the orbit of [H_1, W_1, ..., W_L] under the orthogonal symmetries (Thm 5).

    One tangent vector per generator E_ij - E_ji of so(d) and hidden layer l = 0..L-1: E M_l on
    the matrix before the layer (M_0 = H_1, M_l = W_l) and -M_{l+1} E on the matrix after it. The
    rank counts singular values of the tangent map above ``rtol`` times the largest.
    """
    L, d = len(params) - 1, params[0].shape[0]
    columns = []
    for layer in range(L):
        for i in range(d):
            for j in range(i + 1, d):
                E = torch.zeros(d, d, dtype=torch.float64, device=params[0].device)
                E[i, j], E[j, i] = 1.0, -1.0
                tangent = [torch.zeros_like(P, dtype=torch.float64) for P in params]
                tangent[layer] = E @ params[layer].double()
                tangent[layer + 1] = -params[layer + 1].double() @ E
                columns.append(torch.cat([t.flatten() for t in tangent]))
    s = torch.linalg.svdvals(torch.stack(columns, dim=1))
    return int((s > rtol * s[0]).sum()) if s[0] > 0 else 0


def output_jacobian(params: list, activation: str = "linear") -> torch.Tensor:
    """d vec(Z) / d theta (Kn K x P, float64), theta as ``flatten`` orders it."""
    flat, unflatten = flatten(params)

    def output(x):
        return forward(unflatten(x), activation)[-1].flatten()

    return torch.autograd.functional.jacobian(output, flat, vectorize=True)


def flat_output_dimension(params: list, lam: float, rtol: float = 1e-8) -> int:
    """dim(ker Hessian  intersect  ker output Jacobian) at theta (Definition 4, measured).

    The two matrices are scaled to unit spectral norm and stacked; the dimension is the number of
    parameters minus the rank (singular values above ``rtol``) of the stack.
    """
    H = loss_hessian(params, lam)
    J = output_jacobian(params)
    stacked = torch.cat([H / torch.linalg.matrix_norm(H, 2), J / torch.linalg.matrix_norm(J, 2)])
    s = torch.linalg.svdvals(stacked)
    return stacked.shape[1] - int((s > rtol).sum())
