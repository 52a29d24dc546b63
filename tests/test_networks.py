"""Chapter 9's networks: backbones, head, regularisers, training and the head's DNC bound."""

import math

import pytest
import torch
from scipy.optimize import minimize_scalar

from dufm.backbones import BatchedMLP, BatchedResNet, count_parameters, make_backbone
from dufm.losses import mean_cross_entropy, one_hot_labels
from dufm.networks import (
    effective_weight_decay,
    head_dnc_bound,
    head_forward,
    init_head,
    standard_regulariser,
    train_network,
    ufm_regulariser,
)
from dufm.structures import simplex_matrix
from dufm.theory import optimal_scale, structure_fit


@pytest.mark.parametrize(("channels", "size", "expected"), [(3, 32, 269_072), (1, 28, 268_784)])
def test_resnet20_has_the_cifar_parameter_count_and_pools_to_d_features(channels, size, expected):
    net = make_backbone("resnet20", 1, (channels, size, size), 64, seeds=[0])
    # 3-channel ResNet-20 with option-A shortcuts: 0.27 M parameters, 269,722 with a 10-way
    # classifier (64*10 + 10 = 650), which the head replaces
    assert count_parameters(net) == expected
    out = net(torch.randn(2, channels, size, size))
    assert out.shape == (1, 2, 64)
    assert bool((out >= 0).all()), "pooled ReLU features are nonnegative"


def test_resnet8_and_the_mlp_take_any_image_size():
    x = torch.randn(4, 1, 8, 8)
    assert make_backbone("resnet8", 2, (1, 8, 8), 16, seeds=[0, 1])(x).shape == (2, 4, 16)
    assert make_backbone("mlp", 3, (1, 8, 8), 16, seeds=[0, 1, 2], mlp_hidden=[7])(x).shape == (
        3,
        4,
        16,
    )


@pytest.mark.parametrize("name", ["resnet8", "mlp"])
def test_a_batch_of_runs_computes_the_same_networks_as_single_runs(name):
    torch.manual_seed(0)
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    both = make_backbone(name, 2, (2, 8, 8), 8, seeds=[3, 4]).double()
    out = both(x)
    for r, seed in enumerate([3, 4]):
        alone = make_backbone(name, 1, (2, 8, 8), 8, seeds=[seed]).double()
        torch.testing.assert_close(out[r], alone(x)[0], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out[0], out[1])


def test_backbones_reject_bad_arguments():
    with pytest.raises(ValueError, match="backbone='vgg' is not allowed"):
        make_backbone("vgg", 1, (1, 8, 8), 8, seeds=[0])
    with pytest.raises(ValueError, match="d=10 is not allowed"):
        BatchedResNet(1, 1, 10, 3, seeds=[0])
    with pytest.raises(ValueError, match="seeds=.* is not allowed"):
        BatchedMLP(2, 64, 8, [4], seeds=[0])


