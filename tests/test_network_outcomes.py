"""What a trained real network ended in: per-layer metrics, run summaries, trends, verdicts."""

from functools import partial

import pytest
import torch

from dufm import metrics
from dufm.losses import forward
from dufm.network_outcomes import (
    LAYER_METRICS,
    RANK_RTOL,
    any_run_verdict,
    check_chapter_parameters,
    head_layer_metrics,
    layer_metric_rows,
    rank_trend,
    run_summary,
    runs_settled,
    singular_value_counts,
    snapshot_schedule,
    trajectories,
    verdict,
)
from dufm.networks import train_network
from dufm.structures import dnc_logits, factorize, pair_logits, simplex_matrix


def _batched(params):
    """[H_1, ..., H_L, Z] and [W_1, ..., W_L] of one deep-UFM point as runs of one."""
    feats = [F.unsqueeze(0) for F in forward(params)]
    return feats, [W.unsqueeze(0) for W in params[1:]]


@pytest.mark.parametrize("L", [1, 3])
def test_every_metric_is_zero_at_a_dnc_point_and_the_rank_is_k_minus_1(L):
    K, n, d = 5, 3, 8
    feats, weights = _batched(factorize(dnc_logits(K, n, 2.0), L, d, seed=1))
    out = head_layer_metrics(feats, weights)
    assert set(out) == set(LAYER_METRICS)
    assert out["rank"].tolist() == [[K - 1] * L]
    for name in LAYER_METRICS[1:]:
        values = out[name][0] if name != "self_duality" else out[name][0, -1:]
        assert float(values.abs().max()) < 1e-10, (name, values)
    assert bool(out["self_duality"][0, :-1].isnan().all())  # only W_L is a classifier


