"""Measured-versus-theory checks that the chapters assert (chapters 1-4 and later ones).

Each check measures a quantity, compares it with what a theorem predicts, returns the measured
error (or the measured value) and raises ``CheckFailed`` (an ``AssertionError``) naming what
failed, the measured and expected values and by how much, when they disagree beyond the stated
tolerance. The generic comparisons ``check_close``, ``check_at_most``, ``check_at_least``,
``check_equal`` and ``check_true`` replace bare asserts in the chapters; the others measure a
theorem's quantity themselves. The unit tests feed each one a wrong input to show that it can fail.
"""

from __future__ import annotations

import numpy as np
import torch

from . import losses
from .losses import (
    forward,
    full_loss,
    loss_and_grads,
    mean_cross_entropy,
    one_hot_labels,
    reduced_loss,
)
from .metrics import (
    balancedness_gaps,
    balancedness_residual,
    classify_structure,
    critical_point_residual,
    dnc_metrics,
)
from .trainer import train


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


def check_at_most(measured: float, bound: float, what: str) -> float:
    """Fail unless ``measured <= bound`` (nan fails); returns ``measured``.

    The message names ``what``, both values and the excess ``measured - bound``.
    """
    if not measured <= bound:
        raise CheckFailed(
            f"{what}: measured {measured:.6g} exceeds the bound {bound:.6g} "
            f"by {measured - bound:.3g}"
        )
    return measured


def check_at_least(measured: float, bound: float, what: str) -> float:
    """Fail unless ``measured >= bound`` (nan fails); returns ``measured``."""
    if not measured >= bound:
        raise CheckFailed(
            f"{what}: measured {measured:.6g} is below the bound {bound:.6g} "
            f"by {bound - measured:.3g}"
        )
    return measured


def check_equal(measured, expected, what: str):
    """Fail unless ``measured == expected`` (counts, ranks, depths, tuples); returns it."""
    if measured != expected:
        raise CheckFailed(f"{what}: measured {measured!r}, expected {expected!r}")
    return measured


def check_true(condition: bool, what: str, detail: str = "") -> None:
    """Fail unless ``condition``; the message is ``what`` followed by ``detail`` (the evidence)."""
    if not condition:
        raise CheckFailed(f"{what}: failed" + (f" ({detail})" if detail else ""))


def check_fit_dominated(X: torch.Tensor, M: torch.Tensor, gamma: float, scales) -> float:
    """Theorem 2's fit step: g(gamma a M) < g(a X) at every scale a > 0 of ``scales``.

    X, M: (K, Kn) logit directions; ``scales`` a 1-D sequence of positive scales. Returns the
    largest measured difference of the mean cross-entropies (negative when the step holds) and
    fails if it is >= 0 (chapter 3).
    """
    a = torch.as_tensor(scales, dtype=torch.float64).view(-1, 1, 1)
    X, M = X.double().cpu(), M.double().cpu()
    gap = float((mean_cross_entropy(gamma * a * M) - mean_cross_entropy(a * X)).max())
    if not gap < 0:
        raise CheckFailed(
            f"fit step of Theorem 2: g(gamma a M) - g(a X) reaches {gap:.3e} >= 0 "
            f"(gamma = {gamma:.6g})"
        )
    return gap


def check_critical_point(params: list, lam: float, tol: float) -> float:
    """The deep linear UFM's gradient vanishes at ``params`` = [H_1, W_1, ..., W_L] (2-D).

    Measures ``metrics.critical_point_residual`` (|grad| / (lam |params|), the trainer's
    gradient) and fails above ``tol``. Chapter 4 applies it to the optimum found by the
    proximal search on the reduced loss, factorised into a deep network (an independent route).
    """
    residual = critical_point_residual(params, lam)
    return _require(residual, tol, "gradient of the deep-UFM loss relative to lam |params|")


