"""The MKL kernel path of the engine (``dufm.kernels``) against the torch path, and its choice."""

import platform
import sys

import pytest
import torch

from dufm import kernels
from dufm.trainer import train

K, n = 4, 3

# The mkl wheel is installed (requirements.txt) wherever it exists: Linux on x86-64. There the
# kernels must load; anywhere else the engine runs the torch path and these comparisons skip.
MKL_PLATFORM = sys.platform == "linux" and platform.machine() == "x86_64"
needs_mkl = pytest.mark.skipif(not MKL_PLATFORM, reason="the mkl wheel exists for x86-64 Linux")


@needs_mkl
def test_the_kernels_load_where_the_mkl_wheel_is_installed():
    assert kernels.mkl_unavailable_reason() is None


def _both(**kwargs):
    return (train(K, n, progress=False, kernels=path, **kwargs) for path in ("mkl", "torch"))


@needs_mkl
@pytest.mark.parametrize("L", [1, 2, 3])
def test_float64_losses_and_parameters_of_both_paths_agree_to_1e_12(L):
    # padded widths and one (lr, lam) per run: per-run decays, so per-run update kernels
    kwargs = dict(L=L, d=[5, 7, 6, 7], lam=[0.01, 0.003, 0.01, 0.02], lr=[0.2, 0.2, 0.1, 0.15])
    kwargs.update(init_scale=0.5)
    mkl, reference = _both(seeds=range(4), steps=400, record_every=50, **kwargs)
    assert (mkl.kernels, reference.kernels) == ("mkl", "torch")
    rel = ((mkl.losses - reference.losses).abs() / reference.losses.abs()).max()
    assert float(rel) < 1e-12, f"the paths' float64 losses differ by {float(rel):.1e} relative"
    for P, Q in zip(mkl.params, reference.params, strict=True):
        assert torch.allclose(P, Q, rtol=0, atol=1e-12)
    H, *Ws = mkl.params  # run 0 (d = 5 of 7): its padding stays exactly zero
    assert not H[0, 5:].any() and not Ws[-1][0, :, 5:].any()
    assert all(not W[0, 5:].any() and not W[0, :, 5:].any() for W in Ws[:-1])


@needs_mkl
def test_float32_losses_of_both_paths_agree_within_float32_rounding():
    mkl, reference = _both(L=2, d=8, lam=0.01, seeds=range(5), steps=300, dtype="float32")
    assert mkl.params[0].dtype == torch.float32
    rel = ((mkl.losses - reference.losses).abs() / reference.losses.abs()).max()
    assert float(rel) < 1e-5, f"the paths' float32 losses differ by {float(rel):.1e} relative"


@needs_mkl
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_underflowing_softmax_entries_give_the_numbers_of_the_torch_path(dtype):
    # init_scale 3 at d = 6: logit gaps of hundreds, so exp underflows (float32) or nearly does
    kwargs = dict(L=2, d=6, lam=0.01, seeds=range(3), init_scale=3.0, lr=0.01, steps=200)
    mkl, reference = _both(dtype=dtype, **kwargs)
    rel = ((mkl.losses - reference.losses).abs() / reference.losses.abs()).max()
    assert float(rel) < (1e-5 if dtype == "float32" else 1e-12), float(rel)


@needs_mkl
def test_class_sizes_and_early_stopping_run_on_the_kernels_as_on_torch():
    kwargs = dict(L=2, d=6, lam=0.01, seeds=range(3), steps=3000, tol=1e-6, record_every=20)
    mkl, reference = (
        train(K, None, progress=False, class_sizes=[2, 5, 3, 4], kernels=path, **kwargs)
        for path in ("mkl", "torch")
    )
    assert mkl.run_steps == reference.run_steps and mkl.steps_done == reference.steps_done
    assert torch.allclose(mkl.final_loss, reference.final_loss, rtol=1e-12, atol=0)


@needs_mkl
def test_auto_takes_the_kernels_for_the_linear_model_on_the_cpu(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    args = dict(seeds=[0], steps=10, progress=False)
    assert train(K, n, 2, 5, 0.01, **args).kernels == "mkl"
    assert train(K, n, 2, 5, 0.01, activation="relu", **args).kernels == "torch"
    assert train(K, n, 2, 5, 0.01, kernels="torch", **args).kernels == "torch"
    monkeypatch.setenv(kernels.ENV, "torch")
    assert train(K, n, 2, 5, 0.01, **args).kernels == "torch"


def test_without_the_kernels_auto_falls_back_to_torch_and_mkl_says_why(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.setattr(kernels, "mkl_unavailable_reason", lambda: "ImportError: no numba")
    args = dict(seeds=[0], steps=10, progress=False)
    assert train(K, n, 2, 5, 0.01, **args).kernels == "torch"
    with pytest.raises(ValueError, match=r"kernels='mkl' is not allowed here: .*no numba"):
        train(K, n, 2, 5, 0.01, kernels="mkl", **args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kernels="fast"), "kernels='fast' is not allowed: must be one of"),
        (dict(kernels="mkl", activation="relu"), "kernels='mkl' is not allowed with"),
        (dict(kernels="mkl", compile=True), "compile=True: the MKL kernels serve"),
    ],
)
def test_a_bad_kernels_choice_is_one_clear_error_before_training(kwargs, message):
    try:
        train(K, n, 2, 5, 0.01, seeds=[0], steps=10, progress=False, **kwargs)
    except ValueError as exc:
        assert message in str(exc), str(exc)
    else:
        pytest.fail("no error")


def test_the_kernels_are_refused_on_a_gpu_and_auto_takes_torch_there():
    with pytest.raises(ValueError, match="kernels='mkl' is not allowed with device='cuda'"):
        kernels.backend("mkl", device_type="cuda", activation="linear")
    assert kernels.backend("auto", device_type="cuda", activation="linear") == "torch"


def test_a_bad_environment_choice_names_the_variable(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "gpu")
    with pytest.raises(ValueError, match=r"DUFM_KERNELS='gpu' is not allowed: must be one of"):
        train(K, n, 2, 5, 0.01, seeds=[0], steps=10, progress=False)


@needs_mkl
def test_kernels_are_shared_while_in_use_and_freed_after():
    import gc

    first = kernels._gemm("float64", False, False, 3, 4, 5, 0.0)
    again = kernels._gemm("float64", False, False, 3, 4, 5, 0.0)
    assert first is again
    key = next(k for k, v in kernels._CACHE.items() if v is first)
    del first, again
    gc.collect()
    assert key not in kernels._CACHE


@needs_mkl
def test_a_long_interval_on_the_kernels_stops_soon_after_the_stop_flag():
    import threading

    from dufm import _engine
    from dufm.losses import one_hot_labels
    from dufm.trainer import init_params, make_runs

    runs = make_runs([0, 1], 5, 1.0, 0.01, 0.5)
    params = init_params(K, n, 2, runs)
    block = _engine._Block(params, one_hot_labels(K, n), runs, "linear", False, "mkl")
    stop, taken = threading.Event(), []

    def advance(steps):
        taken.append(steps)
        stop.set()  # as a failed worker or Ctrl-C does while this call runs

    block._kernels.advance = advance
    block.advance(5 * _engine.KERNEL_STEPS + 7, stop)
    assert taken == [_engine.KERNEL_STEPS]
    stop.clear()
    taken.clear()
    block._kernels.advance = taken.append
    block.advance(2 * _engine.KERNEL_STEPS + 7, stop)
    assert taken == [_engine.KERNEL_STEPS, _engine.KERNEL_STEPS, 7]
