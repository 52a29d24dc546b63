"""Dimensions of the sets of critical parameters with a given output (Theorem 5)."""

import torch

from dufm import theory
from dufm.landscape import flat_output_dimension, orbit_dimension, output_jacobian
from dufm.losses import forward
from dufm.structures import dnc_logits, factorize

GEN = torch.Generator().manual_seed(0)


def test_the_zero_point_has_a_zero_dimensional_orbit():
    params = [torch.zeros(5, 6, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)]
    assert orbit_dimension(params) == 0


def test_one_layer_orbit_is_the_set_of_orthonormal_r_frames():
    # L = 1: O(d) acts on H_1 (rank r) and W_1 = H_1-aligned; the orbit is the Stiefel manifold
    # of r-frames in R^d, of dimension r d - r (r + 1) / 2 (a textbook count)
    d, r = 6, 2
    U = torch.linalg.qr(torch.randn(d, r, generator=GEN, dtype=torch.float64)).Q
    H = U @ torch.randn(r, 8, generator=GEN, dtype=torch.float64)
    W = torch.randn(4, r, generator=GEN, dtype=torch.float64) @ U.T
    assert orbit_dimension([H, W]) == r * d - r * (r + 1) // 2


def test_output_jacobian_matches_a_finite_difference():
    params = [
        torch.randn(4, 6, generator=GEN, dtype=torch.float64),
        torch.randn(4, 4, generator=GEN, dtype=torch.float64),
        torch.randn(3, 4, generator=GEN, dtype=torch.float64),
    ]
    J = output_jacobian(params)
    step = 1e-6
    bumped = [P.clone() for P in params]
    bumped[1][2, 3] += step
    numeric = (forward(bumped)[-1] - forward(params)[-1]).flatten() / step
    assert torch.allclose(J[:, 24 + 2 * 4 + 3], numeric, atol=1e-5)


def test_both_measures_agree_at_a_dnc_critical_point():
    K, n, L, d, lam = 4, 2, 2, 6, 2**-8
    alpha = theory.critical_scales("dnc", K, n, L, lam)[-1]
    params = factorize(dnc_logits(K, n, alpha), L, d, seed=3)
    assert orbit_dimension(params) == flat_output_dimension(params, lam)
