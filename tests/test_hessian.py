"""The exact Hessian of the deep-UFM loss (Theorems 4 and 6)."""

import pytest
import torch

from dufm import theory
from dufm.hessian import flatness, loss_hessian
from dufm.losses import one_hot_labels
from dufm.structures import dnc_logits, factorize
from dufm.trainer import loss_and_grads

GEN = torch.Generator().manual_seed(0)
K, n, L, d, lam = 3, 2, 2, 4, 0.05


def random_params():
    shapes = [(d, K * n)] + [(d, d)] * (L - 1) + [(K, d)]
    return [0.7 * torch.randn(*s, generator=GEN, dtype=torch.float64) for s in shapes]


def flat_gradient(params):
    targets = one_hot_labels(K, n, torch.float64)
    lam_t = torch.full((1, 1, 1), lam, dtype=torch.float64)
    _, grads = loss_and_grads([P.unsqueeze(0) for P in params], targets, lam_t, "linear")
    return torch.cat([g[0].flatten() for g in grads])


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_hessian_is_symmetric(activation):
    H = loss_hessian(random_params(), lam, activation)
    assert torch.allclose(H, H.T, atol=1e-12)


def test_hessian_columns_are_finite_differences_of_the_analytic_gradient():
    params = random_params()
    H = loss_hessian(params, lam)
    sizes = [P.numel() for P in params]
    flat = torch.cat([P.flatten() for P in params])
    h = 1e-6
    for j in torch.randperm(flat.numel(), generator=GEN)[:12].tolist():
        shifted = []
        for sign in (1, -1):
            x = flat.clone()
            x[j] += sign * h
            parts = zip(torch.split(x, sizes), params, strict=True)
            shifted.append(flat_gradient([c.view(P.shape) for c, P in parts]))
        numeric = (shifted[0] - shifted[1]) / (2 * h)
        assert torch.allclose(H[:, j], numeric, atol=1e-7), j


def test_rotating_a_hidden_layer_of_a_critical_point_is_a_flat_direction():
    alpha, _ = theory.optimal_scale("dnc", K, n, L, lam)
    params = factorize(dnc_logits(K, n, alpha), L, d, seed=1)
    A = torch.randn(d, d, generator=GEN, dtype=torch.float64)
    A = A - A.T  # W_1 -> e^{tA} W_1, W_2 -> W_2 e^{-tA} leaves the loss unchanged
    H1, W1, W2 = params
    tangent = torch.cat([torch.zeros_like(H1).flatten(), (A @ W1).flatten(), (-W2 @ A).flatten()])
    H = loss_hessian(params, lam)
    assert float(tangent @ H @ tangent) == pytest.approx(0.0, abs=1e-12 * float(tangent @ tangent))
    assert float(torch.linalg.eigvalsh(H)[-1]) > 1e-3  # not a trivially flat Hessian


def test_flatness_norms_of_a_known_spectrum():
    H = torch.diag(torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64))
    assert flatness(H) == pytest.approx({"frobenius": 5.0, "spectral": 4.0, "trace": 7.0})


def test_bad_arguments_raise_a_value_error_naming_them():
    with pytest.raises(ValueError, match="lam=0.0"):
        loss_hessian(random_params(), 0.0)
    with pytest.raises(ValueError, match="activation='tanh'"):
        loss_hessian(random_params(), lam, "tanh")
