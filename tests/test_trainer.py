"""Batched full-batch gradient descent (the engine behind Figures 1, 2, 5 and 6)."""

import pytest
import torch

from dufm.losses import class_labels, full_loss, loss_and_grads
from dufm.trainer import DivergenceError, init_params, make_runs, train

K, n = 4, 3


def one_hot(K, n):
    return torch.nn.functional.one_hot(class_labels(K, n), K).T.double()


def batched_loss(params, lam, activation):
    return torch.stack(
        [full_loss_torch([P[i] for P in params], lam[i], activation) for i in range(len(lam))]
    )


def full_loss_torch(params, lam, activation):
    """The deep-UFM loss written independently with autograd-friendly torch ops."""
    Z = params[0]
    for layer, W in enumerate(params[1:], start=1):
        Z = W @ (torch.relu(Z) if activation == "relu" and layer >= 2 else Z)
    labels = class_labels(K, n)
    fit = torch.nn.functional.cross_entropy(Z.T, labels)
    return fit + 0.5 * lam * sum(P.pow(2).sum() for P in params)


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_analytic_gradients_equal_autograd(activation, L):
    runs = make_runs(
        [0, 1, 2], d=[4, 6, 5], init_scale=[0.7, 1.0, 1.3], lam=[0.1, 0.01, 0.05], lr=0.1
    )
    params = [P.requires_grad_(True) for P in init_params(K, n, L, runs)]
    lam = torch.tensor([r.lam for r in runs], dtype=torch.float64)
    loss, grads = loss_and_grads(params, one_hot(K, n), lam.view(-1, 1, 1), activation)
    reference = batched_loss(params, lam, activation)
    auto = torch.autograd.grad(reference.sum(), params)
    assert torch.allclose(loss, reference.detach(), rtol=1e-13)
    for g, a in zip(grads, auto, strict=True):
        assert torch.allclose(g, a, atol=1e-13)


def test_autograd_gradient_matches_central_finite_differences():
    runs = make_runs([3], d=5, init_scale=1.0, lam=0.05, lr=0.1)
    params = [P[0].clone() for P in init_params(K, n, 2, runs)]
    grads = loss_and_grads(
        [P.unsqueeze(0) for P in params], one_hot(K, n), torch.full((1, 1, 1), 0.05), "linear"
    )[1]
    h = 1e-6
    for j, P in enumerate(params):
        for idx in [(0, 0), (1, 2), (P.shape[0] - 1, P.shape[1] - 1)]:
            plus = [Q.clone() for Q in params]
            minus = [Q.clone() for Q in params]
            plus[j][idx] += h
            minus[j][idx] -= h
            numeric = (full_loss(plus, 0.05) - full_loss(minus, 0.05)) / (2 * h)
            assert float(grads[j][0][idx]) == pytest.approx(numeric, abs=1e-8)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_run_inside_a_padded_batch_equals_the_same_run_alone(activation):
    kwargs = dict(steps=300, lr=0.2, record_every=50, progress=False, activation=activation)
    batch = train(K, n, 2, [5, 9, 7], [0.05, 0.01, 0.02], seeds=[11, 12, 13], **kwargs)
    for i, (d, lam, seed) in enumerate([(5, 0.05, 11), (9, 0.01, 12), (7, 0.02, 13)]):
        alone = train(K, n, 2, d, lam, seeds=[seed], **kwargs)
        for P, Q in zip(batch.run_params(i), alone.run_params(0), strict=True):
            assert torch.allclose(P, Q, atol=1e-12, rtol=0)
        assert torch.allclose(batch.losses[i], alone.losses[0], atol=1e-12, rtol=0)


def test_padding_stays_exactly_zero():
    result = train(
        K, n, 3, [4, 8], 0.01, seeds=[0, 1], init_scale=0.5, lr=0.1, steps=200, progress=False
    )
    H1, W1, W2, W3 = result.params
    assert torch.count_nonzero(H1[0, 4:]) == 0
    assert torch.count_nonzero(W1[0, 4:]) + torch.count_nonzero(W1[0, :, 4:]) == 0
    assert torch.count_nonzero(W3[0, :, 4:]) == 0


def test_same_seed_gives_the_same_result_and_other_seeds_differ():
    a = train(K, n, 2, 6, 0.01, seeds=[5, 6], steps=100, progress=False)
    b = train(K, n, 2, 6, 0.01, seeds=[5, 6], steps=100, progress=False)
    assert torch.equal(a.losses, b.losses)
    assert not torch.equal(a.losses[0], a.losses[1])