def test_at_the_pair_structure_the_rank_is_k_over_2_and_the_simplex_metrics_are_not_zero():
    K, n, d = 6, 2, 8
    feats, weights = _batched(factorize(pair_logits(K, n, 3.0), 2, d, seed=0))
    out = head_layer_metrics(feats, weights)
    assert out["rank"].tolist() == [[K // 2] * 2]
    assert float(out["DNC1"].max()) < 1e-10 and float(out["cdnv"].max()) < 1e-10
    assert float(out["DNC2"].min()) > 0.1 and float(out["max_angle_gap"].min()) > 0.1


def test_head_layer_metrics_are_the_library_metrics_of_each_layer_and_run():
    # plumbing (a consistency check of the code): the right matrix goes to the right metric
    gen = torch.Generator().manual_seed(0)
    K, n, d, L, R = 3, 4, 5, 3, 2
    H1 = torch.randn(R, d, K * n, generator=gen, dtype=torch.float64)
    weights = [torch.randn(R, d, d, generator=gen, dtype=torch.float64) for _ in range(L - 1)]
    weights.append(torch.randn(R, K, d, generator=gen, dtype=torch.float64))
    feats = forward([H1, *weights], "relu")
    out = head_layer_metrics(feats, weights, activation="relu", rank_rtol=1e-3)
    labels = torch.arange(K).repeat_interleave(n)
    for r in range(R):
        for j in range(L):
            H = feats[j][r]
            H_in = torch.relu(H) if j >= 1 else H
            assert out["rank"][r, j] == metrics.numerical_rank(H, 1e-3)
            assert out["DNC1"][r, j] == pytest.approx(metrics.dnc1(H, K), rel=1e-12)
            assert out["DNC3"][r, j] == pytest.approx(metrics.dnc3(weights[j][r], H_in, K))
            field = metrics.field_metrics(H, labels, Z=feats[-1][r])
            for name, value in field.items():
                assert out[name][r, j] == pytest.approx(value, rel=1e-12, abs=1e-15)
        want = metrics.self_duality(weights[-1][r], torch.relu(feats[L - 1][r]), labels)
        assert out["self_duality"][r, -1] == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="features=3 is not allowed"):
        head_layer_metrics(feats[:-1], weights)


def test_trajectories_stack_the_snapshots_of_training():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(12, 1, 4, 4, generator=gen, dtype=torch.float64)
    X += torch.arange(3).repeat_interleave(4).view(-1, 1, 1, 1).double()
    y = torch.arange(3).repeat_interleave(4)
    res = train_network(
        X, y, 3, mlp_hidden=[8], d=6, L=2, lr=0.1, steps=6, seeds=[0, 1], init_scales=[1, 1],
        snapshot_steps=[0, 3, 6], measure=partial(head_layer_metrics, rank_rtol=1e-3),
        progress=False,
    )  # fmt: skip
    traj = trajectories(res)
    assert traj["cdnv"].shape == (2, 3, 2)  # runs, steps, layers
    final = head_layer_metrics(res.features, res.weights)
    for name in LAYER_METRICS:
        torch.testing.assert_close(traj[name][:, -1], final[name], equal_nan=True)
    res.snapshots = []
    with pytest.raises(ValueError, match="snapshots"):
        trajectories(res)


def test_singular_value_counts_per_layer():
    Z = torch.zeros(2, 4, 6, dtype=torch.float64)
    Z[0, 0, 0], Z[0, 1, 1], Z[1, 2, 2] = 1.0, 1e-7, 2.0
    (counts,) = singular_value_counts([Z], threshold=1e-6)
    assert counts.tolist() == [1, 1]
    (counts,) = singular_value_counts([Z], threshold=1e-8)
    assert counts.tolist() == [2, 1]


def _toy_result():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(12, 1, 8, 8, generator=gen, dtype=torch.float64)
    X += torch.arange(3).repeat_interleave(4).view(-1, 1, 1, 1).double()
    y = torch.arange(3).repeat_interleave(4)
    return train_network(X, y, 3, mlp_hidden=[8], d=8, L=2, steps=2, progress=False)


def test_run_summary_reports_ranks_counts_and_the_distance_from_dnc():
    res = _toy_result()
    K, n = 3, 4
    # replace the logits by an exact DNC matrix and by a rank-1 matrix
    res.features[-1] = torch.stack(
        [
            2.0 * simplex_matrix(K).repeat_interleave(n, dim=1),
            torch.ones(K, 1, dtype=torch.float64) @ torch.arange(K * n).double().view(1, -1),
        ]
    )
    res.seeds, res.init_scales = [0, 1], [1.0, 1.0]
    res.losses = torch.ones(2, len(res.record_steps))
    res.fits = torch.zeros(2, len(res.record_steps))
    res.features = [F if F.shape[0] == 2 else F.expand(2, -1, -1) for F in res.features]
    dnc, flat = run_summary(res, 0), run_summary(res, 1)
    assert dnc["structure"] == "dnc" and dnc["dnc_distance"] < 1e-12
    assert dnc["ranks"][-1] == K - 1 and dnc["counts"][-1] == K - 1
    assert flat["ranks"][-1] == 1 and flat["dnc_distance"] > 0.5
    assert dnc["change"] == 0.0 and (dnc["seed"], dnc["init_scale"]) == (0, 1.0)
    with pytest.raises(ValueError, match="r=2 is not allowed"):
        run_summary(res, 2)


def test_run_summary_measures_the_change_over_the_last_tenth_of_training():
    res = _toy_result()
    res.steps, res.record_steps = 100, list(range(0, 101, 5))
    res.losses = torch.linspace(2.0, 1.0, 21).view(1, -1)  # 0.05 per 5 steps
    assert run_summary(res, 0)["change"] == pytest.approx(0.1)  # from 1.1 at step 90 to 1.0


def test_rank_trend_over_seeds():
    up = rank_trend([0.1, 0.1, 0.3, 0.3, 1.0, 1.0], [2, 3, 5, 5, 7, 6], permutations=4000)
    assert up["mean_ranks"] == {0.1: 2.5, 0.3: 5.0, 1.0: 6.5} and up["monotone"]
    assert up["p"] < 0.05
    flat = rank_trend([0.1, 0.1, 0.3, 0.3], [5, 6, 6, 5], permutations=4000)
    assert not flat["monotone"] and flat["p"] > 0.2
    assert rank_trend([0.3, 0.3], [4, 5]) == {"mean_ranks": {0.3: 4.5}, "monotone": False, "p": 1.0}
    with pytest.raises(ValueError, match="ranks="):
        rank_trend([0.1, 0.3], [2])


def test_a_verdict_is_drawn_only_from_settled_runs():
    assert verdict(True, True) == "reproduced"
    assert verdict(False, True) == "not reproduced"
    assert verdict(True, False) == verdict(False, False) == "not settled"
    assert verdict(True, [True, True]) == "reproduced"
    assert verdict(True, [True, False]) == "not settled"  # one run behind it still moves
    with pytest.raises(ValueError, match="settled"):
        verdict(True, [])


def test_the_rank_cut_off_is_the_books_one():
    # the rank of these functions is numerical_rank at its own default, not a cut-off of their own
    s = torch.tensor([1.0, 0.5 * RANK_RTOL, 2.0 * RANK_RTOL], dtype=torch.float64)
    H = torch.diag(s).repeat_interleave(2, dim=1).unsqueeze(0)  # K = 3 classes of n = 2
    assert metrics.numerical_rank(H[0]) == 2
    out = head_layer_metrics([H, H], [torch.eye(3, dtype=torch.float64).unsqueeze(0)])
    assert out["rank"].tolist() == [[2]]


def test_runs_settled_reads_the_relative_change_over_the_last_tenth():
    res = _toy_result()
    res.record_steps = list(range(0, 101, 5))
    flat = torch.cat([torch.linspace(2.0, 1.0, 19), torch.tensor([1.0, 1.0])])
    falling = torch.linspace(2.0, 1.0, 21)  # 10 % over the last tenth
    res.losses = torch.stack([flat, falling])
    assert runs_settled(res, 1e-3) == [True, False]
    assert runs_settled(res, 0.2) == [True, True]
    with pytest.raises(ValueError, match="tol=0"):
        runs_settled(res, 0)


def test_snapshot_schedule_is_log_spaced_from_one_to_the_last_step():
    points = snapshot_schedule(1000, 4)
    assert points == [1, 10, 100, 1000]
    many = snapshot_schedule(50, 30)  # rounding merges the first points: distinct steps only
    assert many[0] == 1 and many[-1] == 50 and many == sorted(set(many)) and len(many) <= 30
    assert snapshot_schedule(1, 5) == [1]
    with pytest.raises(ValueError, match="count=1"):
        snapshot_schedule(10, 1)


def test_layer_metric_rows_give_one_row_per_head_layer():
    values = {
        "rank": torch.tensor([[9.0, 4.0]]),
        "cdnv": torch.tensor([[0.012345, 2.0]]),
        "self_duality": torch.tensor([[float("nan"), 0.5]]),
    }
    rows = layer_metric_rows(values, 0, ["rank", "cdnv", "self_duality"], label="run a")
    assert rows == [["run a", "H_1", "9", "0.0123", "–"], ["run a", "H_2", "4", "2", "0.5"]]
    with pytest.raises(ValueError, match="r=1"):
        layer_metric_rows(values, 1, ["rank"])
    with pytest.raises(ValueError, match="names='DNC1'"):
        layer_metric_rows(values, 0, ["DNC1"])


def test_a_claim_some_run_shows_needs_a_settled_run_that_shows_it():
    assert any_run_verdict([True, False], [True, False]) == "reproduced"
    assert any_run_verdict([False, False], [True, True]) == "not reproduced"
    assert any_run_verdict([True, False], [False, True]) == "not settled"  # may still fall
    assert any_run_verdict([False, False], [True, False]) == "not settled"
    with pytest.raises(ValueError, match="settled"):
        any_run_verdict([True], [True, True])


def test_the_chapter_parameter_check_names_the_bad_parameter():
    good = dict(
        dataset="mnist-5k", data_dir="", n_per_class=50, standardise=True, backbone="mlp",
        mlp_hidden=[128], d=64, L_linear=3, L_relu=4, L_standard=3, lam_W=5e-3, lam_H=1e-6,
        lam=1e-2, lr_linear=0.35, lr_relu=0.4, lr_standard=0.1, warmup_steps=200, steps=10,
        steps_relu=10, steps_standard=10, batch_size=0, init_scales=[0.3], seeds=[0],
        init_scale=0.5, seed=0, record_every=2, snapshots=4, settle_tol=2e-3,
        sv_threshold=1e-6, margin_tol=1e-4, trend_alpha=0.05, torch_threads=1, device="cpu",
        dtype="float32",
    )  # fmt: skip
    check_chapter_parameters(good)
    for name, value, message in [
        ("dataset", "svhn", "dataset='svhn' is not allowed"),
        ("data_dir", "", "data_dir='' is not allowed"),
        ("steps_standard", 0, "steps_standard=0 is not allowed"),
        ("seeds", [0, -1], "seeds\\[1\\]=-1 is not allowed"),
        ("settle_tol", 0.0, "settle_tol=0.0 is not allowed"),
        ("snapshots", 1, "snapshots=1 is not allowed"),
    ]:
        bad = {**good, name: value, **({"dataset": "mnist"} if name == "data_dir" else {})}
        with pytest.raises(ValueError, match=message):
            check_chapter_parameters(bad)
