"""Resumable sweeps (the paper-scale runs behind Figures 2 and 5)."""

import pytest
import torch

import dufm.sweep as sweep_mod
from dufm.sweep import grid, run_sweep
from dufm.trainer import RunConfig, train

K, n, L = 4, 3, 2
TRAIN = dict(steps=60, lr=0.2, record_every=20)


def configs():
    return grid(seeds=[0, 1], d=[4, 6, 5], lam=[0.01, 0.02])  # 12 runs


def batch_files(path):
    return sorted(path.glob("batch-*.pt"))


def assert_same(a, b):
    assert torch.equal(a.final_loss, b.final_loss)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.logit_svals, b.logit_svals)
    assert torch.equal(a.feature_svals, b.feature_svals)
    for x, y in zip(a.losses, b.losses, strict=True):
        assert torch.equal(x, y)
    assert a.configs == b.configs


def test_grid_varies_seeds_fastest():
    runs = grid(seeds=range(3), d=[5, 7], lam=0.1, init_scale=[0.5])
    assert len(runs) == 6
    assert runs[:3] == [RunConfig(seed=s, d=5, lam=0.1, init_scale=0.5) for s in range(3)]


def test_interrupted_sweep_keeps_finished_batches_and_resumes(tmp_path, monkeypatch):
    reference = run_sweep(
        configs(), tmp_path / "ref", K=K, n=n, L=L, batch_size=5, progress=False, **TRAIN
    )
    assert reference.batches_trained == 3 and reference.batches_loaded == 0

    calls = []

    def failing_train(*args, **kwargs):
        calls.append(kwargs["seeds"])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption in the second batch")
        return train(*args, **kwargs)

    out = tmp_path / "resumed"
    monkeypatch.setattr(sweep_mod, "train", failing_train)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(configs(), out, K=K, n=n, L=L, batch_size=5, progress=False, **TRAIN)
    assert len(batch_files(out)) == 1  # the first batch survived, no temporary file is left
    assert not list(out.glob(".*tmp"))

    calls.clear()
    monkeypatch.setattr(
        sweep_mod, "train", lambda *a, **k: calls.append(k["seeds"]) or train(*a, **k)
    )
    resumed = run_sweep(configs(), out, K=K, n=n, L=L, batch_size=5, progress=False, **TRAIN)
    assert resumed.batches_loaded == 1 and resumed.batches_trained == 2
    assert len(calls) == 2  # only the missing batches were trained
    assert len(batch_files(out)) == 3
    assert_same(resumed, reference)

    calls.clear()
    again = run_sweep(configs(), out, K=K, n=n, L=L, batch_size=5, progress=False, **TRAIN)
    assert calls == [] and again.batches_loaded == 3
    assert_same(again, reference)


def test_results_are_those_of_train_in_the_given_order(tmp_path):
    runs = [RunConfig(seed=3, d=6, lam=0.02), RunConfig(seed=1, d=4, lam=0.01, init_scale=0.5)]
    result = run_sweep(runs, tmp_path, K=K, n=n, L=L, batch_size=4, progress=False, **TRAIN)
    for i, run in enumerate(runs):
        alone = train(
            K,
            n,
            L,
            run.d,
            run.lam,
            seeds=[run.seed],
            init_scale=run.init_scale,
            progress=False,
            **TRAIN,
        )
        assert float(result.final_loss[i]) == pytest.approx(float(alone.final_loss[0]), abs=1e-12)
        Z = alone.logits[0]
        assert torch.allclose(result.logits[i], Z, atol=1e-12)
        assert torch.allclose(result.logit_svals[i], torch.linalg.svdvals(Z), atol=1e-12)
        assert result.losses[i].shape == (len(result.record_steps[i]),)
    assert result.feature_svals.shape == (2, L, 6)


