"""Dimensions of the sets of parameters that produce a critical output (Definition 4, Theorem 5).

Two independent measurements at a critical point theta = [H_1, W_1, ..., W_L]:

- ``orbit_dimension``: the rank of the tangent map of the layer-wise orthogonal symmetries
  H_1 -> U_0 H_1, W_l -> U_l W_l U_{l-1}^T, W_L -> W_L U_{L-1}^T (U_l in O(d)), which keep the
  output and the loss: the dimension of the orbit of theta;
- ``flat_output_dimension``: the dimension of the directions along which neither the output Z
  (first order) nor the gradient of the loss (the Hessian) changes: the kernel of the output
  Jacobian intersected with the kernel of the Hessian, which contains the tangent of every smooth
  set of critical points with output Z through theta.
"""

from __future__ import annotations

import torch

from .hessian import flatten, loss_hessian
from .losses import forward


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
    """d vec(Z) / d theta (Kn K x P, float64), theta as ``dufm.hessian.flatten`` orders it."""
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
