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
- ``negative_count``, ``structure_spectrum``, ``attraction_threshold``: the Hessian spectrum of a
  structure's critical point at a chosen scale (lam from the critical-point equation), its number
  of negative eigenvalues, and the bisection for the scale above which none is left (Theorems 4
  and 6; chapter 6).
- ``kernel_and_normal``: the Hessian's eigenvalues split into the orbit_dimension smallest in
  magnitude and the rest, to test that the kernel is exactly the tangent of the critical set
  (then the point is a minimum along every other direction; chapter 6).
"""

from __future__ import annotations

import math

import torch

from .losses import forward, mean_cross_entropy, regulariser
from .structures import factorize, logits
from .theory.critical import critical_weight_decay
from .validation import check_activation, check_device, check_int, check_positive


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
    return spectral_norms(torch.linalg.eigvalsh(hessian))


def spectral_norms(eigenvalues: torch.Tensor) -> dict:
    """``flatness`` from a symmetric matrix's eigenvalues (1-D): Frobenius, spectral, trace."""
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


def negative_count(eigenvalues: torch.Tensor, rtol: float = 1e-10) -> int:
    """How many eigenvalues lie below -rtol times the largest (Theorem 4(ii): descent directions).

    ``eigenvalues``: 1-D, ascending (as ``torch.linalg.eigvalsh`` returns them).
    """
    check_positive("rtol", rtol)
    return int((eigenvalues < -rtol * eigenvalues[-1].abs()).sum())


def structure_spectrum(
    structure: str, K: int, n: int, L: int, scale: float, d: int, seed: int = 0, device="cpu"
) -> tuple:
    """(lam, params, eigenvalues) at the structure's critical point of this scale (Thms 4, 6).

    lam is ``critical_weight_decay`` (Eq. 19 or Eq. 27 solved for lam), params the Lemma-1
    factorisation [H_1 (d x Kn), W_1 .. W_{L-1} (d x d), W_L (K x d)] of ``logits(structure, K, n,
    scale)`` with random orthogonal bases from ``seed``, on ``device``; eigenvalues (P,
    ascending, float64) of the exact Hessian of the full loss there. Chapter 6.
    """
    device = check_device(device)
    lam = critical_weight_decay(structure, K, n, L, scale)
    params = [P.to(device) for P in factorize(logits(structure, K, n, scale), L, d, seed=seed)]
    return lam, params, torch.linalg.eigvalsh(loss_hessian(params, lam))


def attraction_threshold(
    structure: str,
    K: int,
    n: int,
    L: int,
    saddle: float,
    attractive: float,
    d: int,
    steps: int = 30,
    seed: int = 0,
    rtol: float = 1e-10,
    device="cpu",
) -> tuple[float, float]:
    """Bisection (in log scale) for the scale above which the critical point has no negative
    Hessian eigenvalue (Theorem 4(ii), and its analogue for the pair structure; chapter 6).

    ``saddle`` < ``attractive`` are scales at which the structure's critical point has, and has
    not, a negative eigenvalue (checked first). Returns the final bracket (saddle end, attractive
    end) after ``steps`` halvings of its logarithmic width.
    """
    check_int("steps", steps, 1)
    check_positive("saddle", saddle)
    check_positive("attractive", attractive)
    if not saddle < attractive:
        raise ValueError(f"saddle={saddle} is not allowed: must be below attractive={attractive}")

    def count(scale):
        eigenvalues = structure_spectrum(structure, K, n, L, scale, d, seed, device)[2]
        return negative_count(eigenvalues, rtol)

    if count(saddle) == 0:
        raise ValueError(f"saddle={saddle} is not allowed: no negative eigenvalue there")
    if count(attractive) > 0:
        raise ValueError(f"attractive={attractive} is not allowed: a negative eigenvalue there")
    lo, hi = saddle, attractive
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if count(mid) > 0 else (lo, mid)
    return lo, hi


def kernel_and_normal(eigenvalues: torch.Tensor, orbit_dim: int) -> tuple:
    """Split a Hessian's eigenvalues at a critical point into (tangent, normal) parts.

    ``tangent``: the ``orbit_dim`` eigenvalues of smallest magnitude (the tangent of the orbit of
    critical points lies in the kernel, so they must be zero); ``normal``: the others, ascending.
    The kernel is exactly the tangent when every tangent value is zero and every normal one is
    positive: the loss then grows quadratically along every direction out of the critical set,
    and the point is a local minimum (a Morse-Bott minimum; chapter 6). ``eigenvalues``: 1-D.
    """
    check_int("orbit_dim", orbit_dim, 0)
    if orbit_dim > eigenvalues.numel():
        raise ValueError(f"orbit_dim={orbit_dim} is not allowed: at most {eigenvalues.numel()}")
    order = torch.argsort(eigenvalues.abs())
    tangent, normal = eigenvalues[order[:orbit_dim]], eigenvalues[order[orbit_dim:]]
    return tangent, torch.sort(normal).values
