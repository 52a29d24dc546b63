"""Measured-versus-theory checks that the chapters assert.

Each check measures a quantity, compares it with what a theorem predicts, returns the measured
error and raises ``CheckFailed`` (an ``AssertionError``) with measured and expected values when
the error exceeds the stated tolerance. The unit tests feed each one a perturbed input to show
that it can fail.
"""

from __future__ import annotations

import torch

from . import losses
from .losses import forward, full_loss, loss_and_grads, one_hot_labels, reduced_loss
from .metrics import balancedness_residual, dnc_metrics


class CheckFailed(AssertionError):
    """A measurement disagrees with the theory beyond the stated tolerance."""


def _require(error: float, tol: float, what: str) -> float:
    if not error <= tol:  # also catches nan
        raise CheckFailed(f"{what}: measured error {error:.3e} exceeds the tolerance {tol:.1e}")
    return error


def regulariser(params: list) -> float:
    """``dufm.losses.regulariser`` as a float: (1/2) sum of the squared Frobenius norms."""
    return float(losses.regulariser(params))


def check_balanced(params: list, tol: float = 1e-8) -> float:
    """Lemma 1: W_{l+1}^T W_{l+1} = W_l W_l^T at a critical point. Returns the relative residual."""
    return _require(balancedness_residual(params), tol, "balancedness residual (Lemma 1)")


def check_reduced_loss_identity(
    params: list, lam: float, tol: float = 1e-9, loss_fn=full_loss
) -> float:
    """Lemma 1: the loss of a Lemma-1 point equals the reduced loss of its output Z.

    Returns |loss_fn(params) - Lred(Z)| / Lred(Z). ``loss_fn`` defaults to ``full_loss``; a
    loss with another normalisation, or an unbalanced point, fails the check.
    """
    L = len(params) - 1
    Z = forward(params)[-1]
    reduced = reduced_loss(Z, lam, L)
    gap = abs(loss_fn(params, lam) - reduced) / abs(reduced)
    return _require(gap, tol, "relative gap between the full loss and the reduced loss")


def check_dnc_every_layer(params: list, tol: float = 1e-10, activation: str = "linear") -> dict:
    """Proposition 1: DNC1, DNC2 and DNC3 vanish in every layer of a DNC solution.

    Returns the per-layer metrics; fails if any exceeds ``tol``.
    """
    metrics = dnc_metrics(params, activation)
    worst = max(max(values) for values in metrics.values())
    _require(worst, tol, "largest DNC1-3 metric over the layers (Proposition 1)")
    return metrics


def random_refactorisation(params: list, seed: int, spread: float = 0.5) -> list:
    """Another factorisation of the same Z: W_l -> G_l W_l G_{l-1}^{-1} with random invertible G_l.

    G_l = exp(spread * X_l) for Gaussian X_l (so G_l is invertible); the product W_L...W_1 H_1
    is unchanged up to rounding.
    """
    gen = torch.Generator().manual_seed(int(seed))
    d = params[0].shape[0]
    out, previous_inverse = [], None
    for P in params[:-1]:
        X = torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5
        G = torch.linalg.matrix_exp(spread * X)
        Q = G @ P if previous_inverse is None else G @ P @ previous_inverse
        out.append(Q)
        previous_inverse = torch.linalg.inv(G)
    out.append(params[-1] @ previous_inverse)
    return out


def check_minimal_regulariser(params: list, trials: int = 100, seed: int = 0, tol: float = 1e-9):
    """Schatten identity (Lemma 1): no re-factorisation of Z has a smaller regulariser.

    Draws ``trials`` random re-factorisations of the same output, with spreads log-spaced from
    1e-3 (local moves, which see a first-order saving at any non-minimal point) to 1 (far moves),
    and returns (the smallest relative excess of their regulariser over that of ``params``, the
    largest relative change of Z).
    Fails if any re-factorisation is cheaper than ``params`` by more than ``tol`` (relative).
    """
    base = regulariser(params)
    Z = forward(params)[-1]
    excesses, drift = [], 0.0
    for t, spread in enumerate(torch.logspace(-3, 0, trials).tolist()):
        other = random_refactorisation(params, seed=seed + t, spread=spread)
        drift = max(drift, float((forward(other)[-1] - Z).abs().max() / Z.abs().max()))
        excesses.append((regulariser(other) - base) / base)
    least = min(excesses)
    _require(max(-least, 0.0), tol, "regulariser saved by a random re-factorisation")
    return least, drift


def check_close(measured: float, expected: float, rtol: float, what: str) -> float:
    """Relative agreement of a measurement with a theoretical value; returns the relative error."""
    error = abs(measured - expected) / max(abs(expected), 1e-300)
    return _require(error, rtol, f"{what} (measured {measured:.12g}, theory {expected:.12g})")


def gd_step(params: list, lam: float, lr: float) -> list:
    """One full-batch gradient-descent step of the linear deep UFM by ``dufm.trainer.train``."""
    from .trainer import train

    K, N = params[-1].shape[0], params[0].shape[1]
    result = train(
        K, N // K, len(params) - 1, params[0].shape[0], lam, seeds=[0], lr=lr, steps=1,
        params=[P.unsqueeze(0) for P in params], progress=False,
    )  # fmt: skip
    return result.run_params(0)


def check_balance_recursion(params: list, lam: float, lr: float, tol: float = 1e-9, step=gd_step):
    """Chapter 1, Eq. (balance-decay): one GD step maps the imbalance exactly as derived.

    Delta_l = W_{l+1}^T W_{l+1} - W_l W_l^T (W_0 = H_1) must become
    (1 - lr lam)^2 Delta_l + lr^2 (G_{l+1}^T G_{l+1} - G_l G_l^T), G_l the fit gradients.
    ``step(params, lam, lr)`` makes the step (the trainer's by default). Returns the largest
    relative error over the layers.
    """
    K, N = params[-1].shape[0], params[0].shape[1]
    targets = one_hot_labels(K, N // K)
    _, grads = loss_and_grads(
        [P.unsqueeze(0) for P in params], targets, torch.zeros(1, 1, 1), "linear"
    )
    fit = [g[0] for g in grads]
    after = step(params, lam, lr)
    worst = 0.0
    for layer in range(len(params) - 1):
        lo, up = layer, layer + 1
        delta = params[up].T @ params[up] - params[lo] @ params[lo].T
        source = fit[up].T @ fit[up] - fit[lo] @ fit[lo].T
        predicted = (1 - lr * lam) ** 2 * delta + lr**2 * source
        measured = after[up].T @ after[up] - after[lo] @ after[lo].T
        scale = torch.linalg.matrix_norm(params[lo] @ params[lo].T)
        worst = max(worst, float(torch.linalg.matrix_norm(measured - predicted) / scale))
    return _require(worst, tol, "one-step update of the imbalance against Eq. (balance-decay)")