def _manual_head_gradients(H1, weights, activation, lam_W, lam_H):
    """Backpropagation written out: G_Z = (P - Y)/N, dW_l = G_{l+1} a_l^T + lam_W W_l,
    G_l = (W_l^T G_{l+1}) * act'(H_l), dH_1 = W_1^T G_2 + lam_H H_1."""
    feats = [H1]
    acts = [H1]
    for layer, W in enumerate(weights, start=1):
        a = torch.relu(feats[-1]) if activation == "relu" and layer >= 2 else feats[-1]
        acts[-1] = a
        feats.append(W @ a)
        acts.append(None)
    Z = feats[-1]
    K, N = Z.shape[-2:]
    G = (torch.softmax(Z, dim=-2) - one_hot_labels(K, N // K)) / N
    grads = [None] * len(weights)
    for layer in range(len(weights), 0, -1):
        W = weights[layer - 1]
        grads[layer - 1] = G @ acts[layer - 1].transpose(-2, -1) + lam_W * W
        G = W.transpose(-2, -1) @ G
        if activation == "relu" and layer >= 2:
            G = G * (feats[layer - 1] > 0)
    return Z, grads, G + lam_H * H1


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_head_forward_and_gradients_match_backpropagation_written_out(activation):
    K, n, d, L, R = 4, 3, 6, 3, 2
    gen = torch.Generator().manual_seed(1)
    H1 = torch.randn(R, d, K * n, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = [W.requires_grad_(True) for W in init_head(K, d, L, [1.5, 0.7], seeds=[0, 1])]
    lam_W, lam_H = 0.03, 0.002
    feats = head_forward(H1, weights, activation)
    loss = mean_cross_entropy(feats[-1]) + ufm_regulariser(H1, weights, lam_W, lam_H)
    auto = torch.autograd.grad(loss.sum(), [*weights, H1])
    with torch.no_grad():
        Z, grads, dH1 = _manual_head_gradients(H1, weights, activation, lam_W, lam_H)
    torch.testing.assert_close(feats[-1], Z, rtol=1e-12, atol=1e-12)
    for got, want in zip(auto, [*grads, dH1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert [F.shape for F in feats] == [(R, d, K * n)] * L + [(R, K, K * n)]


def test_init_head_scales_the_weights_and_depends_on_the_seed_only():
    a = init_head(10, 64, 3, [0.5, 2.0], seeds=[0, 0])
    for W in a:
        ratio = W[1].std() / W[0].std()
        assert abs(float(ratio) - 4.0) < 1e-9  # same draws, four times the scale
    assert abs(float(a[0][1].std()) - 2.0 / 8.0) < 0.05  # N(0, s^2/d), d = 64
    b = init_head(10, 64, 3, [0.5], seeds=[1])
    assert not torch.allclose(a[0][0], b[0][0])
    with pytest.raises(ValueError, match=r"init_scales\[0\]=0.0 is not allowed"):
        init_head(10, 64, 3, [0.0], seeds=[0])


def test_ufm_regulariser_weights_features_and_head_separately():
    gen = torch.Generator().manual_seed(0)
    H1 = torch.randn(2, 5, 8, generator=gen, dtype=torch.float64)
    Ws = [torch.randn(2, 5, 5, generator=gen, dtype=torch.float64) for _ in range(2)]
    got = ufm_regulariser(H1, Ws, lam_W=0.1, lam_H=0.01, scale=4.0)
    for r in range(2):
        want = 0.5 * 0.01 * 4.0 * float((H1[r] ** 2).sum()) + 0.5 * 0.1 * sum(
            float((W[r] ** 2).sum()) for W in Ws
        )
        assert abs(float(got[r]) - want) < 1e-12


def test_standard_regulariser_is_the_squared_norm_of_every_parameter_of_each_run():
    both = make_backbone("resnet8", 2, (1, 8, 8), 8, seeds=[0, 1]).double()
    head = init_head(3, 8, 2, [1.0, 1.0], seeds=[0, 1])
    with torch.no_grad():
        for p in both.parameters():  # batch-norm weights start at 1, biases at 0: make them vary
            p.add_(0.1 * torch.randn(p.shape, dtype=p.dtype))
    with torch.no_grad():
        got = standard_regulariser([*both.parameters(), *head], 2, lam=0.2)
    for r in range(2):
        norms = sum(float((chunk[r] ** 2).sum()) for chunk in _run_slices(both, 2))
        norms += sum(float((W[r] ** 2).sum()) for W in head)
        assert abs(float(got[r]) - 0.1 * norms) < 1e-9 * norms


def _run_slices(module, runs):
    """Each parameter split into its runs' slices (R, ...)."""
    return [p.detach().reshape(runs, -1) for p in module.parameters()]


def test_batch_norm_parameters_are_counted_by_the_standard_regulariser():
    net = make_backbone("resnet8", 1, (1, 8, 8), 8, seeds=[0])
    names = [name for name, _ in net.named_parameters()]
    assert any("bn" in name for name in names)
    total = sum(p.numel() for p in net.parameters())
    assert total == count_parameters(net)


# ----------------------------------------------------------------------------------------------
# The DNC bound of the head with unequal weight decays
# ----------------------------------------------------------------------------------------------


def test_effective_weight_decay_is_lam_for_equal_decays():
    assert effective_weight_decay(0.01, 0.01, 3) == pytest.approx(0.01, rel=1e-15)
    assert head_dnc_bound(10, 5, 2, 2**-10, 2**-10) == optimal_scale("dnc", 10, 5, 2, 2**-10)


@pytest.mark.parametrize(
    ("L", "lam_W", "lam_H"), [(1, 0.1, 0.001), (3, 5e-3, 1e-6), (4, 1e-3, 0.2)]
)
def test_best_split_of_a_balanced_factorisation_costs_the_effective_decay(L, lam_W, lam_H):
    # Balanced factors all carry s_i^{1/(L+1)}; scaling H_1 by a and every W_l by a^{-1/L} keeps Z.
    # The cost (lam_H/2) a^2 S + (lam_W/2) L a^{-2/L} S, minimised numerically over a, must be
    # (lam_eff/2)(L+1) S.
    S = 3.7  # sum_i s_i(Z)^{2/(L+1)}

    def cost(log_a):
        a = math.exp(log_a)
        return 0.5 * lam_H * a**2 * S + 0.5 * lam_W * L * a ** (-2 / L) * S

    best = minimize_scalar(cost, bounds=(-40, 40), method="bounded", options={"xatol": 1e-12})
    want = 0.5 * effective_weight_decay(lam_W, lam_H, L) * (L + 1) * S
    assert best.fun == pytest.approx(want, rel=1e-9)


def test_gradient_descent_from_a_dnc_point_converges_to_the_head_dnc_bound():
    # The deep UFM with free features and unequal decays, started at a DNC point of the wrong
    # scale and balance. By symmetry gradient descent keeps the logits DNC; its limit is the best
    # DNC point, whose loss the bound must equal.
    K, n, L, d = 4, 2, 2, 4
    lam_W, lam_H = 0.05, 0.004
    gen = torch.Generator().manual_seed(0)
    Q = [
        torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))[0] for _ in range(L)
    ]
    S = simplex_matrix(K)  # K x K, rank K - 1
    E = torch.zeros(d, K, dtype=torch.float64)
    E[:K, :K] = S
    H1 = (3.0 * Q[0] @ E).repeat_interleave(n, dim=1).requires_grad_(True)  # d x Kn
    W1 = (0.5 * Q[1] @ Q[0].T).requires_grad_(True)
    W2 = (0.5 * E.T @ Q[1].T).requires_grad_(True)
    for _ in range(6000):
        feats = head_forward(H1, [W1, W2])
        loss = mean_cross_entropy(feats[-1]) + ufm_regulariser(H1, [W1, W2], lam_W, lam_H)
        grads = torch.autograd.grad(loss, [H1, W1, W2])
        with torch.no_grad():
            for p, g in zip([H1, W1, W2], grads, strict=True):
                p.sub_(g, alpha=1.0)
    Z = feats[-1].detach()
    M = Z.reshape(K, K, n).mean(-1)
    alpha, bound = head_dnc_bound(K, n, L, lam_W, lam_H)
    assert torch.allclose(M, M[0, 0] * S / S[0, 0], atol=1e-9), "the logits left the DNC structure"
    assert float(loss.detach()) == pytest.approx(bound, rel=1e-8)
    assert float(M[0, 0] - M[1, 0]) == pytest.approx(alpha, rel=1e-5)  # the margin is alpha
    assert structure_fit("dnc", K, alpha) < float(loss.detach())


def test_the_equal_decay_formula_would_miss_the_trained_dnc_loss():
    # With lam_H << lam_W, using lam_W (or lam_H) for every matrix gives a different bound.
    K, n, L = 10, 174, 3
    bound = head_dnc_bound(K, n, L, 5e-3, 1e-6)[1]
    assert optimal_scale("dnc", K, n, L, 5e-3)[1] > 1.5 * bound
    assert optimal_scale("dnc", K, n, L, 1e-6)[1] < 0.5 * bound


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _toy_data(K=3, n=4, size=8):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(K * n, 1, size, size, generator=gen, dtype=torch.float64)
    X += torch.arange(K).repeat_interleave(n).view(-1, 1, 1, 1).double()
    return X, torch.arange(K).repeat_interleave(n)


@pytest.mark.parametrize("regime", ["ufm", "standard"])
def test_training_is_deterministic_for_a_seed_and_lowers_the_loss(regime):
    X, y = _toy_data()
    kw = dict(backbone="mlp", mlp_hidden=[16], d=8, L=2, regime=regime, lr=0.1, steps=30)
    a = train_network(X, y, 3, seeds=[0, 1], init_scales=[1.0, 0.5], progress=False, **kw)
    b = train_network(X, y, 3, seeds=[0, 1], init_scales=[1.0, 0.5], progress=False, **kw)
    assert torch.equal(a.losses, b.losses)
    assert torch.equal(a.features[-1], b.features[-1])
    assert bool((a.losses[:, -1] < a.losses[:, 0]).all())
    assert a.losses.shape == (2, len(a.record_steps))


def test_each_run_of_a_batch_trains_as_if_alone():
    X, y = _toy_data()
    kw = dict(backbone="resnet8", d=8, L=2, lr=0.05, steps=5, progress=False)
    both = train_network(X, y, 3, seeds=[0, 1], init_scales=[1.0, 0.5], **kw)
    alone = train_network(X, y, 3, seeds=[1], init_scales=[0.5], **kw)
    torch.testing.assert_close(both.losses[1], alone.losses[0], rtol=1e-10, atol=1e-12)


def test_recorded_loss_is_fit_plus_the_regime_regulariser():
    X, y = _toy_data()
    res = train_network(
        X, y, 3, backbone="mlp", mlp_hidden=[16], d=8, L=2, lam_W=0.01, lam_H=0.001, steps=3,
        progress=False,
    )  # fmt: skip
    H1, *_ = res.features
    reg = ufm_regulariser(H1, res.weights, 0.01, 0.001)
    assert float(res.losses[0, -1]) == pytest.approx(float(res.fits[0, -1] + reg[0]), rel=1e-12)


def test_large_batches_use_every_class_equally():
    X, y = _toy_data(K=3, n=4)
    res = train_network(
        X, y, 3, backbone="mlp", mlp_hidden=[8], d=8, L=2, batch_size=6, steps=4, progress=False
    )
    assert torch.isfinite(res.losses).all()
    with pytest.raises(ValueError, match="batch_size=4 is not allowed"):
        train_network(X, y, 3, backbone="mlp", d=8, batch_size=4, steps=1, progress=False)


def test_training_rejects_bad_arguments_and_unordered_labels():
    X, y = _toy_data()
    with pytest.raises(ValueError, match="regime='l2' is not allowed"):
        train_network(X, y, 3, regime="l2", d=8, progress=False)
    with pytest.raises(ValueError, match="labels="):
        train_network(X, y.flip(0), 3, d=8, progress=False)
    with pytest.raises(ValueError, match="lr=-1 is not allowed"):
        train_network(X, y, 3, d=8, lr=-1, progress=False)


def test_a_diverging_run_is_named():
    X, y = _toy_data()
    from dufm.trainer import DivergenceError

    with pytest.raises(
        DivergenceError, match=r"run 0 \(seed 0, init scale 5.0\).*smaller learning"
    ):
        train_network(
            X, y, 3, backbone="mlp", d=8, L=3, lr=1e12, steps=50, seeds=[0],
            init_scales=[5.0], record_every=1, progress=False,
        )  # fmt: skip


def test_warm_up_scales_the_first_steps_of_the_learning_rate():
    X, y = _toy_data()
    kw = dict(backbone="mlp", mlp_hidden=[8], d=8, L=2, steps=1, record_every=1, progress=False)
    warm = train_network(X, y, 3, lr=0.4, warmup_steps=4, **kw)
    slow = train_network(X, y, 3, lr=0.1, **kw)
    torch.testing.assert_close(warm.losses, slow.losses, rtol=1e-12, atol=0)
    fast = train_network(X, y, 3, lr=0.4, **kw)
    assert not torch.equal(warm.losses, fast.losses)


def test_snapshots_measure_the_network_after_that_many_steps():
    X, y = _toy_data()
    kw = dict(backbone="mlp", mlp_hidden=[8], d=8, L=2, lr=0.1, record_every=1, progress=False)
    seen = []

    def measure(features, weights):
        seen.append((features[-1].clone(), weights[-1].clone()))
        return len(seen)

    res = train_network(X, y, 3, steps=4, snapshot_steps=[4, 0, 2, 2], measure=measure, **kw)
    assert res.snapshot_steps == [0, 2, 4] and res.snapshots == [1, 2, 3]
    two = train_network(X, y, 3, steps=2, **kw)  # the same network, trained for two steps only
    torch.testing.assert_close(seen[1][0], two.features[-1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(seen[1][1], two.weights[-1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(seen[2][0], res.features[-1], rtol=0, atol=0)
    assert not torch.allclose(seen[0][0], seen[2][0])
    plain = train_network(X, y, 3, steps=4, **kw)
    torch.testing.assert_close(plain.losses, res.losses, rtol=0, atol=0)  # measuring is passive
    with pytest.raises(ValueError, match="snapshot_steps=5 is not allowed"):
        train_network(X, y, 3, steps=4, snapshot_steps=[5], measure=measure, **kw)
    with pytest.raises(ValueError, match="measure=None is not allowed"):
        train_network(X, y, 3, steps=4, snapshot_steps=[1], **kw)
    with pytest.raises(ValueError, match=r"snapshot_steps\[0\]=1.5 is not allowed"):
        train_network(X, y, 3, steps=4, snapshot_steps=[1.5], measure=measure, **kw)


def test_the_training_bar_is_the_books_progress_bar(monkeypatch, capfd):
    X = torch.randn(6, 1, 4, 4, dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(2)
    monkeypatch.setenv("DUFM_PROGRESS", "0")  # what a book build sets: no bar
    train_network(X, y, 3, mlp_hidden=[4], d=4, L=2, steps=3, progress=True)
    assert "train" not in capfd.readouterr().err
    monkeypatch.setenv("DUFM_PROGRESS", "1")
    train_network(X, y, 3, mlp_hidden=[4], d=4, L=2, steps=3, progress=True)
    assert "train" in capfd.readouterr().err
