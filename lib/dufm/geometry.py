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
  and 6; chapter 6). ``critical_point_summary``: what chapter 6 records of one such point.
- ``kernel_and_normal``: the Hessian's eigenvalues split into the orbit_dimension smallest in
  magnitude and the rest, to test that the kernel is exactly the tangent of the critical set
  (then the point is a minimum along every other direction; chapter 6).
- ``column_hessian``, ``lemma2_errors``, ``lemma2_hessian_errors``: Lemma 2 measured (chapter 6):
  the cross-entropy Hessian of one logit column by automatic differentiation against the split
  of ``dufm.theory.dnc_softmax_split``, the lemma's identity, and its consequence in the exact
  Hessian of the full loss at a DNC critical point.
"""

from __future__ import annotations

import math

import torch

from .losses import forward, mean_cross_entropy, regulariser
from .metrics import class_mean_logits, critical_point_residual
from .structures import factorize, logits, simplex_matrix
from .theory.critical import (
    critical_weight_decay,
    dnc_softmax_split,
    lemma2_curvature,
    lemma2_right_side,
)
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


def stiefel_dimension(r: int, d: int, L: int) -> int:
    """L (r d - r(r+1)/2): L copies of the Stiefel manifold of orthonormal r-frames in R^d, the
    dimension of the critical set of a rank-r output (chapter 7's Eq. orbit-dimension)."""
    return L * (r * d - r * (r + 1) // 2)


def paper_dnc_dimension(K: int, d: int, L: int) -> int:
    """The paper's count D_DNC = L (K-1)(d-K+1) of the DNC critical set (Theorem 5, as printed;
    chapter 7 measures L r(r-1)/2 more, r = K - 1)."""
    return L * (K - 1) * (d - K + 1)


def paper_dimension_ratio(K: int, d: int) -> float:
    """The paper's R(d) = (K-1)(d-K+1) / (r(d-r)), r = K/2: its D_DNC over its D_pair
    (Theorem 5, as printed; chapter 7)."""
    r = K // 2
    return (K - 1) * (d - K + 1) / (r * (d - r))


def critical_set_dimensions(
    Ks, depths, extra_widths, n: int, lam: float, seed: int = 0, device="cpu"
) -> list[dict]:
    """Both measurements of the critical-set dimension at the DNC and pair points (Theorem 5).

    For every K, L and d = K + extra: the structure's critical point at its large critical scale
    for ``lam`` (``theory.branch_scale``), factorised with random orthogonal bases from ``seed``;
    one row with K, L, d and, for s in ("dnc", "pair"), ``s_orbit`` (``orbit_dimension``),
    ``s_flat`` (``flat_output_dimension``) and ``s_r``, the output's rank (K - 1, K/2).
    Chapter 7's table, figure and checks.
    """
    from .theory.critical import branch_scale

    device = check_device(device)
    rows = []
    for K in Ks:
        for L in depths:
            for extra in extra_widths:
                row = dict(K=K, L=L, d=K + extra)
                for structure, r in (("dnc", K - 1), ("pair", K // 2)):
                    scale = branch_scale(structure, K, n, L, lam, "large")
                    Z = logits(structure, K, n, scale)
                    params = [P.to(device) for P in factorize(Z, L, K + extra, seed=seed)]
                    row[f"{structure}_orbit"] = orbit_dimension(params)
                    row[f"{structure}_flat"] = flat_output_dimension(params, lam)
                    row[f"{structure}_r"] = r
                rows.append(row)
    return rows


def critical_set_table(rows: list[dict]) -> tuple[list, list]:
    """(headers, rows) of chapter 7's table from ``critical_set_dimensions`` rows: for DNC and
    for the pair structure the two measurements and Eq. (orbit-dimension), the paper's D_DNC,
    and the ratio R(d) measured and as printed."""
    headers = ["K", "L", "d", "DNC: orbit", "flat ∩ output", "Eq. orbit-dimension"]
    headers += ["paper's D_DNC", "pair: orbit", "flat ∩ output", "Eq. orbit-dimension"]
    headers += ["R(d) measured", "R(d) paper"]
    table = []
    for x in rows:
        K, L, d = x["K"], x["L"], x["d"]
        row = [K, L, d]
        for s in ("dnc", "pair"):
            row += [x[f"{s}_orbit"], x[f"{s}_flat"], stiefel_dimension(x[f"{s}_r"], d, L)]
            if s == "dnc":
                row.append(paper_dnc_dimension(K, d, L))
        row += [f"{x['dnc_orbit'] / x['pair_orbit']:.3f}", f"{paper_dimension_ratio(K, d):.3f}"]
        table.append(row)
    return headers, table


def check_critical_set_dimensions(rows: list[dict]) -> dict:
    """Chapter 7's five checks of Theorem 5 on ``critical_set_dimensions`` rows.

    Raises ``CheckFailed`` unless (1) the two measurements agree, (2) they equal
    ``stiefel_dimension``, (3) where the paper's ``paper_dnc_dimension`` differs, it misses by
    exactly L r(r-1)/2, (4) the measured ratio R(d) = D_DNC / D_pair increases with d and stays
    below its limit (K-1)/r, and (5) the measured R(K) is above 1. Returns ``paper_misses`` (rows
    where the paper's count is wrong), ``paper_below_1`` (series whose paper R(K) is below 1) and
    ``R_at_K`` (the measured R(K) of each series).
    """
    from .checks import CheckFailed

    paper_misses = 0
    for x in rows:
        K, L, d = x["K"], x["L"], x["d"]
        for s in ("dnc", "pair"):
            where = f"K={K} L={L} d={d} {s}"
            if x[f"{s}_orbit"] != x[f"{s}_flat"]:
                raise CheckFailed(
                    f"{where}: orbit dimension {x[f'{s}_orbit']} "
                    f"but dim(ker Hessian ∩ ker dZ) = {x[f'{s}_flat']}"
                )
            derived = stiefel_dimension(x[f"{s}_r"], d, L)
            if x[f"{s}_orbit"] != derived:
                raise CheckFailed(
                    f"{where}: measured dimension {x[f'{s}_orbit']}, Eq. (orbit-dimension) "
                    f"{derived} (off by {x[f'{s}_orbit'] - derived})"
                )
        gap = x["dnc_orbit"] - paper_dnc_dimension(K, d, L)
        if gap:
            paper_misses += 1
            if gap != L * (K - 1) * (K - 2) // 2:
                raise CheckFailed(
                    f"K={K} L={L} d={d}: measured D_DNC - paper's = {gap}, "
                    f"not L r(r-1)/2 = {L * (K - 1) * (K - 2) // 2}"
                )
    paper_below_1, R_at_K = 0, []
    for K, L in dict.fromkeys((x["K"], x["L"]) for x in rows):
        series = [x["dnc_orbit"] / x["pair_orbit"] for x in rows if x["K"] == K and x["L"] == L]
        limit = (K - 1) / (K // 2)
        if not all(b > a for a, b in zip(series[:-1], series[1:], strict=True)):
            raise CheckFailed(f"K={K} L={L}: measured R(d) not increasing: {series}")
        if not series[-1] < limit:
            raise CheckFailed(f"K={K} L={L}: R(d) = {series[-1]:.4f} passes its limit {limit:.4f}")
        if not series[0] > 1:
            raise CheckFailed(f"K={K} L={L}: measured R(K) = {series[0]:.4f} is not above 1")
        R_at_K.append(series[0])
        paper_below_1 += paper_dimension_ratio(K, K) < 1
    return dict(paper_misses=paper_misses, paper_below_1=int(paper_below_1), R_at_K=R_at_K)


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


def critical_point_summary(
    structure: str,
    K: int,
    n: int,
    L: int,
    scale: float,
    d: int,
    seed: int = 0,
    rtol: float = 1e-10,
    orbit: bool = True,
    device="cpu",
) -> dict:
    """What chapter 6 measures at one critical point (Theorems 4 and 6).

    From ``structure_spectrum`` at this scale and width: "lam" (Eq. 19 or 27), "residual"
    (``dufm.metrics.critical_point_residual``, an independent gradient), "min_rel" (smallest over
    largest eigenvalue), "negative" (``negative_count`` with ``rtol``), the three norms of
    ``spectral_norms``; with ``orbit`` and no negative eigenvalue also "orbit"
    (``orbit_dimension``), "tangent_rel" (largest |tangent eigenvalue| over the largest) and
    "normal_rel" (smallest normal eigenvalue over the largest) from ``kernel_and_normal``.
    """
    lam, params, eig = structure_spectrum(structure, K, n, L, scale, d, seed, device)
    row = {
        "lam": lam,
        "residual": critical_point_residual([P.cpu() for P in params], lam),
        "min_rel": float(eig[0] / eig[-1]),
        "negative": negative_count(eig, rtol),
        **spectral_norms(eig),
    }
    if orbit and row["negative"] == 0:
        row["orbit"] = orbit_dimension(params)
        tangent, normal = kernel_and_normal(eig, row["orbit"])
        row["tangent_rel"] = float(tangent.abs().max() / eig[-1]) if row["orbit"] else 0.0
        row["normal_rel"] = float(normal[0] / eig[-1])
    return row


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


def column_hessian(z: torch.Tensor, c: int) -> torch.Tensor:
    """Hessian (K x K, float64) of one column's cross-entropy -log softmax(z)_c with respect to
    its logits z (shape (K,)), by automatic differentiation (Lemma 2; chapter 6)."""
    z = z.detach().double()
    if z.dim() != 1 or not 0 <= c < z.numel():
        raise ValueError(f"z.shape={tuple(z.shape)}, c={c} is not allowed: z 1-D, 0 <= c < K")
    return torch.autograd.functional.hessian(lambda x: -torch.log_softmax(x, 0)[c], z)


def lemma2_errors(K: int, c: int, alpha: float, split=dnc_softmax_split) -> dict:
    """Lemma 2 measured at the logits alpha s_c of a class-c sample of a DNC point (Thm 4(ii)).

    ``split``(K, c, alpha) -> (w1, rho'_c, w2, rho''_c) is the decomposition under test (Eq. 25;
    ``dufm.theory.dnc_softmax_split``). Returns relative errors, each to be compared with a
    tolerance: "split", ||rho_c - (w1 rho'_c + w2 rho''_c)||_F / ||rho_c||_F with rho_c from
    ``column_hessian``; "psd", the smallest eigenvalue of rho''_c over its largest magnitude
    (>= 0 when rho''_c is positive semi-definite); "lemma", ||S rho'_c S - (K s_c s_c^T + S)||_F /
    ||K s_c s_c^T + S||_F (``dufm.theory.lemma2_right_side``).
    """
    check_positive("alpha", alpha)
    S = simplex_matrix(K)
    rho = column_hessian(alpha * S[:, c], c)
    w1, rho1, w2, rho2 = split(K, c, alpha)
    eig = torch.linalg.eigvalsh(rho2)
    right = lemma2_right_side(K, c)
    return {
        "split": float(torch.linalg.matrix_norm(rho - (w1 * rho1 + w2 * rho2)))
        / float(torch.linalg.matrix_norm(rho)),
        "psd": float(eig[0] / eig.abs().max()),
        "lemma": float(torch.linalg.matrix_norm(S @ rho1 @ S - right))
        / float(torch.linalg.matrix_norm(right)),
    }


def lemma2_hessian_errors(
    K: int, n: int, L: int, alpha: float, d: int, trials: int = 3, seed: int = 0, device="cpu"
) -> float:
    """Lemma 2's consequence in the exact Hessian of the full loss at a DNC critical point.

    At the Lemma-1 DNC point of scale alpha (width d, lam from Eq. 19) the output is linear in
    each matrix, so along a direction v = X in one slot (zero elsewhere) v^T Hess v - lam ||X||^2
    is the mean cross-entropy's curvature along the logit change Z(X in that slot). Its
    class-mean matrix Y (K x K; global mean zero, so class c's logits move by Y s_c) gives the
    prediction ``dufm.theory.lemma2_curvature``(Y, alpha). ``trials`` random X per matrix
    (H_1's constant within each class and of zero global mean, W_l Gaussian). Returns the largest
    error |v^T Hess v - lam ||X||^2 - predicted| / (v^T Hess v), relative to the whole curvature
    along v (at a small critical scale the fit term is a tiny part of it, and an error relative
    to the fit term alone would measure the rounding of lam ||X||^2). Chapter 6.
    """
    check_int("trials", trials, 1)
    device = check_device(device)
    lam = critical_weight_decay("dnc", K, n, L, alpha)
    params = [P.to(device) for P in factorize(logits("dnc", K, n, alpha), L, d, seed=seed)]
    hessian = loss_hessian(params, lam)
    gen = torch.Generator().manual_seed(seed + 1)
    S = simplex_matrix(K)
    worst = 0.0
    for slot, P in enumerate(params):
        for _ in range(trials):
            if slot == 0:  # class-constant, zero global mean: X' S kron 1_n^T
                X = torch.kron(torch.randn(d, K, generator=gen, dtype=torch.float64) @ S,
                               torch.ones(1, n, dtype=torch.float64))  # fmt: skip
            else:
                X = torch.randn(P.shape, generator=gen, dtype=torch.float64)
            X = X.to(device)
            direction = [torch.zeros_like(Q, dtype=torch.float64) for Q in params]
            direction[slot] = X
            v = torch.cat([t.flatten() for t in direction])
            curvature = float(v @ hessian @ v)
            moved = [X if i == slot else Q for i, Q in enumerate(params)]
            Y = class_mean_logits(forward(moved)[-1]).cpu()
            predicted = lam * float(X.pow(2).sum()) + lemma2_curvature(Y, alpha)
            worst = max(worst, abs(curvature - predicted) / abs(curvature))
    return worst
