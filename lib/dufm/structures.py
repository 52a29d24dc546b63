"""The logit structures of the paper and the Lemma-1 factorisation.

- ``dnc_logits``: deep neural collapse, Z = alpha S kron 1_n^T (Definition 2).
- ``pair_logits``: the pair structure of Eq. (5) that beats DNC in Theorem 1.
- ``logits``: either of them by name (``STRUCTURES``).
- ``mixture_components``: a restricted simplex on some classes and pairs on the rest (Figure 5).
- ``factorize``: deep-UFM parameters with the Lemma-1 structure whose product is a given Z.
"""

from __future__ import annotations

import torch

from .losses import exact_singular_values
from .validation import check_int, check_logits, check_nonnegative, check_sizes

DTYPE = torch.float64
STRUCTURES = ("dnc", "pair")  # the two structures of Theorem 1, one vocabulary for the book


def simplex_matrix(K: int, dtype: torch.dtype = DTYPE, device=None) -> torch.Tensor:
    """S = I_K - (1/K) 1 1^T, the simplex ETF Gram matrix (rank K-1) of Definition 2."""
    check_sizes(K=K)
    eye = torch.eye(K, dtype=dtype, device=device)
    return eye - torch.full((K, K), 1.0 / K, dtype=dtype, device=device)


def expand_classes(M: torch.Tensor, n: int) -> torch.Tensor:
    """M kron 1_n^T: repeat each of M's columns n times (class-ordered samples). M: (rows, K)."""
    check_int("n", n, 1)
    return M.repeat_interleave(n, dim=-1)


def pair_matrix(K: int, dtype: torch.dtype = DTYPE, device=None) -> torch.Tensor:
    """The K x K class-mean matrix of the pair structure, Eq. (5).

    Blocks [[1, -1], [-1, 1]] pair classes (1,2), (3,4), ...; for odd K the last class gets a
    single 1 on the diagonal. Rank ceil(K/2).
    """
    check_sizes(K=K)
    B = torch.zeros(K, K, dtype=dtype, device=device)
    for i in range(0, K - 1, 2):
        B[i : i + 2, i : i + 2] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=dtype)
    if K % 2 == 1:
        B[K - 1, K - 1] = 1.0
    return B


def mixture_components(
    K: int, simplex_classes, pairs, dtype: torch.dtype = DTYPE, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two K x K class-mean components of a mixture (Figure 5's intermediate ranks).

    T_S is the restricted simplex I_m - (1/m) 1 1^T on the m ``simplex_classes`` (zero
    elsewhere); T_P has a block [[1, -1], [-1, 1]] on each of the ``pairs`` (as in Eq. 5). A
    mixture is a T_S + b T_P: DNC is the case without pairs, the pair structure (even K) the
    case without simplex classes. The classes must be distinct and cover 0..K-1.
    """
    check_sizes(K=K)
    simplex_classes = [int(c) for c in simplex_classes]
    pairs = [(int(c), int(e)) for c, e in pairs]
    used = simplex_classes + [c for pair in pairs for c in pair]
    if sorted(used) != list(range(K)):
        raise ValueError(
            f"simplex_classes={simplex_classes} and pairs={pairs} are not allowed: together they "
            f"must name every class 0..{K - 1} exactly once"
        )
    T_S = torch.zeros(K, K, dtype=dtype, device=device)
    m = len(simplex_classes)
    if m:
        idx = torch.tensor(simplex_classes, device=device)
        T_S[idx.unsqueeze(1), idx] = simplex_matrix(m, dtype, device) if m > 1 else 0.0
    T_P = torch.zeros(K, K, dtype=dtype, device=device)
    for c, e in pairs:
        T_P[c, c] = T_P[e, e] = 1.0
        T_P[c, e] = T_P[e, c] = -1.0
    return T_S, T_P


def dnc_logits(K: int, n: int, scale: float) -> torch.Tensor:
    """Z_DNC = scale * S kron 1_n^T, K x Kn float64 (Definition 2; margin `scale` everywhere)."""
    check_sizes(K=K, n=n)
    check_nonnegative("scale", scale)
    return expand_classes(scale * simplex_matrix(K), n)


def pair_logits(K: int, n: int, scale: float) -> torch.Tensor:
    """Z_LR = scale * B kron 1_n^T, K x Kn float64, the pair structure of Eq. (5), any K >= 2.

    Margin 2*scale over the partner class and scale over the others; for odd K the unpaired
    last class has margin `scale` over every class.
    """
    check_sizes(K=K, n=n)
    check_nonnegative("scale", scale)
    return expand_classes(scale * pair_matrix(K), n)


def check_structure(structure: object) -> str:
    """``structure`` itself if it is one of ``STRUCTURES``, else a ValueError naming it."""
    if structure not in STRUCTURES:
        raise ValueError(f"structure={structure!r} is not allowed: must be one of {STRUCTURES}")
    return structure


def logits(structure: str, K: int, n: int, scale: float) -> torch.Tensor:
    """The logit matrix (K x Kn float64) of a structure named in ``STRUCTURES`` at a scale."""
    check_structure(structure)
    return (dnc_logits if structure == "dnc" else pair_logits)(K, n, scale)


def random_orthogonal(
    d: int, generator: torch.Generator, dtype: torch.dtype = DTYPE
) -> torch.Tensor:
    """A Haar-random d x d orthogonal matrix (QR of a Gaussian with the sign convention fixed)."""
    G = torch.randn(d, d, generator=generator, dtype=dtype)
    Q, R = torch.linalg.qr(G)
    return Q * torch.sign(torch.diagonal(R)).unsqueeze(0)


def factorize(Z: torch.Tensor, L: int, d: int, seed: int = 0) -> list:
    """Deep-UFM parameters [H_1, W_1, ..., W_L] with the Lemma-1 structure and product Z.

    With Z = U diag(s) V^T, every factor gets singular values s^{1/(L+1)} and the chain is
    H_1 = U_0 Sbar V^T, W_l = U_l Sigma U_{l-1}^T, W_L = U Sigma U_{L-1}^T with random
    orthogonal U_0..U_{L-1} (d x d, from ``seed``). The result is balanced
    (W_{l+1}^T W_{l+1} = W_l W_l^T) and attains the Schatten bound, so its regulariser is
    the reduced loss's. Singular values at rounding level are set to zero before the root is
    taken (``dufm.losses.exact_singular_values``).

    Shapes: Z (K, Kn); H_1 (d, Kn); W_l (d, d) for l < L; W_L (K, d). All float64.
    """
    K, n = check_logits(Z)
    check_sizes(K=K, n=n, d=d, L=L)
    U, s, Vh = torch.linalg.svd(Z.to(DTYPE), full_matrices=False)  # U (K,K), s (K,), Vh (K,Kn)
    s = torch.where(exact_singular_values(Z.to(DTYPE)) > 0, s, torch.zeros_like(s))
    root = s.pow(1.0 / (L + 1))
    gen = torch.Generator().manual_seed(int(seed))
    bases = [random_orthogonal(d, gen)[:, :K] for _ in range(L)]  # U_0 .. U_{L-1}, d x K
    params = [bases[0] @ torch.diag(root) @ Vh]
    for layer in range(1, L):
        params.append(bases[layer] @ torch.diag(root) @ bases[layer - 1].T)
    params.append(U @ torch.diag(root) @ bases[L - 1].T)
    return params