def full_gradients(params: list, lam: float) -> list:
    """Gradients of the deep linear UFM loss (weight decay included) at one point, by the
    trainer's reference routine. ``params`` = [H_1, W_1, ..., W_L] (2-D); same shapes back."""
    K, N = params[-1].shape[0], params[0].shape[1]
    targets = one_hot_labels(K, N // K, params[0].dtype)
    lam_t = torch.full((1, 1, 1), float(lam), dtype=params[0].dtype)
    _, grads = loss_and_grads([P.unsqueeze(0) for P in params], targets, lam_t, "linear")
    return [g[0] for g in grads]


def check_imbalance_identity(
    params: list, lam: float, tol: float = 1e-9, grads: list | None = None
) -> float:
    """Chapter 1, proof of Lemma 1: lam Delta_l = W_{l+1}^T D_{l+1} - D_l W_l^T at *every* point.

    D_l are the full gradients (weight decay included; ``full_gradients`` unless ``grads`` is
    given), W_0 = H_1, Delta_l = W_{l+1}^T W_{l+1} - W_l W_l^T. At a critical point (D = 0) this
    is Lemma 1; elsewhere it bounds the imbalance by the gradient,
    ||Delta_l|| <= (||W_{l+1}|| ||D_{l+1}|| + ||D_l|| ||W_l||) / lam. Returns the largest error
    relative to ||W_l W_l^T||_F and fails above ``tol``.
    """
    grads = full_gradients(params, lam) if grads is None else grads
    worst = 0.0
    for lo in range(len(params) - 1):
        up = lo + 1
        delta = params[up].T @ params[up] - params[lo] @ params[lo].T
        predicted = (params[up].T @ grads[up] - grads[lo] @ params[lo].T) / lam
        scale = torch.linalg.matrix_norm(params[lo] @ params[lo].T)
        worst = max(worst, float(torch.linalg.matrix_norm(delta - predicted) / scale))
    return _require(worst, tol, "imbalance against lam^-1 (W_{l+1}^T D_{l+1} - D_l W_l^T)")


def imbalance_of_runs(result, lam: float, lr: float) -> list:
    """Per run of a ``TrainResult``: (||Delta_0||_F, balancedness residual, source ratio).

    Chapter 1, Lemma 1 and Eq. (balance-decay). Delta_0 = W_1^T W_1 - H_1 H_1^T; the residual is
    ``metrics.balancedness_residual`` (max over the layers, relative); the source ratio is
    lr^2 ||G_1^T G_1 - G_0 G_0^T||_F / ((1 - (1 - lr lam)^2) ||Delta_0||_F), G the fit gradients:
    the size of the recursion's source term against its decay term (small where the first-order
    rate -2 log(1 - lr lam) applies).
    """
    out = []
    decay = 1 - (1 - lr * lam) ** 2
    for i in range(len(result.configs)):
        params = result.run_params(i)
        grads = full_gradients(params, lam)
        fit = [g - lam * P for g, P in zip(grads, params, strict=True)]
        gap = balancedness_gaps(params)[0][0]
        source = lr**2 * float(torch.linalg.matrix_norm(fit[1].T @ fit[1] - fit[0] @ fit[0].T))
        ratio = source / (decay * gap) if gap > 0 else float("inf")
        out.append((gap, balancedness_residual(params), ratio))
    return out


def lemma1_runs(result, lam: float, starts: list) -> list[dict]:
    """Chapter 1's measurements of every run of a linear ``TrainResult`` (Lemma 1).

    Per run: ``structure`` (``metrics.classify_structure`` of its output Z), ``loss`` (the full
    loss), ``excess`` ((loss - reduced loss of its own Z) / loss, >= 0 by the Schatten identity,
    zero at a Lemma-1 point), ``grad`` (``metrics.critical_point_residual``) and ``identity``: the
    larger error of ``check_imbalance_identity`` at the run's end and at ``starts[i]``, its
    starting matrices [H_1, W_1, ..., W_L] (it fails above 1e-8).
    """
    rows = []
    for i, start in enumerate(starts):
        params = result.run_params(i)
        Z = result.logits[i]
        full = full_loss(params, lam)
        rows.append(
            {
                "structure": classify_structure(Z),
                "loss": full,
                "excess": (full - reduced_loss(Z, lam, len(params) - 1)) / full,
                "grad": critical_point_residual(params, lam),
                "identity": max(
                    check_imbalance_identity(params, lam, tol=1e-8),
                    check_imbalance_identity(start, lam, tol=1e-8),
                ),
            }
        )
    return rows


def decay_rates(
    steps, gaps, residuals, sources=None, low: float = 1e-8, high: float = 1e-2, max_source=0.05
) -> np.ndarray:
    """Per-run exponential decay rate of the imbalance (chapter 1, Eq. (balance-decay)).

    ``steps`` (T,), ``gaps``, ``residuals`` and ``sources`` (T, R) (``imbalance_of_runs`` at T
    snapshots): minus the least-squares slope of log ||Delta_0|| against the step, over the
    snapshots whose relative residual lies in [low, high] (past the transient, above rounding)
    and, if ``sources`` is given, whose source ratio is below ``max_source`` (where the
    first-order rate applies). nan for a run with fewer than three such snapshots.
    """
    steps = np.asarray(steps, dtype=np.float64)
    gaps, residuals = np.asarray(gaps), np.asarray(residuals)
    rates = np.full(gaps.shape[1], np.nan)
    for i in range(gaps.shape[1]):
        window = (residuals[:, i] > low) & (residuals[:, i] < high)
        if sources is not None:
            window &= np.asarray(sources)[:, i] < max_source
        if window.sum() >= 3:
            rates[i] = -np.polyfit(steps[window], np.log(gaps[window, i]), 1)[0]
    return rates


def lemma1_sentences(runs, settled, residuals, rates_any, fitted, rate_theory, steps):
    """Chapter 1's two sentences under its training figure (``settled-text``, ``moving-text``).

    ``runs``: ``lemma1_runs``; ``settled`` and ``fitted`` (R,) booleans (settled at a critical
    point; first-order decay rate fitted); ``residuals`` (R,) the balancedness residuals at the
    end; ``rates_any`` (R,) ``decay_rates`` over the whole window; ``rate_theory`` the predicted
    rate; ``steps`` the steps trained. The first says what Lemma 1 gives on the settled runs, the
    second the gradients and residuals of the others and the rate of the runs not fitted.
    """
    settled = np.asarray(settled, dtype=bool)
    residuals, rates_any = np.asarray(residuals), np.asarray(rates_any)
    excess = np.array([row["excess"] for row in runs])
    if settled.any():
        settled_text = (
            f"For the {int(settled.sum())} settled runs the largest balancedness residual "
            f"is {residuals[settled].max():.1e} and the loss equals the reduced loss of the "
            f"run's own output to {np.abs(excess[settled]).max():.1e} (relative), as "
            "Lemma 1 says."
        )
    else:
        settled_text = "No run settled at a critical point, so Lemma 1 itself is not tested here."
    moving = np.flatnonzero(~settled)
    if moving.size:
        grads = [runs[i]["grad"] for i in moving]
        moving_text = (
            f"The {moving.size} runs that had not settled after {steps} steps (gradient "
            f"between {min(grads):.1e} and {max(grads):.1e} times the weight-decay term) end "
            f"with balancedness residuals between {residuals[moving].min():.1e} and "
            f"{residuals[moving].max():.1e}: Lemma 1 does not apply to them, and the identity "
            "above bounds their imbalance by their gradient."
        )
    else:
        moving_text = f"Every run had settled after {steps} steps."
    slow = np.flatnonzero(~np.asarray(fitted, dtype=bool) & np.isfinite(rates_any))
    if slow.size:
        ratios = rates_any[slow] / rate_theory
        moving_text += (
            f" In {slow.size} runs the source term of the recursion above, made of the "
            "still-large fit gradients, was above the threshold throughout the fitting "
            f"window; fitted over the window regardless, their imbalance decays at "
            f"{np.min(ratios):.2f} to {np.max(ratios):.2f} times the first-order rate, "
            "because the source feeds the imbalance while weight decay removes it."
        )
    return settled_text, moving_text


def gd_step(params: list, lam: float, lr: float) -> list:
    """One full-batch gradient-descent step of the linear deep UFM by ``dufm.trainer.train``."""
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


def loss_tail_change(losses, steps=None, tail: float = 0.1):
    """How much each run's loss still moves at the end of training (settling; chapters 8 and 9).

    ``losses``: (R, T) or (T,) losses recorded at ``steps`` (T increasing steps; default evenly
    spaced). The tail window holds the recorded points at or after step
    ``steps[-1] - tail * (steps[-1] - steps[0])``, and at least the last two. Returns
    (max - min over the window) / |final loss| per run: shape (R,), a float for 1-D ``losses``;
    nan where a loss in the window is not finite (or the final loss is zero).
    """
    if not (isinstance(tail, int | float) and not isinstance(tail, bool) and 0 < tail <= 1):
        raise ValueError(f"tail={tail!r} is not allowed: must be a fraction in (0, 1]")
    values = np.asarray(torch.as_tensor(losses, dtype=torch.float64).cpu())
    single = values.ndim == 1
    values = np.atleast_2d(values)
    if values.ndim != 2 or values.shape[1] < 2:
        raise ValueError(
            f"losses has shape {tuple(values.shape)}: it must be (R, T) or (T,) with T >= 2"
        )
    T = values.shape[1]
    steps = np.arange(T, dtype=np.float64) if steps is None else np.asarray(steps, np.float64)
    if steps.shape != (T,) or not (np.diff(steps) > 0).all():
        raise ValueError(f"steps has {steps.size} values: need {T} increasing recorded steps")
    start = steps[-1] - tail * (steps[-1] - steps[0])
    first = min(int(np.searchsorted(steps, start - 1e-9 * abs(steps[-1]))), T - 2)
    window = values[:, first:]
    final = np.abs(window[:, -1])
    with np.errstate(invalid="ignore", divide="ignore"):
        change = (window.max(axis=1) - window.min(axis=1)) / final
    change[~np.isfinite(window).all(axis=1) | (final == 0)] = np.nan
    return float(change[0]) if single else change


def loss_settled(losses, tol: float, steps=None, tail: float = 0.1):
    """Whether each run has settled: its loss moved by at most ``tol`` (relative to its final
    value) over the last ``tail`` of training (``loss_tail_change``; nan is not settled).

    A verdict drawn from training runs needs them settled (``dufm.scorecard.record``: facts
    "settled"); chapter 8 applies it to the ReLU runs of Figure 6 and the class-symmetric runs.
    Returns a bool array (R,), or a bool for 1-D ``losses``.
    """
    if not (isinstance(tol, int | float) and not isinstance(tol, bool) and tol > 0):
        raise ValueError(f"tol={tol!r} is not allowed: must be a number > 0")
    change = loss_tail_change(losses, steps, tail)
    if isinstance(change, float):
        return bool(change <= tol)
    return np.asarray(change <= tol)