def test_a_run_with_its_own_lr_trains_at_it_and_the_others_at_the_sweeps(tmp_path):
    runs = [RunConfig(seed=0, d=5, lam=0.01), {"seed": 0, "d": 5, "lam": 0.01, "lr": 0.05}]
    result = run_sweep(runs, tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    assert [c.lr for c in result.configs] == [TRAIN["lr"], 0.05]
    for i, eta in enumerate((TRAIN["lr"], 0.05)):
        alone = train(K, n, L, 5, 0.01, seeds=[0], progress=False, **{**TRAIN, "lr": eta})
        assert torch.allclose(result.logits[i], alone.logits[0], atol=1e-12)
    assert not torch.allclose(result.logits[0], result.logits[1], atol=1e-3)


def test_a_bad_lr_in_a_configuration_is_named_by_its_index(tmp_path):
    with pytest.raises(ValueError, match=r"configs\[1\]\.lr=-0\.1 is not allowed"):
        run_sweep([RunConfig(0, 5, 0.01), RunConfig(0, 5, 0.01, lr=-0.1)], tmp_path, K=K, n=n, L=L)
    assert not list(tmp_path.iterdir())


def test_a_train_result_reads_like_a_sweep_result(tmp_path):
    runs = grid(seeds=[0, 1], d=[5, 6], lam=0.01, lr=TRAIN["lr"])
    swept = run_sweep(runs, tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    trained = train(
        K, n, L, [r.d for r in runs], 0.01, seeds=[r.seed for r in runs], progress=False, **TRAIN
    )  # fmt: skip
    assert trained.configs == swept.configs == runs
    assert trained.logits.shape == swept.logits.shape == (4, K, K * n)
    assert torch.allclose(trained.logits, swept.logits, atol=1e-12)
    assert torch.allclose(trained.final_loss, swept.final_loss, rtol=1e-12, atol=0)


def test_changed_settings_train_again_and_a_damaged_file_is_retrained(tmp_path):
    run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    assert len(batch_files(tmp_path)) == 1
    other = run_sweep(
        configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **{**TRAIN, "lr": 0.1}
    )
    assert other.batches_trained == 1 and len(batch_files(tmp_path)) == 2
    for path in batch_files(tmp_path):
        path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        again = run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    assert again.batches_trained == 1


def test_a_changed_engine_source_trains_again(tmp_path, monkeypatch):
    run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    monkeypatch.setattr(sweep_mod, "_code_fingerprint", lambda: "edited-trainer")
    again = run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    assert again.batches_trained == 1 and len(batch_files(tmp_path)) == 2


def test_default_train_arguments_name_the_same_batches(tmp_path):
    first = run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    explicit = dict(TRAIN, dtype=torch.float64, init="normal", tol=None, device="cpu")
    again = run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **explicit)
    assert first.batches_trained == 1 and again.batches_loaded == 1
    assert len(batch_files(tmp_path)) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(configs=[]), "configs=\\[\\]"),
        (dict(configs=[dict(seed=0, d=3, lam=0.1)]), "configs\\[0\\].d=3"),
        (dict(configs=[dict(seed=0, d=5, lam=-1.0)]), "configs\\[0\\].lam=-1.0"),
        (dict(configs=[dict(seed=0, d=5, lam=0.1, width=3)]), "keys \\['width'\\]"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(seeds=[0]), "'seeds'"),
        (dict(stepz=5), "\\['stepz'\\]"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(tmp_path, kwargs, message):
    args = dict(configs=configs(), K=K, n=n, L=L, progress=False, steps=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run_sweep(out_dir=tmp_path, **args)


@pytest.mark.parametrize("source", ["_engine.py", "kernels.py", "_kernel_loops.py"])
def test_the_engine_source_is_part_of_the_code_fingerprint(monkeypatch, source):
    from pathlib import Path

    before = sweep_mod._code_fingerprint()
    read = Path.read_bytes

    def edited(path):
        return read(path) + (b"\n# edited\n" if path.name == source else b"")

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert sweep_mod._code_fingerprint() != before


def test_a_diverging_run_is_recorded_and_the_rest_of_the_sweep_finishes(tmp_path):
    from dufm.outcomes import summarise_sweep
    from dufm.trainer import DivergenceError

    runs = configs()[:4] + [RunConfig(seed=9, d=5, lam=0.01, init_scale=1e200)]
    with pytest.warns(UserWarning, match=r"1 of 5 runs diverged .*configs\[4\]"):
        result = run_sweep(runs, tmp_path, K=K, n=n, L=L, batch_size=3, progress=False, **TRAIN)
    assert result.diverged == [None, None, None, None, 0]
    assert bool(torch.isnan(result.logits[4]).all()) and bool(
        torch.isfinite(result.logits[:4]).all()
    )
    rows = summarise_sweep(result, window=20)
    assert rows[4]["structure"] == "diverged" and rows[4]["diverged_at"] == 0
    assert all(r["structure"] != "diverged" and r["diverged_at"] is None for r in rows[:4])
    with pytest.warns(UserWarning, match="1 of 5 runs diverged"):
        again = run_sweep(runs, tmp_path, K=K, n=n, L=L, batch_size=3, progress=False, **TRAIN)
    assert again.batches_trained == 0 and again.diverged == result.diverged
    assert torch.equal(again.final_loss[:4], result.final_loss[:4])
    alone = run_sweep(runs[:4], tmp_path / "alone", K=K, n=n, L=L, progress=False, **TRAIN)
    assert torch.allclose(alone.final_loss, result.final_loss[:4], rtol=1e-12, atol=0)
    with pytest.raises(DivergenceError, match="starting point"):
        run_sweep(
            runs,
            tmp_path / "stop",
            K=K,
            n=n,
            L=L,
            progress=False,
            stop_on_divergence=True,
            **TRAIN,
        )
    with pytest.raises(ValueError, match="on_divergence is not allowed in run_sweep"):
        run_sweep(runs, tmp_path, K=K, n=n, L=L, progress=False, on_divergence="raise", **TRAIN)


def test_a_batch_file_with_missing_keys_is_retrained_not_a_key_error(tmp_path):
    run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    (path,) = batch_files(tmp_path)
    payload = torch.load(path, weights_only=True)
    del payload["logit_svals"]
    torch.save(payload, path)
    with pytest.warns(UserWarning, match=r"lacks \['logit_svals'\]; training that batch again"):
        again = run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    assert again.batches_trained == 1


def test_batch_files_get_the_mode_of_the_umask(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        run_sweep(configs()[:3], tmp_path, K=K, n=n, L=L, progress=False, **TRAIN)
    finally:
        os.umask(old)
    (path,) = batch_files(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_numpy_seeds_name_the_same_batches_as_ints(tmp_path):
    import numpy as np

    first = run_sweep(
        grid(seeds=[0, 1], d=5, lam=0.01), tmp_path, K=K, n=n, L=L, progress=False, **TRAIN
    )
    again = run_sweep(
        grid(seeds=np.arange(2), d=np.int64(5), lam=np.float64(0.01)),
        tmp_path,
        K=K,
        n=n,
        L=L,
        progress=False,
        **TRAIN,
    )
    assert first.batches_trained == 1 and again.batches_loaded == 1
