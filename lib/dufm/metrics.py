"""Neural-collapse metrics, singular-value profiles and a structure classifier.

Definition 1 (DNC1-3) is measured per layer; Lemma 1's balancedness by a residual; the
classifier names the structure of a converged logit matrix (DNC, the pair structure of Eq. (5),
or another structure with its rank), as Figures 1, 2 and 5 need. The field's NC1-NC4 metrics
(Papyan, Han & Donoho 2020; Galanti et al. 2022), on features with labels in any order, put the
book's networks beside published NC curves (``field_metrics``; chapters 1 and 9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import forward, loss_and_grads, one_hot_labels
from .structures import expand_classes, mixture_components, pair_matrix, simplex_matrix
from .validation import (
    check_activation,
    check_class_sizes,
    check_features,
    check_labels,
    check_logits,
    require,
)


def class_means(H: torch.Tensor, K: int, class_sizes=None) -> torch.Tensor:
    """Class-mean matrix M (d x K) of features H (d x Kn) with class-ordered columns.

    With ``class_sizes`` (n_1..n_K, Appendix A; chapter 10) H is d x N, N = sum n_c, and class c
    owns the next n_c columns.
    """
    d, N = H.shape
    if class_sizes is None:
        return H.reshape(d, K, N // K).mean(dim=-1)
    sizes = check_class_sizes(class_sizes, K=K, N=N)
    return torch.stack([block.mean(dim=-1) for block in H.split(sizes, dim=-1)], dim=-1)


def _centred_means(H: torch.Tensor, K: int) -> torch.Tensor:
    M = class_means(H, K)
    return M - M.mean(dim=1, keepdim=True)


def dnc1(H: torch.Tensor, K: int) -> float:
    """DNC1 (within-class variability): tr(Sigma_W) / tr(Sigma_B); 0 when features = class means.

    Sigma_W is the within-class covariance, Sigma_B the covariance of the class means around the
    global mean. Returns inf when the class means coincide but features vary, nan for H = 0.
    """
    M = class_means(H, K)
    within = (H - expand_classes(M, H.shape[1] // K)).pow(2).sum() / H.shape[1]
    between = _centred_means(H, K).pow(2).sum() / K
    return float(within / between) if between > 0 else float("nan" if within == 0 else "inf")


def dnc2(H: torch.Tensor, K: int) -> float:
    """DNC2: || G/||G|| - S/||S|| ||_F for the Gram matrix G of the centred class means.

    0 exactly when the globally centred means form a simplex ETF (G proportional to S).
    """
    Mc = _centred_means(H, K)
    G = Mc.T @ Mc
    S = simplex_matrix(K, dtype=H.dtype, device=H.device)
    norm = torch.linalg.matrix_norm(G)
    if norm == 0:
        return float("nan")
    return float(torch.linalg.matrix_norm(G / norm - S / torch.linalg.matrix_norm(S)))


def dnc3(W: torch.Tensor, H_in: torch.Tensor, K: int, rtol: float = 1e-8) -> float:
    """DNC3: ||W (I - P)||_F / ||W||_F, P the projector onto the centred class means of H_in.

    H_in is the layer's input (H_1 for W_1, relu(H_l) or H_l for W_l, l >= 2); 0 exactly when
    every row of W is a linear combination of the centred class means (Definition 1).
    """
    Mc = _centred_means(H_in, K)
    U, s, _ = torch.linalg.svd(Mc, full_matrices=False)
    basis = U[:, s > rtol * s.max()] if s.max() > 0 else U[:, :0]
    residual = W - (W @ basis) @ basis.T
    norm = torch.linalg.matrix_norm(W)
    return float(torch.linalg.matrix_norm(residual) / norm) if norm > 0 else float("nan")


def layer_inputs(params: list, activation: str = "linear") -> list:
    """The input of each weight matrix: [H_1, act(H_2), ..., act(H_L)] (act = id for linear)."""
    feats = forward(params, activation)[:-1]
    if activation == "relu":
        return [feats[0]] + [torch.relu(H) for H in feats[1:]]
    return feats


def dnc_metrics(params: list, activation: str = "linear") -> dict:
    """Per-layer DNC1, DNC2 (on each layer's input features) and DNC3 (on W_l), l = 1..L.

    Returns {"DNC1": [...], "DNC2": [...], "DNC3": [...]} with L entries each (Definition 1;
    Proposition 1 says all are zero for a DNC solution of the linear model).
    """
    check_activation(activation)
    K = params[-1].shape[0]
    inputs = layer_inputs(params, activation)
    return {
        "DNC1": [dnc1(H, K) for H in inputs],
        "DNC2": [dnc2(H, K) for H in inputs],
        "DNC3": [dnc3(W, H, K) for W, H in zip(params[1:], inputs, strict=True)],
    }


def _mean_and_centred_norms(H: torch.Tensor, K: int) -> tuple[float, float]:
    """(||mu 1^T||_F, ||C||_F) for class means M = mu 1^T + C of H (C globally centred)."""
    M = class_means(H, K)
    mu = M.mean(dim=1, keepdim=True)
    return float(torch.linalg.vector_norm(mu) * K**0.5), float(torch.linalg.matrix_norm(M - mu))


def assumption1_ratios(params: list) -> dict:
    """Assumption 1 of Theorem 7, measured layer by layer on a deep ReLU UFM's features.

    For each ReLU layer l = 2..L the class means of H_l (before ReLU) and of relu(H_l) (after)
    are split as M = mu 1^T + C (global mean mu, globally centred C). Returns lists of L-1 floats:
    ``before`` and ``after``, the ratios ||mu 1^T||_F / ||C||_F (Assumption 1: after >= before);
    ``centred_shrink``, ||C_after||_F / ||C_before||_F (the bound of Theorem 7's proof needs
    <= 1, which Assumption 1 implies since ReLU does not increase the Frobenius norm); and
    ``dnc2_before``, ``dnc2_after`` (``dnc2`` of the two feature matrices: 0 when the centred
    means form a simplex, as Definition 5 requires). ``params`` = [H_1, W_1, ..., W_L], one
    run (chapter 8).
    """
    K = params[-1].shape[0]
    feats = forward(params, "relu")[1:-1]  # H_2 .. H_L
    out = {key: [] for key in ("before", "after", "centred_shrink", "dnc2_before", "dnc2_after")}
    for H in feats:
        mean_pre, centred_pre = _mean_and_centred_norms(H, K)
        mean_post, centred_post = _mean_and_centred_norms(torch.relu(H), K)
        out["before"].append(mean_pre / centred_pre if centred_pre > 0 else float("inf"))
        out["after"].append(mean_post / centred_post if centred_post > 0 else float("inf"))
        shrink = centred_post / centred_pre if centred_pre > 0 else float("nan")
        out["centred_shrink"].append(shrink)
        out["dnc2_before"].append(dnc2(H, K))
        out["dnc2_after"].append(dnc2(torch.relu(H), K))
    return out


def class_mean_logits(Z: torch.Tensor) -> torch.Tensor:
    """The K x K class-mean logit matrix (column c = mean logit vector of class c)."""
    K, _ = check_logits(Z)
    return class_means(Z, K)


def singular_values(Z: torch.Tensor) -> torch.Tensor:
    """Singular values of Z in decreasing order (float64)."""
    return torch.linalg.svdvals(Z.double())


def numerical_rank(Z: torch.Tensor, rtol: float = 1e-4) -> int:
    """Number of singular values above rtol * s_max (0 for Z = 0)."""
    s = singular_values(Z)
    return int((s > rtol * s[0]).sum()) if s[0] > 0 else 0


def balancedness_gaps(params: list) -> list:
    """[||W_{l+1}^T W_{l+1} - W_l W_l^T||, ||W_l W_l^T||] for l = 0..L-1, W_0 = H_1 (Lemma 1)."""
    out = []
    for lower, upper in zip(params[:-1], params[1:], strict=True):
        left = lower @ lower.T
        out.append(
            [
                float(torch.linalg.matrix_norm(upper.T @ upper - left)),
                float(torch.linalg.matrix_norm(left)),
            ]
        )
    return out


def balancedness_residual(params: list) -> float:
    """max_l ||W_{l+1}^T W_{l+1} - W_l W_l^T||_F / ||W_l W_l^T||_F with W_0 = H_1 (Lemma 1).

    Zero at every critical point of the linear deep UFM.
    """
    return max(gap / norm for gap, norm in balancedness_gaps(params))


def critical_point_residual(params: list, lam: float, activation: str = "linear") -> float:
    """||grad L|| / (lam ||params||): how far [H_1, W_1, ..., W_L] is from a critical point.

    The weight-decay part of the gradient has norm lam ||params||, so a value far below 1 means
    the fit gradient cancels it (Lemma 1's hypothesis). Uses the reference analytic gradient
    (``dufm.losses.loss_and_grads``).
    """
    K, N = params[-1].shape[0], params[0].shape[1]
    targets = one_hot_labels(K, N // K, params[0].dtype)
    lam_t = torch.full((1, 1, 1), float(lam), dtype=params[0].dtype)
    _, grads = loss_and_grads([P.unsqueeze(0) for P in params], targets, lam_t, activation)
    grad_norm = sum(float(g.pow(2).sum()) for g in grads) ** 0.5
    param_norm = sum(float(P.pow(2).sum()) for P in params) ** 0.5
    return grad_norm / (lam * param_norm)


@dataclass(frozen=True)
class Structure:
    """Classifier verdict: ``name`` ("dnc", "pair", "mixture", "zero" or "other"), rank,
    template distance; for a mixture its simplex classes and pairs."""

    name: str
    rank: int
    distance: float
    simplex_classes: tuple = ()
    pairs: tuple = ()


def _normalised_distance(Z: torch.Tensor, template: torch.Tensor) -> float:
    return float(
        torch.linalg.matrix_norm(
            Z / torch.linalg.matrix_norm(Z) - template / torch.linalg.matrix_norm(template)
        )
    )


def _mutual_partners(M: torch.Tensor) -> list:
    """Sorted pairs (c, e), c < e, of classes whose lowest off-diagonal logits in the class-mean
    matrix M (column c: the mean logits of class c) are each other's."""
    K = M.shape[0]
    off = M + torch.diag(torch.full((K,), float("inf"), dtype=M.dtype, device=M.device))
    partner = off.argmin(dim=0).tolist()
    return sorted({tuple(sorted((c, e))) for c, e in enumerate(partner) if partner[e] == c})


def pairing(M: torch.Tensor) -> list | None:
    """Classes matched by mutual lowest logit in the class-mean matrix M, or None if not a matching.

    Returns a permutation ``order`` listing classes pair by pair (and the unpaired class last for
    odd K), so that M[order][:, order] is compared with the pair structure of Eq. (5).
    """
    K = M.shape[0]
    pairs = _mutual_partners(M)
    paired = [c for pair in pairs for c in pair]
    if len(pairs) != K // 2 or len(set(paired)) != 2 * (K // 2):
        return None
    return paired + [c for c in range(K) if c not in paired]


def mixture_partition(M: torch.Tensor) -> tuple[list, list] | None:
    """Simplex classes and pairs of a class-mean matrix M read as a mixture (Figure 5), or None.

    Classes c, e form a pair when each is the other's lowest logit and that logit is below minus
    half the class's own logit (a pair pushes its partner down by its full margin, a simplex class
    by 1/(m-1) of it); the remaining classes are the simplex classes. None unless there are at
    least one pair and two simplex classes (with none of either it is DNC or the pair structure).
    """
    K = M.shape[0]
    diag = torch.diagonal(M)
    pairs = [
        (c, e)
        for c, e in _mutual_partners(M)
        if M[e, c] < -0.5 * diag[c] and M[c, e] < -0.5 * diag[e]
    ]
    paired = {c for pair in pairs for c in pair}
    simplex_classes = [c for c in range(K) if c not in paired]
    if not pairs or len(simplex_classes) < 2:
        return None
    return simplex_classes, [list(pair) for pair in pairs]


def _mixture_distance(Z: torch.Tensor, simplex_classes, pairs) -> float:
    """Relative Frobenius residual of Z against a T_S + b T_P (kron 1_n^T), a and b by least
    squares."""
    K, N = Z.shape
    T_S, T_P = mixture_components(K, simplex_classes, pairs, Z.dtype, Z.device)
    basis = torch.stack([expand_classes(T, N // K).flatten() for T in (T_S, T_P)], dim=1)
    coef = torch.linalg.lstsq(basis, Z.flatten().unsqueeze(1)).solution
    return float(
        torch.linalg.vector_norm(basis @ coef - Z.flatten().unsqueeze(1))
        / torch.linalg.vector_norm(Z)
    )


def classify_structure(Z: torch.Tensor, tol: float = 0.05, rank_rtol: float = 1e-4) -> Structure:
    """Name the structure of a logit matrix Z (K x Kn): DNC, pair, mixture, zero, or other.

    A structure is recognised when the normalised Z is within ``tol`` (Frobenius) of the normalised
    template: S kron 1_n^T for DNC (Definition 2), or the pair matrix of Eq. (5) with the pairs read
    from the class-mean logits; a mixture (``mixture_partition``) when Z is within ``tol``
    (relative) of its best fit a T_S + b T_P. Figures 1, 2 and 5 count runs with it.
    """
    K, n = check_logits(Z)
    Z = Z.double()
    rank = numerical_rank(Z, rank_rtol)
    if rank == 0:
        return Structure("zero", 0, 0.0)
    dist_dnc = _normalised_distance(Z, expand_classes(simplex_matrix(K), n))
    if dist_dnc < tol:
        return Structure("dnc", rank, dist_dnc)
    order = pairing(class_mean_logits(Z))
    if order is not None:
        inverse = torch.argsort(torch.tensor(order))
        template = pair_matrix(K)[inverse][:, inverse]
        dist_pair = _normalised_distance(Z, expand_classes(template, n))
        if dist_pair < tol:
            return Structure("pair", rank, dist_pair)
    partition = mixture_partition(class_mean_logits(Z))
    if partition is not None:
        dist_mix = _mixture_distance(Z, *partition)
        if dist_mix < tol:
            simplex_classes, pairs = partition
            return Structure(
                "mixture", rank, dist_mix, tuple(simplex_classes), tuple(map(tuple, pairs))
            )
    return Structure("other", rank, dist_dnc)


# The field's neural-collapse metrics (Papyan, Han & Donoho 2020 and successors) on
# features H (d, N) with integer labels (N,) in any order and any class sizes,
# mu_c the class means, mu_G the mean of all N columns, m_c = mu_c - mu_G. Float64 throughout;
# chapters 1 and 9 report them beside DNC1-3 of Definition 1.


def _class_geometry(H, labels, min_per_class: int = 1):
    """(H float64, labels int64, class sizes (K,), means mu (d, K), centred means m (d, K))."""
    H = check_features(H)
    labels, sizes = check_labels(labels, H.shape[1], min_per_class)
    labels = labels.to(H.device)
    sizes = torch.tensor(sizes, dtype=H.dtype, device=H.device)
    mu = torch.zeros(H.shape[0], sizes.numel(), dtype=H.dtype, device=H.device)
    mu = mu.index_add_(1, labels, H) / sizes
    return H, labels, sizes, mu, mu - H.mean(dim=1, keepdim=True)


def _pair_cosines(m: torch.Tensor) -> torch.Tensor:
    """cos(m_c, m_c') for the pairs c < c' (row-major), from centred means m (d, K)."""
    unit = m / torch.linalg.vector_norm(m, dim=0)
    i, j = torch.triu_indices(m.shape[1], m.shape[1], 1, device=m.device)
    return (unit.T @ unit)[i, j]


def papyan_nc1(H, labels) -> float:
    """NC1 of Papyan, Han & Donoho (2020): Tr(Sigma_W Sigma_B^+) / K.

    Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T, Sigma_B = (1/K) sum_c m_c m_c^T,
    and Sigma_B^+ = sum_{j < K} v_j v_j^T / s_j from the top K - 1 eigenpairs (s_j, v_j) of
    Sigma_B only (with equal class sizes the others are zero up to rounding, and a pseudo-inverse
    that inverts them is where published code returns negative or huge values). H (d, N) with
    d >= K - 1, labels (N,), each class with at least two samples. 0 exactly when every feature
    equals its class mean (DNC1). Near a structure whose centred means span fewer than K - 1
    directions (the pair structure of Eq. (5)) it stays of order one however small the
    within-class noise, since the smallest of the top K - 1 eigenvalues is then made of the same
    noise (``cdnv`` vanishes there). Chapters 1 and 9.
    """
    H, labels, _, mu, m = _class_geometry(H, labels, min_per_class=2)
    K = m.shape[1]
    require(H.shape[0] >= K - 1, "H.shape", tuple(H.shape), f"needs d >= K - 1 = {K - 1}")
    # Sigma_B = m m^T / K: eigenvectors are m's left singular vectors, eigenvalues s^2 / K.
    U, s, _ = torch.linalg.svd(m, full_matrices=False)
    within = (U[:, : K - 1].T @ (H - mu[:, labels])).pow(2).sum(dim=1) / H.shape[1]
    return float((within / s[: K - 1].pow(2)).sum())


def cdnv(H, labels) -> float:
    """Class-distance normalised variance of Galanti et al. (2022), averaged over pairs c < c'.

    (V_c + V_c') / (2 ||mu_c - mu_c'||^2) with V_c the mean of ||h_i - mu_c||^2 over class c.
    H (d, N), labels (N,), each class with at least two samples; 0 exactly under DNC1, inf when
    two class means coincide. Chapters 1 and 9.
    """
    H, labels, sizes, mu, _ = _class_geometry(H, labels, min_per_class=2)
    spread = (H - mu[:, labels]).pow(2).sum(dim=0)
    V = torch.zeros_like(sizes).index_add_(0, labels, spread) / sizes
    i, j = torch.triu_indices(mu.shape[1], mu.shape[1], 1, device=mu.device)
    return float(((V[i] + V[j]) / (2 * (mu[:, i] - mu[:, j]).pow(2).sum(dim=0))).mean())


def equinorm(H, labels) -> float:
    """NC2 equinorm (Papyan et al. 2020): std_c ||m_c|| / mean_c ||m_c|| (population std).

    H (d, N), labels (N,); 0 when the centred class means have equal norms. Chapters 1 and 9.
    """
    norms = torch.linalg.vector_norm(_class_geometry(H, labels)[4], dim=0)
    return float(norms.std(correction=0) / norms.mean())


def equiangularity(H, labels) -> float:
    """NC2 equiangularity (Papyan et al. 2020): population std of cos(m_c, m_c') over c < c'.

    H (d, N), labels (N,); 0 when all pairs of centred class means meet at one angle (for K = 2
    always); nan when a centred mean is zero. Chapters 1 and 9.
    """
    return float(_pair_cosines(_class_geometry(H, labels)[4]).std(correction=0))


def max_angle_gap(H, labels) -> float:
    """NC2 maximal-angle gap (Papyan et al. 2020): mean over c < c' of |cos(m_c, m_c') + 1/(K-1)|.

    H (d, N), labels (N,); 0 exactly when the centred means are maximally and equally separated,
    cos = -1/(K-1), as in a simplex ETF. Chapters 1 and 9.
    """
    m = _class_geometry(H, labels)[4]
    return float((_pair_cosines(m) + 1 / (m.shape[1] - 1)).abs().mean())


def self_duality(W, H, labels) -> float:
    """NC3 self-duality (Papyan et al. 2020): ||W^T / ||W||_F - M / ||M||_F||_F^2.

    W (K, d) the classifier, H (d, N) its input features, labels (N,), M = [m_1 ... m_K] (d, K).
    0 when the classifier's rows are proportional to the centred class means, 4 at most (W^T
    proportional to -M). Chapters 1 and 9.
    """
    *_, m = _class_geometry(H, labels)
    W = check_features(W, "W").to(m.device)
    require(W.shape == m.T.shape, "W.shape", tuple(W.shape), f"must be (K, d) = {tuple(m.T.shape)}")
    Wt = W.T / torch.linalg.matrix_norm(W)
    return float((Wt - m / torch.linalg.matrix_norm(m)).pow(2).sum())


def ncc_mismatch(H, labels, Z) -> float:
    """NC4 (Papyan et al. 2020): the fraction of samples whose nearest class centre
    argmin_c ||h_i - mu_c|| differs from argmax_k Z[k, i] (ties: the lowest index).

    H (d, N), labels (N,), Z (K, N) the logits of the same samples. 0 when the classifier acts
    as the nearest-class-centre rule on the training features. Chapters 1 and 9.
    """
    H, _, _, mu, _ = _class_geometry(H, labels)
    Z = check_features(Z, "Z").to(H.device)
    shape = (mu.shape[1], H.shape[1])
    require(tuple(Z.shape) == shape, "Z.shape", tuple(Z.shape), f"must be (K, N) = {shape}")
    dist = torch.cdist(H.T, mu.T, compute_mode="donot_use_mm_for_euclid_dist")
    return float((dist.argmin(dim=1) != Z.argmax(dim=0)).double().mean())


def field_metrics(H, labels, W=None, Z=None) -> dict:
    """Every field metric that applies: papyan_nc1, cdnv, equinorm, equiangularity,
    max_angle_gap, and self_duality with the classifier W (K, d), ncc_mismatch with the logits
    Z (K, N). H (d, N), labels (N,). Returns {metric name: float}; chapters 1 and 9.
    """
    metrics = (papyan_nc1, cdnv, equinorm, equiangularity, max_angle_gap)
    out = {metric.__name__: metric(H, labels) for metric in metrics}
    if W is not None:
        out["self_duality"] = self_duality(W, H, labels)
    if Z is not None:
        out["ncc_mismatch"] = ncc_mismatch(H, labels, Z)
    return out
