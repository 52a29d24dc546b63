"""The deep-UFM loss, its reference gradient and the reduced loss of Lemma 1.

Normalisation (the paper's): the fit term is the MEAN cross-entropy over the N samples, and
one weight decay lam multiplies (1/2) of the squared Frobenius norm of every matrix, H_1 included.
Classes have n samples each (N = Kn), or, for the imbalanced setting of Appendix A (chapter 10),
sizes n_1..n_K given as ``class_sizes`` (N = sum n_c); columns are always grouped by class.
"""

from __future__ import annotations

import torch

from .validation import (
    check_activation,
    check_class_sizes,
    check_int,
    check_logit_shape,
    check_logits,
    check_params,
    check_positive,
)


def class_labels(K: int, n, device=None) -> torch.Tensor:
    """Labels of class-ordered columns: [0]*n + [1]*n + ... + [K-1]*n.

    ``n`` is the common class size, or a sequence of K class sizes n_1..n_K (Appendix A):
    then [0]*n_1 + [1]*n_2 + ... + [K-1]*n_K.
    """
    if not isinstance(n, list | tuple | torch.Tensor) or (
        isinstance(n, torch.Tensor) and n.dim() == 0
    ):
        return torch.arange(K, device=device).repeat_interleave(n)
    sizes = check_class_sizes(n, K=K)
    return torch.arange(K, device=device).repeat_interleave(torch.tensor(sizes, device=device))


def one_hot_labels(K: int, n, dtype=torch.float64, device=None) -> torch.Tensor:
    """Y (K x N): the one-hot labels of class-ordered columns (``n`` as in ``class_labels``)."""
    return torch.nn.functional.one_hot(class_labels(K, n, device), K).T.to(dtype)


