"""Trainer resume and evaluation on a tiny generated shard (smoke level; real runs are in train/README.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from train.dataset import Shards, write_shard
from train.metrics import DetectionCounter, match_centers, pck


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    write_shard(d / "shard_000000.npz", "test", 0, 0, 3, 128, 0.5)
    return d


def test_trainer_resumes(shard_dir: Path, tmp_path: Path) -> None:
    from engine.checkpoint import load_checkpoint
    from train import train

    run = tmp_path / "run"
    args = ["--data", str(shard_dir), "--run", str(run), "--batch", "2", "--threads", "1"]
    train.main([*args, "--max-images", "2"])
    _, extra = load_checkpoint(run / "last.pt")
    assert extra["step"] == 1 and extra["images"] == 2 and "optimizer" in extra
    train.main([*args, "--max-images", "4"])
    _, extra = load_checkpoint(run / "last.pt")
    assert extra["step"] == 2 and extra["images"] == 4


def test_evaluate_runs(shard_dir: Path) -> None:
    from engine.models import build_model
    from train.eval import evaluate, table

    torch.manual_seed(0)
    data = Shards.load(shard_dir)
    assert data.image_rgb(0).shape == (128, 128, 3)
    model = build_model("mobilenetv3", input_size=128).eval()
    res = evaluate(model, data, batch=3)
    assert res["all"]["people"] == int(data.arrays["n"].sum())
    assert "| occluded |" in table(res)
    assert 0.0 <= res["all"]["orient_err_deg"] <= 180.0


def test_rotation_angle_deg() -> None:
    from scipy.spatial.transform import Rotation

    from train.eval import rotation_angle_deg

    def about_y(deg: list[float]) -> torch.Tensor:
        return torch.from_numpy(Rotation.from_rotvec(np.radians(deg)[:, None] * [0, 1, 0]).as_matrix()).float()

    a, b = about_y([0, 30, 0, 170]), about_y([0, 0, 90, -170])
    # the last pair is 20 degrees apart through the short way round, not 340
    np.testing.assert_allclose(rotation_angle_deg(a, b).numpy(), [0, 30, 90, 20], atol=0.05)


def test_lr_schedule_warmup_then_cosine_tail() -> None:
    from train.train import lr_factor

    assert lr_factor(0, 8, 100, 0, 0.0) == pytest.approx(0.01)
    assert lr_factor(500, 4000, 100, 0, 0.0) == 1.0  # no budget: constant after warm-up
    assert lr_factor(500, 6000, 100, 10000, 0.3) == 1.0  # before the tail
    assert lr_factor(800, 8500, 100, 10000, 0.3) == pytest.approx(0.05 + 0.95 * 0.5)  # middle of the tail
    assert lr_factor(1250, 10000, 100, 10000, 0.3) == pytest.approx(0.05)


def test_match_centers_and_counter() -> None:
    gt = np.array([[0.0, 0.0], [0.5, 0.5]], np.float32)
    box = np.array([[-0.2, -0.4, 0.2, 0.4], [0.4, 0.3, 0.6, 0.7]], np.float32)
    pred = np.array([[0.52, 0.5], [0.01, 0.02], [-0.9, -0.9]], np.float32)
    m = match_centers(pred, gt, box)
    assert sorted(m) == [(0, 1), (1, 0)]
    c = DetectionCounter()
    c.add(len(pred), m, np.array([True, True]))
    assert c.precision == pytest.approx(2 / 3) and c.recall == 1.0
    occ = DetectionCounter()
    occ.add(len(pred), m[:1], np.array([False, True]))
    assert occ.tp == 1 and occ.fn == 0


def test_pck() -> None:
    kp = np.zeros((1, 3, 2), np.float32)
    pj = np.array([[[0.05, 0.0], [0.2, 0.0], [5.0, 5.0]]], np.float32)
    box = np.array([[-0.5, -1.0, 0.5, 1.0]], np.float32)  # longer side 2 -> threshold 0.2
    assert pck(pj, kp, np.array([[True, True, False]]), box)[0] == pytest.approx(0.5)


def test_paired_bootstrap_agrees_with_evaluate_and_sees_a_real_difference(shard_dir: Path) -> None:
    from engine.models import build_model
    from train.ablation import _metrics, paired_bootstrap
    from train.eval import evaluate

    torch.manual_seed(0)
    model = build_model("mobilenetv3", input_size=128).eval()
    res = evaluate(model, Shards.load(shard_dir), batch=3, threshold=0.0, per_person=True)
    ones = np.ones((1, len(res["fp_per_image"])), np.int64)
    m = _metrics(ones, res["per_person"], res["fp_per_image"])
    assert m["det_recall"][0] == pytest.approx(res["all"]["det_recall"])
    assert m["det_precision"][0] == pytest.approx(res["all"]["det_precision"])
    assert m["MPJPE_mm"][0] == pytest.approx(res["all"]["MPJPE_mm"], rel=1e-5)
    same = paired_bootstrap(res, res, n_boot=50)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())

    # 40 images, 3 people each; variant b finds everyone, a misses a third: a clear, significant recall gain
    n_img = 40
    per = {"image": np.repeat(np.arange(n_img), 3), "occ": np.tile([True, False, False], n_img),
           "mpjpe": np.full(3 * n_img, 100.0), "orient": np.full(3 * n_img, 10.0)}
    a = {"per_person": {**per, "found": np.tile([False, True, True], n_img)}, "fp_per_image": np.zeros(n_img)}
    b = {"per_person": {**per, "found": np.ones(3 * n_img, bool)}, "fp_per_image": np.zeros(n_img)}
    d, lo, hi = paired_bootstrap(a, b, n_boot=200)["det_recall"]
    assert d == pytest.approx(1 / 3) and 0 < lo <= d <= hi
    assert paired_bootstrap(a, b, n_boot=200)["occluded_recall"][0] == pytest.approx(1.0)
