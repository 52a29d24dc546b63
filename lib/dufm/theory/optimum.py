"""Theorem 3: the global optimum of the reduced loss and the fall of its rank (chapter 4).

A batched multi-start search over the class-mean matrix by proximal gradient descent with the
exact Schatten-p proximal map (``search_global_optimum``, ``schatten_prox``), and the bound on the
optimum's singular values from the comparison with Z = 0 (``zero_comparison_bound``); the
search read as one row per configuration (``optimum_rows``) and how hard it was
(``search_statistics``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from tqdm import tqdm

from ..structures import expand_classes
from ..validation import (
    check_class_sizes,
    check_device,
    check_dtype,
    check_int,
    check_positive,
    check_sizes,
)
from .scales import optimal_matrix_scale
from .superiority import is_diagonally_superior

# ----------------------------------------------------------------------------------------------
# Theorem 3: global optimum of the reduced loss
# ----------------------------------------------------------------------------------------------


def zero_comparison_bound(K: int, L: int, lam: float) -> float:
    """Upper bound on every singular value of a global optimum Z*_L from Lred_L(Z*) <= Lred_L(0).

    The fit is >= 0 and Lred_L(0) = log K, so (lam/2)(L+1) s_i^{2/(L+1)} <= log K, i.e.
    s_i(Z*_L) <= (2 log K / (lam (L+1)))^{(L+1)/2}; it decays faster than exponentially in L when
    lam_L L -> infinity (Theorem 3(i)).
    """
    check_sizes(K=K, L=L)
    check_positive("lam", lam)
    return (2 * math.log(K) / (lam * (L + 1))) ** ((L + 1) / 2)


@dataclass
class OptimumSearch:
    """Result of ``search_global_optimum`` for C configurations (L_c, lam_c) and S starts each.

    ``losses`` (C, S): final reduced loss of every start; ``best_loss`` (C,); ``best_means``
    (C, K, K): the class-mean logit matrix M of the best start (Z = M kron 1_n^T);
    ``best_singular_values`` (C, K): the singular values of that best Z, with exact zeros (from
    the proximal map, not from an SVD of M); ``n_best`` (C,): starts whose loss is within
    ``rtol`` (relative) of the best, and ``n_best_random`` (C,) the same count among the random
    starts only; ``labels`` (S,) names each start ("random", the name of a structured start, or
    "exchange: L=.., lam=.." for a direction found at another configuration); ``best_start``
    (C,) the index of the first start (in that order) within ``rtol`` of the best, whose matrix
    and singular values are reported. ``class_sizes``: the sizes n_1..n_K of an imbalanced search
    (Appendix A; then ``n`` is None and Z = M expanded by the sizes), else None.
    """

    K: int
    n: int
    L: list
    lam: list
    losses: torch.Tensor
    best_loss: torch.Tensor
    best_means: torch.Tensor
    best_singular_values: torch.Tensor
    n_best: torch.Tensor
    n_best_random: torch.Tensor
    labels: list
    best_start: torch.Tensor
    rtol: float
    class_sizes: list | None = None

    @cached_property
    def logits(self) -> torch.Tensor:
        """The best logit matrix Z = M kron 1_n^T of every configuration, (C, K, Kn) float64
        (``logits[c]``; column c of M repeated n_c times with ``class_sizes``)."""
        sizes = self.n if self.class_sizes is None else self.class_sizes
        return torch.stack([expand_classes(M, sizes) for M in self.best_means])


def schatten_prox(sigma: torch.Tensor, tau: torch.Tensor, p: torch.Tensor, iters: int = 40):
    """argmin_{s >= 0} (s - sigma)^2 / 2 + tau s^p elementwise, 0 < p <= 1 (broadcasting).

    The proximal map of the Schatten-p regulariser on each singular value. For p = 1 it is the
    soft threshold max(sigma - tau, 0); for p < 1 the nonzero candidate is the larger root of
    s - sigma + tau p s^{p-1} = 0, found by Newton's method from s = sigma (where the left side
    is convex, so the iterates decrease monotonically to the root; at most ``iters`` steps, fewer
    once every step is below 1e-15 relative), and it is kept only where it beats s = 0 (so small
    singular values are set exactly to zero).
    """
    p = torch.as_tensor(p, dtype=sigma.dtype, device=sigma.device).expand_as(sigma)
    tau = torch.as_tensor(tau, dtype=sigma.dtype, device=sigma.device).expand_as(sigma)
    s = sigma.clone()
    tiny = torch.finfo(sigma.dtype).tiny
    curvature = torch.ones_like(s)
    for _ in range(iters):
        base = s.clamp_min(tiny)
        power = torch.exp((p - 1) * torch.log(base))  # s^{p-1}
        grad = s - sigma + tau * p * power
        curvature = 1 + tau * p * (p - 1) * power / base
        step = torch.where(curvature > 0, grad / curvature, torch.zeros_like(grad))
        new = (s - step).clamp_min(0)
        done = bool(((new - s).abs() <= 1e-15 * new).all())
        s = new
        if done:
            break
    better = 0.5 * (s - sigma) ** 2 + tau * s.pow(p) < 0.5 * sigma**2
    return torch.where(better & (curvature > 0) & (s > 0), s, torch.zeros_like(s))


def _class_mean_fit(M: torch.Tensor, root_w: torch.Tensor | None = None):
    """Mean cross-entropy of the columns of class-mean matrices M (..., K, K) and its gradient.

    With class weights w_c = n_c / (N/K) (Appendix A) the variable is X = M diag(sqrt(w)), whose
    singular values are those of Z up to the factor sqrt(N/K), and the fit is
    (1/K) sum_c w_c CE(column c of X / sqrt(w_c)) = (1/N) sum_c n_c CE(m_c); ``root_w`` (K,)
    holds sqrt(w). The gradient is with respect to that variable.
    """
    K = M.shape[-1]
    if root_w is not None:
        means = M / root_w
        diag = torch.diagonal(means, dim1=-2, dim2=-1)
        fit = ((torch.logsumexp(means, dim=-2) - diag) * root_w.square()).mean(dim=-1)
        eye = torch.eye(K, dtype=M.dtype, device=M.device)
        return fit, (torch.softmax(means, dim=-2) - eye) * root_w / K
    diag = torch.diagonal(M, dim1=-2, dim2=-1)
    fit = (torch.logsumexp(M, dim=-2) - diag).mean(dim=-1)
    eye = torch.eye(K, dtype=M.dtype, device=M.device)
    return fit, (torch.softmax(M, dim=-2) - eye) / K


def _proximal_gradient(
    M, power, weight, steps: int, progress: bool, desc: str, root_w=None, max_rank=None
):
    """Proximal gradient descent with per-run backtracking on min_M fit(M) + weight sum s^power.

    M (R, K, K); power, weight (R, 1); ``root_w`` the class weights of ``_class_mean_fit``.
    With ``max_rank`` = r the proximal map also keeps at most r singular values (the r largest:
    the scalar map is monotone, so they are the ones that gain most). Returns the final M and
    its singular values from the last proximal map (exact zeros).
    """
    R, K = M.shape[0], M.shape[-1]
    sv = torch.linalg.svdvals(M)
    eta = torch.full((R,), 2.0 * K, dtype=M.dtype, device=M.device)

    def prox_step(M, G, eta, power, weight):
        U, sig, Vh = torch.linalg.svd(M - eta.view(-1, 1, 1) * G)
        s = schatten_prox(sig, eta.view(-1, 1) * weight, power)
        if max_rank is not None:
            s[..., max_rank:] = 0.0
        return U @ (s.unsqueeze(-1) * Vh), s

    bar = tqdm(total=steps, disable=not progress, file=sys.stderr, mininterval=5.0, desc=desc)
    for _ in range(steps):
        fit, G = _class_mean_fit(M, root_w)
        eta = eta * 1.1
        new, new_s = torch.empty_like(M), torch.empty_like(sv)
        todo = torch.arange(R, device=M.device)
        for _ in range(60):
            cand, cand_s = prox_step(M[todo], G[todo], eta[todo], power[todo], weight[todo])
            D = cand - M[todo]
            model = (
                fit[todo] + (G[todo] * D).sum((-2, -1)) + D.pow(2).sum((-2, -1)) / (2 * eta[todo])
            )
            ok = _class_mean_fit(cand, root_w)[0] <= model + 1e-12 * fit[todo].abs()
            new[todo[ok]], new_s[todo[ok]] = cand[ok], cand_s[ok]
            todo = todo[~ok]
            if todo.numel() == 0:
                break
            eta[todo] = eta[todo] / 2
        if todo.numel():
            new[todo], new_s[todo] = M[todo], sv[todo]
        M, sv = new, new_s
        bar.update(1)
    bar.close()
    return M, sv


def _structured_start(
    direction: torch.Tensor, n, L: int, lam: float, gen, class_sizes=None
) -> torch.Tensor:
    """A K x K start along ``direction`` at its optimal scale for (L, lam) (norm 10 if that is 0),
    with a Gaussian perturbation of relative size 1e-6 (class sizes n_c if ``class_sizes``)."""
    direction = direction.detach().double().cpu()
    direction = direction / torch.linalg.matrix_norm(direction)
    sizes = n if class_sizes is None else class_sizes
    scale, _ = optimal_matrix_scale(expand_classes(direction, sizes), L, lam, class_sizes)
    norm = scale if scale > 0 else 10.0  # ||M||_F = ||Z||_F / sqrt(n) = scale
    noise = torch.randn(direction.shape, generator=gen, dtype=torch.float64)
    return norm * (direction + 1e-6 * noise / torch.linalg.matrix_norm(noise))


def _random_start(K: int, j: int, gen) -> torch.Tensor:
    """Random start j: Gaussian A B^T of rank 1 + (j/2 mod K) (even j) or the Gram matrix of K
    random unit vectors in R^r, r = 2 + (j/2 mod (K-1)) (odd j); Frobenius norm log-uniform in
    [1, 100]."""
    if j % 2 == 0:
        rank = 1 + (j // 2) % K
        A = torch.randn(K, rank, generator=gen, dtype=torch.float64)
        B = torch.randn(K, rank, generator=gen, dtype=torch.float64)
    else:
        rank = 2 + (j // 2) % (K - 1)
        A = torch.randn(K, rank, generator=gen, dtype=torch.float64)
        A = B = A / torch.linalg.vector_norm(A, dim=1, keepdim=True)
    M = A @ B.T
    norm = math.exp(math.log(100.0) * float(torch.rand(1, generator=gen, dtype=torch.float64)))
    return M * (norm / torch.linalg.matrix_norm(M))


def _distinct_directions(M: torch.Tensor, sv: torch.Tensor, names: list) -> dict:
    """Distinct nonzero directions among the rows of M (C, K, K), told apart by their rank and
    normalised singular values (to 1e-3)."""
    found, seen = {}, set()
    for Mc, sc, name in zip(M, sv, names, strict=True):
        if float(sc.max()) == 0.0:
            continue
        profile = sc / torch.linalg.vector_norm(sc)
        key = (int((sc > 0).sum()), tuple(torch.round(profile * 1e3).tolist()))
        if key not in seen:
            seen.add(key)
            found[name] = Mc
    return found


def search_global_optimum(
    K: int,
    n: int,
    L: Sequence[int],
    lam: Sequence[float],
    *,
    starts: int = 20,
    structured: dict | None = None,
    steps: int = 1500,
    exchange_steps: int = 0,
    seed: int = 0,
    rtol: float = 1e-6,
    device="cpu",
    dtype="float64",
    progress: bool = True,
    class_sizes=None,
    max_rank: int | None = None,
) -> OptimumSearch:
    """Multi-start search for the global minimum of Lred_L over Z (Theorem 3), batched.

    Optima have Z = M kron 1_n^T with M the K x K class-mean matrix, and s_i(Z) = sqrt(n) s_i(M),
    so the problem is min_M mean CE(M) + c sum_i s_i(M)^p with p = 2/(L+1),
    c = (lam/2)(L+1) n^{p/2}. It is solved by proximal gradient descent on M: a gradient step on
    the smooth fit, then the exact proximal map of the Schatten-p term on the singular values
    (``schatten_prox``; it sets small singular values exactly to zero), with a per-run step size
    that grows by 10% each step and is halved until the sufficient-decrease test holds, so the
    loss never increases (up to rounding, 1e-12 relative).

    Starts of each configuration: ``starts`` random ones, alternating between a Gaussian
    M = A B^T of rank 1, 2, ..., K and the Gram matrix of K random unit vectors in R^r,
    r = 2, ..., K (diagonally superior, like the rank-2 construction of Section 3.2), with a
    Frobenius norm log-uniform in [1, 100]; then one per entry of ``structured`` (names mapped to
    K x K class-mean directions, e.g. DNC, the pair structure, the circle Gram matrix), at the
    direction's own optimal scale (``optimal_matrix_scale``) plus a 1e-6 perturbation. With
    ``exchange_steps`` > 0, a second round starts every configuration from each distinct best
    direction found at the other configurations (again at its own optimal scale) and runs
    ``exchange_steps`` more steps. All configurations (L[c], lam[c]) and starts of a round run in
    one tensor program.

    Imbalanced classes (Appendix A, Theorems A2 and A3; chapter 10): with ``class_sizes``
    n_1..n_K (and ``n`` None) the class-mean reduction still holds and the problem is
    min_M (1/N) sum_c n_c CE(m_c) + (lam/2)(L+1) sum_i s_i(M diag(sqrt(n_c)))^p; it is solved
    over X = M diag(sqrt(n_c K/N)), whose singular values are those of Z over sqrt(N/K), so the
    proximal map is unchanged (equal sizes give the same problem as ``n``). ``max_rank`` = r
    restricts the search to rank <= r (the rank constraint joins the proximal map; Theorem A3's
    best rank-r matrix); random starts are then truncated to rank r as well.
    """
    if class_sizes is None:
        check_sizes(K=K, n=n)
        n_bar, root_w = n, None
    else:
        if n is not None:
            raise ValueError(f"n={n!r} is not allowed with class_sizes: pass n=None")
        class_sizes = check_class_sizes(class_sizes, K=K)
        n_bar = sum(class_sizes) / K
        root_w = torch.tensor(class_sizes, dtype=torch.float64).div(n_bar).sqrt()
    if max_rank is not None:
        check_int("max_rank", max_rank, 1)
    L, lam = list(L), list(lam)
    if len(L) != len(lam) or not L:
        raise ValueError(f"L and lam have lengths {len(L)} and {len(lam)}: need equal, nonzero")
    for Lc, lc in zip(L, lam, strict=True):
        check_int("L", Lc, 1)
        check_positive("lam", lc)
    check_int("starts", starts, 1)
    check_int("steps", steps, 0)
    check_int("exchange_steps", exchange_steps, 0)
    check_positive("rtol", rtol)
    dev, dt = check_device(device), check_dtype(dtype)
    structured = dict(structured or {})
    for name, direction in structured.items():
        if tuple(direction.shape) != (K, K):
            raise ValueError(
                f"structured[{name!r}].shape={tuple(direction.shape)} is not allowed: "
                f"must be (K, K) = ({K}, {K})"
            )
    gen = torch.Generator().manual_seed(int(seed))
    C = len(L)

    def run_round(labels, make_start, round_steps, desc):
        S = len(labels)
        depth = torch.tensor(L, dtype=torch.float64).repeat_interleave(S)
        power = (2.0 / (depth + 1)).view(-1, 1)
        weight = 0.5 * torch.tensor(lam, dtype=torch.float64).repeat_interleave(S) * (depth + 1)
        weight = (weight * n_bar ** (power[:, 0] / 2)).view(-1, 1)
        M0 = torch.stack([make_start(c, j) for c in range(C) for j in range(S)])
        if root_w is not None:
            M0 = M0 * root_w  # the variable X = M diag(sqrt(w))
        if max_rank is not None:
            U, s0, Vh = torch.linalg.svd(M0)
            M0 = U[..., :max_rank] @ (s0[..., :max_rank, None] * Vh[..., :max_rank, :])
        rw = None if root_w is None else root_w.to(dev, dt)
        M, sv = _proximal_gradient(
            M0.to(dev, dt),
            power.to(dev, dt),
            weight.to(dev, dt),
            round_steps,
            progress,
            desc,
            rw,
            max_rank,
        )
        M, sv = M.double().cpu(), sv.double().cpu()
        # The regulariser uses the prox's singular values, whose zeros are exact: an SVD of M
        # returns rounding-level values ~1e-16 |M| that s^{2/(L+1)} inflates (1e-13^{2/13} = 0.01).
        final = _class_mean_fit(M, root_w)[0] + (weight * sv.pow(power)).sum(-1)
        if root_w is not None:
            M = M / root_w  # back to the class means
        return final.view(C, S), M.view(C, S, K, K), sv.view(C, S, K)

    labels = ["random"] * starts + list(structured)

    def first_start(c, j):
        if j < starts:
            return _random_start(K, j, gen)
        return _structured_start(structured[labels[j]], n, L[c], lam[c], gen, class_sizes)

    losses, M, sv = run_round(labels, first_start, steps, "optimum")
    if exchange_steps > 0:
        best_idx = losses.argmin(dim=1)
        names = [f"exchange: L={L[c]}, lam={lam[c]:.3g}" for c in range(C)]
        found = _distinct_directions(
            M[torch.arange(C), best_idx], sv[torch.arange(C), best_idx], names
        )
        if found:
            extra = list(found)

            def exchange_start(c, j):
                return _structured_start(found[extra[j]], n, L[c], lam[c], gen, class_sizes)

            more = run_round(extra, exchange_start, exchange_steps, "exchange")
            losses, M, sv = (
                torch.cat([a, b], dim=1) for a, b in zip((losses, M, sv), more, strict=True)
            )
            labels = labels + extra
    best = losses.min(dim=1).values
    hits = (losses - best.unsqueeze(1)) <= rtol * best.abs().unsqueeze(1)
    where = hits.to(torch.int8).argmax(dim=1)  # the first start within rtol of the best
    rows = torch.arange(C)
    return OptimumSearch(
        K,
        n,
        L,
        lam,
        losses,
        best,
        M[rows, where],
        sv[rows, where] * math.sqrt(n_bar),
        hits.sum(dim=1),
        hits[:, :starts].sum(dim=1),
        labels,
        where,
        rtol,
        class_sizes,
    )


def optimum_rows(res: OptimumSearch, known: dict) -> list[dict]:
    """One dict per configuration of a balanced search (chapter 4, Theorem 3), in its order.

    Keys: ``L``, ``lam``, ``loss`` (the best value found), ``rank`` and ``sv`` (its singular
    values, exact zeros included), ``superior`` (diagonal superiority of its logits), ``source``
    (the label of the first start at the best value), ``n_best``, ``n_random`` (starts at the
    best value, all and random ones), ``n_starts``, ``known`` (each structure of ``known``, names
    mapped to K x K class-mean directions, at its own optimal scale: its reduced loss) and
    ``bound`` (``zero_comparison_bound``). Chapter 4's tables, figures and checks of the rank,
    the superiority and the zero optimum read these rows.
    """
    if res.class_sizes is not None:
        raise ValueError("class_sizes is not allowed: optimum_rows takes a balanced search")
    rows = []
    for c, (L, lam) in enumerate(zip(res.L, res.lam, strict=True)):
        sv = res.best_singular_values[c]
        rows.append(
            {
                "L": L,
                "lam": lam,
                "loss": float(res.best_loss[c]),
                "rank": int((sv > 0).sum()),
                "sv": sv,
                "superior": is_diagonally_superior(res.logits[c], res.K, res.n),
                "source": res.labels[int(res.best_start[c])],
                "n_best": int(res.n_best[c]),
                "n_random": int(res.n_best_random[c]),
                "n_starts": len(res.labels),
                "known": {
                    name: optimal_matrix_scale(expand_classes(D, res.n), L, lam)[1]
                    for name, D in known.items()
                },
                "bound": zero_comparison_bound(res.K, L, lam),
            }
        )
    return rows


def search_statistics(rows: Sequence[dict]) -> dict:
    """How hard the optimum was to find, over the rows of ``optimum_rows`` (chapter 4).

    ``n_configs``: rows; ``random_missed``: rows where no random start reached the best value;
    ``min_n_best``: the fewest starts at the best value in any row; ``known_excess``: the largest
    relative excess of the best value over the best known structure of its row (Theorem 3's
    consistency check: at most rounding); ``strictly_better``: rows whose best value is below
    every known structure by more than 1e-9 (relative).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows=[] is not allowed: need at least one configuration")
    return {
        "n_configs": len(rows),
        "random_missed": sum(row["n_random"] == 0 for row in rows),
        "min_n_best": min(row["n_best"] for row in rows),
        "known_excess": max(row["loss"] / min(row["known"].values()) - 1 for row in rows),
        "strictly_better": sum(
            row["loss"] < min(row["known"].values()) * (1 - 1e-9) for row in rows
        ),
    }