def test_recorded_loss_is_the_loss_of_the_returned_parameters():
    result = train(K, n, 2, 6, 0.02, seeds=[0], steps=137, record_every=25, progress=False)
    assert result.record_steps[-1] == 137
    assert float(result.final_loss[0]) == pytest.approx(
        full_loss(result.run_params(0), 0.02), rel=1e-12
    )


def test_gradient_descent_decreases_the_loss():
    result = train(K, n, 2, 6, 0.01, seeds=[0, 1], steps=500, progress=False)
    assert bool((result.losses[:, -1] < result.losses[:, 0]).all())


def test_plateau_tolerance_stops_training_early():
    result = train(
        K, n, 1, 4, 0.1, seeds=[0], steps=50000, record_every=100, tol=1e-9, progress=False
    )
    assert result.converged and result.steps_done < 50000


def test_divergence_names_the_run_and_suggests_a_smaller_learning_rate():
    with pytest.raises(DivergenceError, match=r"run 1 .*smaller learning rate"):
        train(
            K,
            n,
            2,
            6,
            0.01,
            seeds=[0, 1],
            init_scale=[0.1, 30.0],
            lr=[0.1, 50.0],
            steps=200,
            record_every=10,
            progress=False,
        )


def test_float32_runs_and_returns_float32_parameters():
    result = train(K, n, 2, 6, 0.01, seeds=[0], steps=50, dtype="float32", progress=False)
    assert result.params[0].dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(d=3), "d=3"),
        (dict(lam=0.0), "lam=0.0"),
        (dict(lr=-1.0), "lr=-1.0"),
        (dict(init="xavier"), "init='xavier'"),
        (dict(activation="tanh"), "activation='tanh'"),
        (dict(device="tpu"), "device='tpu'"),
        (dict(dtype="float16"), "dtype='float16'"),
        (dict(d=[6, 7]), "d has 2 entries"),
        (dict(steps=-1), "steps=-1"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(kwargs, message):
    args = dict(d=6, lam=0.01, seeds=[0, 1, 2], steps=5, progress=False)
    args.update(kwargs)
    d, lam = args.pop("d"), args.pop("lam")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        train(K, n, 2, d, lam, **args)


# Paper-scale batches (hundreds of runs) train on the CPU in cache-sized blocks shared among
# worker threads. The small batches above fit one block; these tests force one run per block.


@pytest.fixture
def blocked_threaded(monkeypatch):
    import dufm._engine as trainer_mod

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(trainer_mod, "CPU_BLOCK_BYTES", 1)
    yield trainer_mod
    torch.set_num_threads(before)


def test_blocks_on_worker_threads_give_the_numbers_of_one_block(blocked_threaded):
    kwargs = dict(seeds=range(6), steps=300, record_every=50, progress=False)
    blocked = train(K, n, 2, [4, 6, 5, 4, 6, 5], [0.01, 0.03] * 3, **kwargs)
    assert torch.get_num_threads() == 2  # restored after training
    blocked_threaded.CPU_BLOCK_BYTES = 2**40  # everything in one block, no worker threads
    whole = train(K, n, 2, [4, 6, 5, 4, 6, 5], [0.01, 0.03] * 3, **kwargs)
    assert torch.allclose(blocked.losses, whole.losses, atol=1e-12, rtol=0)
    for P, Q in zip(blocked.params, whole.params, strict=True):
        assert torch.allclose(P, Q, atol=1e-12, rtol=0)


BLOCKED_RUNS = dict(seeds=range(4), record_every=10, progress=False)  # 4 blocks of one run


def _patch_step(monkeypatch, engine, kernels: str, wrapper) -> None:
    """Wrap the step of the given path: the torch step function, or the MKL loop's advance."""
    if kernels == "torch":
        monkeypatch.setattr(engine, "_linear_step", wrapper(engine._linear_step))
    else:
        from dufm.kernels import LinearKernels

        monkeypatch.setattr(LinearKernels, "advance", wrapper(LinearKernels.advance))


@pytest.mark.parametrize("kernels", ["torch", "mkl"])
def test_a_failing_worker_stops_training_and_restores_the_thread_count(
    blocked_threaded, monkeypatch, kernels
):
    calls = []

    def failing(step):
        def wrapped(*args):
            calls.append(1)
            if len(calls) == 7:
                raise RuntimeError("simulated failure inside a worker")
            return step(*args)

        return wrapped

    _patch_step(monkeypatch, blocked_threaded, kernels, failing)
    with pytest.raises(RuntimeError, match="simulated failure"):
        train(K, n, 2, 5, 0.01, steps=50, kernels=kernels, **BLOCKED_RUNS)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_compiled_step_gives_the_numbers_of_the_eager_step(activation, monkeypatch):
    import dufm._engine as trainer_mod

    d = 6
    per_run = 2 * (d * K * n + d * d + K * d) * 8  # bytes of one run's parameters, twice
    monkeypatch.setattr(trainer_mod, "CPU_BLOCK_BYTES", 2 * per_run)  # blocks of 2 and 1 runs
    kwargs = dict(seeds=range(3), steps=200, record_every=50, progress=False)
    kwargs.update(activation=activation, init_scale=0.5)
    eager = train(K, n, 2, d, 0.01, **kwargs)
    compiled = train(K, n, 2, d, 0.01, compile=True, **kwargs)
    assert torch.allclose(eager.losses, compiled.losses, atol=1e-12, rtol=0)
    for P, Q in zip(eager.params, compiled.params, strict=True):
        assert torch.allclose(P, Q, atol=1e-12, rtol=0)


def test_a_failing_compiler_warns_and_trains_eagerly(monkeypatch):
    def broken_compile(fn):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    kwargs = dict(seeds=[0], steps=50, progress=False, kernels="torch")  # the eager torch step
    with pytest.warns(UserWarning, match="torch.compile failed .*no compiler here"):
        compiled = train(K, n, 2, 6, 0.01, compile=True, **kwargs)
    assert torch.equal(compiled.losses, train(K, n, 2, 6, 0.01, **kwargs).losses)


# float32 on x86: a softmax entry below 1.2e-38 is subnormal, and products with subnormal
# operands run many times slower; the engine flushes them to zero while it trains.


@pytest.fixture
def no_flushing(monkeypatch):
    """Train with the CPU's flush mode left as it is (the engine before flushing existed)."""
    import contextlib

    import dufm._engine as engine_mod

    def keep_mode(active=True):
        return contextlib.nullcontext()

    def train_unflushed(*args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(engine_mod, "flush_denormals", keep_mode)
            return train(*args, **kwargs)

    return train_unflushed


def test_float32_results_with_flushed_subnormals_stay_within_float32_rounding(no_flushing):
    from dufm._engine import _flushing

    # init_scale 3: logit gaps of about 100 from the start, so float32 softmax entries underflow
    kwargs = dict(seeds=range(4), init_scale=3.0, lr=0.01, steps=300, record_every=50)
    kwargs.update(dtype="float32", progress=False)
    before = _flushing()
    flushed = train(K, n, 2, 6, 0.01, **kwargs)
    assert _flushing() == before  # the thread's mode is restored after training
    plain = no_flushing(K, n, 2, 6, 0.01, **kwargs)
    Z = plain.logits[:4].float()
    P = torch.softmax(Z, dim=-2)
    assert bool(((P > 0) & (P < torch.finfo(torch.float32).tiny)).any()), "no subnormal arose"
    rel = ((flushed.losses - plain.losses).abs() / plain.losses.abs()).max()
    assert float(rel) < 1e-5, f"flushed and unflushed float32 losses differ by {float(rel):.2e}"


def test_flushing_leaves_float64_results_bit_identical(no_flushing):
    kwargs = dict(seeds=range(3), steps=200, record_every=50, progress=False)
    flushed = train(K, n, 2, [4, 6, 5], 0.01, **kwargs)
    plain = no_flushing(K, n, 2, [4, 6, 5], 0.01, **kwargs)
    assert torch.equal(flushed.losses, plain.losses)
    for P, Q in zip(flushed.params, plain.params, strict=True):
        assert torch.equal(P, Q)


def test_a_thread_that_already_flushes_keeps_flushing():
    from dufm._engine import _flushing

    torch.set_flush_denormal(True)
    try:
        train(K, n, 2, 6, 0.01, seeds=[0, 1], steps=20, progress=False)
        assert _flushing()
    finally:
        torch.set_flush_denormal(False)
    train(K, n, 2, 6, 0.01, seeds=[0, 1], steps=20, progress=False)
    assert not _flushing()


@pytest.mark.parametrize("kernels", ["torch", "mkl"])
def test_every_thread_that_steps_a_block_flushes_subnormals(blocked_threaded, monkeypatch, kernels):
    import threading

    from dufm._engine import _flushing

    seen = {}

    def recording(step):
        def wrapped(*args):
            seen[threading.get_ident()] = _flushing()
            return step(*args)

        return wrapped

    _patch_step(monkeypatch, blocked_threaded, kernels, recording)
    train(K, n, 2, 5, 0.01, steps=30, kernels=kernels, **BLOCKED_RUNS)
    assert seen and threading.get_ident() not in seen  # the steps ran on worker threads
    assert all(seen.values()), seen


def test_divergence_names_how_many_and_the_first_runs():
    with pytest.raises(DivergenceError) as info:
        train(
            K,
            n,
            2,
            6,
            0.01,
            seeds=range(6),
            init_scale=[0.1] + [30.0] * 5,
            lr=[0.1] + [50.0] * 5,
            steps=200,
            record_every=10,
            progress=False,
        )
    message = str(info.value)
    assert "5 of 6 run(s) diverged" in message
    assert "run 1 (seed=1" in message and "run 3 (seed=3" in message and "and 2 more" in message
    assert "smaller learning rate lr (largest here: 50)" in message


def test_a_non_finite_start_is_not_blamed_on_the_learning_rate():
    with pytest.raises(DivergenceError, match="starting point") as info:
        train(K, n, 2, 6, 0.01, seeds=[0], init_scale=1e200, steps=10, progress=False)
    assert "learning rate" not in str(info.value)


def test_given_parameters_must_be_finite_and_of_the_batch_shape():
    runs = make_runs([0, 1], d=6, init_scale=1.0, lam=0.01, lr=0.1)
    params = init_params(K, n, 2, runs)
    params[2][1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"params\[2\] is not allowed: 1 of its 48 entries"):
        train(K, n, 2, 6, 0.01, seeds=[0, 1], steps=5, params=params, progress=False)
    params = init_params(K, n, 2, runs)
    with pytest.raises(
        ValueError, match=r"params\[0\].shape=\(2, 6, 12\) is not allowed: must be \(1, 6, 12\)"
    ):
        train(K, n, 2, 6, 0.01, seeds=[0], steps=5, params=params, progress=False)
    with pytest.raises(ValueError, match=r"len\(params\)=2 is not allowed: L=2 needs 3"):
        train(K, n, 2, 6, 0.01, seeds=[0, 1], steps=5, params=params[:2], progress=False)


def test_recorded_divergence_lets_the_other_runs_finish_as_they_would_alone():
    kwargs = dict(steps=200, record_every=10, progress=False)
    result = train(
        K,
        n,
        2,
        6,
        0.01,
        seeds=[0, 1, 2],
        init_scale=[0.1, 30.0, 0.5],
        lr=[0.1, 50.0, 0.1],
        on_divergence="record",
        **kwargs,
    )
    assert result.diverged[0] is None and result.diverged[2] is None
    assert result.diverged[1] is not None and result.steps_done == 200
    for i, scale in ((0, 0.1), (2, 0.5)):
        alone = train(K, n, 2, 6, 0.01, seeds=[i], init_scale=scale, lr=0.1, **kwargs)
        assert torch.allclose(result.losses[i], alone.losses[0], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="on_divergence='skip'"):
        train(K, n, 2, 6, 0.01, seeds=[0], steps=5, on_divergence="skip", progress=False)


def test_numpy_seeds_and_sizes_are_accepted():
    import numpy as np

    result = train(
        np.int64(K),
        np.int64(n),
        np.int64(2),
        np.array([6, 5, 6]),
        np.float32(0.01),
        seeds=np.arange(3),
        steps=20,
        progress=False,
    )
    plain = train(
        K, n, 2, [6, 5, 6], float(np.float32(0.01)), seeds=[0, 1, 2], steps=20, progress=False
    )
    assert torch.equal(result.losses, plain.losses)
    assert [type(r.seed) for r in result.configs] == [int] * 3


def test_a_block_whose_runs_have_settled_stops_taking_steps(monkeypatch):
    import dufm._engine as engine

    monkeypatch.setattr(engine, "CPU_BLOCK_BYTES", 1)  # one block per run
    kwargs = dict(steps=60000, record_every=100, tol=1e-9, progress=False)
    both = train(K, n, 1, 4, [0.1, 0.002], seeds=[0, 1], **kwargs)
    fast, slow = both.run_steps
    assert both.converged and fast < slow == both.steps_done
    alone = train(K, n, 1, 4, 0.1, seeds=[0], **kwargs)
    assert alone.steps_done == fast  # it stopped where it would have stopped alone
    for P, Q in zip(both.run_params(0), alone.run_params(0), strict=True):
        assert torch.equal(P, Q)
    assert float(both.losses[0, -1]) == float(alone.losses[0, -1])
