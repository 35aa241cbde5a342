"""3DCrowdNet / JOTR in the app: system detection from the file, the pose-guided frame model on real footage, the
ONNX export with its parity report, and the CLI's refusals. Weights are random (official-format checkpoints built
from the key names), so these check the plumbing and geometry, not the accuracy of the released models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import synthetic_poseguided as sp
import torch

from engine.checkpoint import checkpoint_system, save_checkpoint
from engine.errors import ConfigError, ModelFileError
from engine.models import build_model

ROOT = Path(__file__).resolve().parent.parent
REALFOOTAGE = ROOT / "assets" / "models" / "realfootage"


@pytest.fixture(scope="module")
def crowdnet_ckpt(tmp_path_factory) -> Path:
    return sp.save(sp.crowdnet_checkpoint(0), tmp_path_factory.mktemp("pg") / "crowdnet_release.pth.tar")


@pytest.fixture(scope="module")
def jotr_ckpt(tmp_path_factory) -> Path:
    return sp.save(sp.jotr_checkpoint(0), tmp_path_factory.mktemp("pg") / "jotr_3dpw.pth")


def test_checkpoint_system_tells_the_three_systems_apart(crowdnet_ckpt, jotr_ckpt, tmp_path):
    ihmr = save_checkpoint(build_model("mobilenetv3"), tmp_path / "ihmr.pt")
    assert checkpoint_system(crowdnet_ckpt) == "crowdnet"
    assert checkpoint_system(jotr_ckpt) == "jotr"
    assert checkpoint_system(ihmr) == "instancehmr"
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ModelFileError):
        checkpoint_system(junk)


def test_open_poseguided_refuses_tensorrt_and_unknown_systems(crowdnet_ckpt, body):
    from engine.frame_models import open_poseguided

    with pytest.raises(ConfigError, match="TensorRT"):
        open_poseguided(crowdnet_ckpt, "crowdnet", REALFOOTAGE, body, backend="tensorrt")
    with pytest.raises(ConfigError, match="unknown pose-guided system"):
        open_poseguided(crowdnet_ckpt, "romp", REALFOOTAGE, body, backend="torch")


def _standing_person(frame_h: int) -> np.ndarray:
    """A plausible COCO-17 pose of a standing person whose mid-hip is at (200, 0.55 h)."""
    s = frame_h / 400.0
    pts = np.array([[0, -150], [5, -155], [-5, -155], [10, -152], [-10, -152], [25, -120], [-25, -120], [35, -80],
                    [-35, -80], [38, -45], [-38, -45], [15, 0], [-15, 0], [16, 70], [-16, 70], [17, 140], [-17, 140]],
                   np.float32)
    return pts * s + np.array([200.0, 0.55 * frame_h], np.float32)


def test_poseguided_people_land_on_their_landmarks(crowdnet_ckpt, body, frames, one_torch_thread):
    """Real frames through the tracker and 3DCrowdNet (torch reference path): one person row per tracked pose,
    SMPL pose/shape passed through from the network, and the fitted camera puts each body's mid-hip where the
    landmarks say it is."""
    from engine.frame_models import PeopleQuery, open_poseguided
    from engine.frame_models.poseguided import PoseGuidedModel
    from engine.geometry import axis_angle_to_rotmat_np

    model = open_poseguided(crowdnet_ckpt, "crowdnet", REALFOOTAGE, body, backend="torch")
    assert isinstance(model, PoseGuidedModel) and model.info.name == "crowdnet"
    assert "3DCrowdNet" in model.info.title and "torch" in model.info.title
    seen = 0
    for frame in frames[:3]:
        out = model(frame, PeopleQuery(threshold=model.info.default_threshold, max_people=8))
        people = out.people
        seen += len(people)
        assert out.timings_ms["inference"] > 0 or len(people) == 0
        if not len(people):
            continue
        assert people.body_pose.shape == (len(people), 69) and people.betas.shape == (len(people), 10)
        assert np.isfinite(people.cam).all() and (people.cam[:, 0] > 0).all()
        # the rotations the body model receives are proper rotations
        r = axis_angle_to_rotmat_np(people.global_orient.astype(np.float64))
        assert np.allclose(np.einsum("nij,nkj->nik", r, r), np.eye(3), atol=1e-5)
        # mid-hip (the root-aligned origin) projects with cam (tx, ty): near the centre the tracker reported
        mid = out.box.norm_to_original(people.cam[:, 1:3].astype(np.float32))
        centre = people.center_preds / out.box.scale - (out.box.pad_left, out.box.pad_top)
        h = frame.shape[0]
        assert np.abs(mid - centre).max() < 0.1 * h, (mid, centre)
    assert seen >= 3, "the tracker should find the walkers of vtest.avi"
    model.reset()


def test_poseguided_model_passes_the_network_pose_through(crowdnet_ckpt, body, frames, one_torch_thread):
    """What the network says is what the People hold: the frame model adds placement, not pose changes."""
    from engine.checkpoint import load_network
    from engine.frame_models import PeopleQuery, open_poseguided
    from engine.poseguided import coco17_from_landmarks, prepare

    model = open_poseguided(crowdnet_ckpt, "crowdnet", REALFOOTAGE, body, backend="torch")
    frame = frames[0]
    found = model.tracker(frame, model.info.default_threshold, 8)
    model.tracker.reset()
    out = model(frame, PeopleQuery(model.info.default_threshold, 8))
    assert len(found.landmarks) >= 1
    xy, score = coco17_from_landmarks(found.landmarks)
    crop = prepare(frame, xy, score, "crowdnet", fallback_boxes=found.landmarks.boxes())
    net = load_network(crowdnet_ckpt, system="crowdnet")
    with torch.inference_mode():
        ref = net(torch.from_numpy(crop.img), torch.from_numpy(crop.joints), torch.from_numpy(crop.joints_mask))
    kept = np.flatnonzero(crop.keep)
    pose = ref["smpl_pose"].numpy()[kept]
    assert len(out.people) == len(kept)
    np.testing.assert_allclose(out.people.global_orient, pose[:, :3], atol=1e-5)
    np.testing.assert_allclose(out.people.body_pose, pose[:, 3:], atol=1e-5)
    np.testing.assert_allclose(out.people.betas, ref["smpl_shape"].numpy()[kept], atol=1e-5)


@pytest.mark.slow  # ~30 s: exports a ResNet-50 with its heads and opens an ORT session
def test_export_cli_writes_a_parity_checked_onnx_that_the_app_runs(crowdnet_ckpt, tmp_path):
    out = tmp_path / "crowdnet.onnx"
    r = subprocess.run([sys.executable, "-m", "export", "onnx", "--checkpoint", str(crowdnet_ckpt), "--output",
                        str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "crowdnet" in r.stdout and "FAIL" not in r.stdout
    lines = [ln for ln in r.stdout.splitlines() if "max rel" in ln]
    assert {ln.split()[0] for ln in lines} == {"smpl_pose", "smpl_shape", "cam_param", "joint_img"}
    assert all(float(ln.split()[6]) < 1e-3 for ln in lines)  # the relative error column
    assert checkpoint_system(out) == "crowdnet"
    from engine.runtime.graph import OnnxGraph
    from export.poseguided import sample_inputs

    feeds, _ = sample_inputs("crowdnet", 5)  # a batch other than the one exported with: the axis is dynamic
    res = OnnxGraph(out, ("img", "joints", "joints_mask"), ("smpl_pose", "smpl_shape")).run(feeds)
    assert res["smpl_pose"].shape == (5, 72) and res["smpl_shape"].shape == (5, 10)


def _run_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_app.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_refuses_pose_options_for_an_instancehmr_checkpoint(tmp_path, frames):
    ihmr = save_checkpoint(build_model("mobilenetv3"), tmp_path / "ihmr.pt")
    img = tmp_path / "f.png"
    import cv2

    cv2.imwrite(str(img), frames[0])
    r = _run_app("--headless", "--input", str(img), "--checkpoint", str(ihmr), "--landmarks", "lite")
    assert r.returncode == 2, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and "InstanceHMR" in err[0]


def test_cli_runs_jotr_checkpoint_headless(jotr_ckpt, tmp_path, frames):
    """The whole app path on a real frame: system picked from the file, npz rows written."""
    import cv2

    img = tmp_path / "street.png"
    cv2.imwrite(str(img), frames[1])
    r = _run_app("--headless", "--input", str(img), "--checkpoint", str(jotr_ckpt), "--backend", "torch",
                 "--save-npz", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    files = list((tmp_path / "out").glob("*.npz"))
    assert len(files) == 1
    data = np.load(files[0], allow_pickle=False)
    assert data["body_pose"].shape[1] == 69 and len(data["body_pose"]) >= 1