def mean_cross_entropy(Z: torch.Tensor, class_sizes=None) -> torch.Tensor:
    """(1/N) g(Z): mean over columns of -log softmax(z)_class, class-ordered columns.

    Z may carry leading batch dimensions: shape (..., K, N); the result has shape (...). Without
    ``class_sizes`` every class has N/K columns; with it (K sizes summing to N, Appendix A) class
    c owns the next n_c columns. Only the shape and dtype are checked (no data access: it runs
    inside autograd and loops).
    """
    if class_sizes is None:
        check_logit_shape(Z)
    K, N = Z.shape[-2:]
    labels = class_labels(K, N // K if class_sizes is None else class_sizes, device=Z.device)
    if labels.numel() != N:
        raise ValueError(
            f"class_sizes={list(class_sizes)} is not allowed: the sizes must sum to the "
            f"{N} columns of Z"
        )
    true = Z[..., labels, torch.arange(N, device=Z.device)]
    return (torch.logsumexp(Z, dim=-2) - true).mean(dim=-1)


def exact_singular_values(A: torch.Tensor) -> torch.Tensor:
    """Singular values of A (..., m, n), descending, with rounding residues set to exact zeros.

    The library's one cut-off for "this singular value is zero": below the rounding level
    max(m, n) * eps * s_max of A's dtype. Roots s^{2/(L+1)} of the Schatten term and of the
    Lemma-1 factorisation would otherwise turn a 1e-15 residue into a 3e-8 loss term or a 1e-6
    entry of every factor. (The numerical rank of a *trained* solution, which is only near a
    structure, is ``dufm.metrics.numerical_rank``.)
    """
    s = torch.linalg.svdvals(A)
    floor = max(A.shape[-2:]) * torch.finfo(A.dtype).eps * s.amax(dim=-1, keepdim=True)
    return torch.where(s > floor, s, torch.zeros_like(s))


def schatten_regulariser(Z: torch.Tensor, lam: float, L: int) -> torch.Tensor:
    """(lam/2)(L+1) sum_i s_i(Z)^{2/(L+1)}: least regulariser over factorisations of Z (Lemma 1).

    Singular values at rounding level are exact zeros (``exact_singular_values``). Z: (..., K, N)
    with any N (the term does not depend on the labels, so unequal class sizes are fine).
    """
    if not isinstance(Z, torch.Tensor) or Z.dim() < 2 or Z.is_complex():
        raise ValueError(
            f"Z={getattr(Z, 'shape', Z)!r} is not allowed: must be a real tensor (..., K, N)"
        )
    check_positive("lam", lam)
    check_int("L", L, 1)
    s = exact_singular_values(Z)
    return 0.5 * lam * (L + 1) * s.pow(2.0 / (L + 1)).sum(dim=-1)


def reduced_loss(Z: torch.Tensor, lam: float, L: int) -> float:
    """Reduced loss Lred_L(Z) = (1/(Kn)) g(Z) + (lam/2)(L+1) sum_i s_i(Z)^{2/(L+1)} (Lemma 1).

    Z: (K, Kn) with class-ordered columns, real and finite; K and n are read from its shape.
    """
    check_logits(Z)
    check_positive("lam", lam)
    check_int("L", L, 1)
    Z = Z.to(torch.float64)
    return float(mean_cross_entropy(Z) + schatten_regulariser(Z, lam, L))


def reduced_loss_imbalanced(Z: torch.Tensor, class_sizes, lam: float, L: int) -> float:
    """Reduced loss with class sizes n_1..n_K (Appendix A; Theorems A1-A3, chapter 10).

    Lred_L(Z) = (1/N) g(Z) + (lam/2)(L+1) sum_i s_i(Z)^{2/(L+1)}, N = sum n_c: Lemma 1 is
    unchanged by the sizes, so this is the deep-UFM loss at any Lemma-1 factorisation of Z.
    Z: (K, N) with its columns grouped by class in the order of ``class_sizes``.
    """
    if not isinstance(Z, torch.Tensor) or Z.dim() != 2:
        raise ValueError(
            f"Z={getattr(Z, 'shape', Z)} is not allowed: must be a 2-D tensor of shape (K, N)"
        )
    check_int("Z.shape[0] (K)", Z.shape[0], 2)
    sizes = check_class_sizes(class_sizes, K=Z.shape[0], N=Z.shape[1])
    check_positive("lam", lam)
    check_int("L", L, 1)
    Z = Z.to(torch.float64)
    return float(mean_cross_entropy(Z, sizes) + schatten_regulariser(Z, lam, L))


def forward(params: list, activation: str = "linear") -> list:
    """Pre-activations [H_1, H_2, ..., H_L, Z] of the deep UFM (Section 2).

    Linear: H_{l+1} = W_l H_l. ReLU: H_2 = W_1 H_1, H_{l+1} = W_l relu(H_l), Z = W_L relu(H_L)
    (no ReLU between H_1 and W_1). Works on batched parameters with leading dimensions.
    """
    check_activation(activation)
    feats = [params[0]]
    for layer, W in enumerate(params[1:], start=1):
        inp = feats[-1]
        if activation == "relu" and layer >= 2:
            inp = torch.relu(inp)
        feats.append(W @ inp)
    return feats


def regulariser(params: list) -> torch.Tensor:
    """(1/2)(||H_1||^2 + sum_l ||W_l||^2), float64 and differentiable: the weight-decay term of
    Eq. (1) divided by lam. Works on batched parameters (leading dimensions are kept)."""
    return 0.5 * sum(P.double().pow(2).sum(dim=(-2, -1)) for P in params)


def full_loss(params: list, lam: float, activation: str = "linear", class_sizes=None) -> float:
    """Deep-UFM loss (1/N) g(Z) + (lam/2)(||H_1||^2 + sum_l ||W_l||^2), Eq. (1) of the paper.

    ``class_sizes`` (optional): the sizes n_1..n_K of Appendix A (N = sum n_c); by default every
    class has N/K samples.
    """
    check_positive("lam", lam)
    params = check_params(params)
    Z = forward(params, activation)[-1]
    if class_sizes is None:
        check_logits(Z)
    else:
        class_sizes = check_class_sizes(class_sizes, K=Z.shape[0], N=Z.shape[1])
    return float(mean_cross_entropy(Z.double(), class_sizes)) + lam * float(regulariser(params))


def loss_and_grads(params: list, targets: torch.Tensor, lam: torch.Tensor, activation: str):
    """Per-run loss (R,) and the analytic gradients of the deep-UFM loss, batched over runs.

    The reference form of the gradient (Section 2; every training figure), used by
    ``dufm.metrics`` and ``dufm.checks`` and checked against autograd in the tests (the engine,
    ``dufm._engine``, computes the same gradient in place). ``params`` are batched (R, rows, cols)
    matrices [H_1, W_1, ..., W_L]; ``targets`` is the one-hot Y (K, Kn); ``lam`` has shape
    (R, 1, 1).
    """
    feats = forward(params, activation)
    Z = feats[-1]
    N = Z.shape[-1]
    logp = torch.log_softmax(Z, dim=-2)
    fit = -(logp * targets).sum(dim=(-2, -1)) / N
    loss = fit + lam.view(-1) * regulariser(params).to(fit.dtype)
    G = (logp.exp() - targets) / N  # dL/dZ
    grads = [None] * len(params)
    for layer in range(len(params) - 1, 0, -1):
        inp = feats[layer - 1]
        if activation == "relu" and layer >= 2:
            inp = torch.relu(inp)
        grads[layer] = G @ inp.transpose(-2, -1) + lam * params[layer]
        G = params[layer].transpose(-2, -1) @ G
        if activation == "relu" and layer >= 2:
            G = G * (feats[layer - 1] > 0)
    grads[0] = G + lam * params[0]
    return loss, grads
