"""The engine's external contract: the command the reference check runs on an official-format checkpoint.

``python run_app.py --input IMAGE --checkpoint CKPT --save-npz DIR --headless --threshold 0.2`` must write
``DIR/<stem>.npz`` with simple-romp key names, and its people must be what the network + official decoding give.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine import load_network
from engine.decode import DecodeCfg, decode_people
from engine.preprocess import letterbox

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {"center_preds": 2, "center_confs": 1, "cam": 2, "global_orient": 2, "body_pose": 2, "betas": 2,
            "smpl_thetas": 2, "cam_trans": 2, "joints": 3, "pj2d_org": 3}


@pytest.fixture(scope="module")
def street_image(tmp_path_factory) -> Path:
    """A real photo with several people when opencv-doc is installed, else a synthetic frame."""
    src = Path("/usr/share/doc/opencv-doc/examples/data/basketball1.png")
    out = tmp_path_factory.mktemp("img") / "crowd.png"
    frame = cv2.imread(str(src)) if src.exists() else None
    if frame is None:
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 255, (360, 500, 3), dtype=np.uint8)
    cv2.imwrite(str(out), frame)
    return out


def test_reference_command_on_official_checkpoint(tmp_path, official_r50_ckpt, street_image):
    out_dir = tmp_path / "npz"
    cmd = [sys.executable, "run_app.py", "--input", str(street_image), "--checkpoint", str(official_r50_ckpt),
           "--save-npz", str(out_dir), "--headless", "--threshold", "0.2"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = np.load(out_dir / f"{street_image.stem}.npz")
    n = len(res["center_confs"])
    for key, ndim in EXPECTED.items():
        assert key in res.files, key
        assert res[key].ndim == ndim and res[key].shape[0] == n, (key, res[key].shape)
    assert res["body_pose"].shape[1:] == (69,) and res["smpl_thetas"].shape[1:] == (72,)
    assert res["betas"].shape[1:] == (10,) and res["joints"].shape[2] == 3 and res["pj2d_org"].shape[2] == 2

    # the same people from the torch network + the official decoding, computed here independently of the app
    net = load_network(official_r50_ckpt)
    image, box = letterbox(cv2.imread(str(street_image)), 512)
    with torch.no_grad():
        maps = {k: v.numpy() for k, v in net(torch.from_numpy(image)[None]).items()}
    ref = decode_people(maps["center_map"][0], maps["params_maps"][0], 512, DecodeCfg(threshold=0.2))
    assert n == len(ref) and n > 0
    order = np.lexsort(res["center_preds"].T)  # the app may reorder people (tracking); compare as sets
    ref_order = np.lexsort(ref.center_preds.T)
    np.testing.assert_allclose(res["center_preds"][order], ref.center_preds[ref_order])
    np.testing.assert_allclose(res["cam"][order], ref.cam[ref_order], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(res["betas"][order], ref.betas[ref_order], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(res["smpl_thetas"][order], ref.smpl_thetas[ref_order], rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(res["cam_trans"][order], ref.cam_trans[ref_order], rtol=2e-3, atol=2e-3)
    # 2D joints: weak-perspective projection of the root-aligned 3D joints, mapped through the letterbox
    s, t = res["cam"][:, :1, None], res["cam"][:, None, 1:3]
    np.testing.assert_allclose(res["pj2d_org"], box.norm_to_original(res["joints"][..., :2] * s + t), atol=0.05)
