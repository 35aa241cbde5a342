"""SmplBody and the SMPL loader on a synthetic model: npz / chumpy pkl / folder, refusals, LBS agreement."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from engine.body import SMPL_JOINT_NAMES, create_body_model
from engine.body.smpl import SmplBody, load_smpl_arrays
from engine.errors import ConfigError, ModelFileError

sys.path.insert(0, str(Path(__file__).parent))
import synthetic_smpl

pytest.importorskip("smplx")


@pytest.fixture(scope="module")
def model() -> dict[str, np.ndarray]:
    return synthetic_smpl.make_synthetic_smpl(seed=0)


@pytest.fixture(scope="module")
def npz_dir(tmp_path_factory: pytest.TempPathFactory, model: dict[str, np.ndarray]) -> Path:
    folder = tmp_path_factory.mktemp("smpl_npz")
    synthetic_smpl.write_npz(folder / "SMPL_NEUTRAL.npz", model)
    return folder


@pytest.fixture(scope="module")
def body(npz_dir: Path) -> SmplBody:
    return SmplBody.from_file(npz_dir / "SMPL_NEUTRAL.npz")


def _numpy_lbs(model: dict[str, np.ndarray], pose: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference SMPL LBS written independently: [72] pose, [10] betas -> vertices [V,3], joints [24,3]."""
    parents = model["kintree_table"][0].astype(np.int64)
    v_shaped = model["v_template"] + model["shapedirs"][:, :, : len(betas)].astype(np.float64) @ betas
    joints = model["J_regressor"] @ v_shaped
    rot = Rotation.from_rotvec(pose.reshape(24, 3)).as_matrix()
    v_posed = v_shaped + model["posedirs"].astype(np.float64) @ (rot[1:] - np.eye(3)).reshape(-1)
    world = np.zeros((24, 4, 4))
    for j in range(24):
        local = np.eye(4)
        local[:3, :3] = rot[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if j > 0 else 0.0)
        world[j] = local if j == 0 else world[parents[j]] @ local
    posed_joints = world[:, :3, 3].copy()
    world[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
    blended = np.einsum("vj,jab->vab", model["weights"], world)
    verts = np.einsum("vab,vb->va", blended[:, :3, :3], v_posed) + blended[:, :3, 3]
    return verts, posed_joints


def _aligned(verts: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mid = 0.5 * (joints[1] + joints[2])
    return verts - mid, joints - mid


def test_npz_zero_pose_is_shaped_template(body: SmplBody, model: dict[str, np.ndarray]) -> None:
    assert body.shape_kind == "smpl_betas" and body.num_shape == 10 and body.num_vertices == 6890
    assert body.faces.shape == (13776, 3) and body.faces.dtype == np.int32
    assert len(body.joint_names) == 45 and body.joint_names[:24] == SMPL_JOINT_NAMES
    betas = np.linspace(-1.0, 1.0, 10)
    with torch.no_grad():
        out = body(torch.zeros(1, 3), torch.zeros(1, 69), torch.tensor(betas, dtype=torch.float32)[None])
    assert out.vertices.shape == (1, 6890, 3) and out.joints.shape == (1, 45, 3)
    v_shaped = model["v_template"] + model["shapedirs"].astype(np.float64) @ betas
    verts, joints = _aligned(v_shaped, model["J_regressor"] @ v_shaped)
    np.testing.assert_allclose(out.vertices[0].numpy(), verts, atol=1e-5)
    np.testing.assert_allclose(out.joints[0, :24].numpy(), joints, atol=1e-5)


def test_nonzero_pose_matches_numpy_lbs(body: SmplBody, model: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    pose = rng.uniform(-0.5, 0.5, 72)
    betas = rng.uniform(-1, 1, 10)
    t = torch.tensor(pose, dtype=torch.float32)[None]
    with torch.no_grad():
        out = body(t[:, :3], t[:, 3:], torch.tensor(betas, dtype=torch.float32)[None])
    assert torch.isfinite(out.vertices).all()
    verts, joints = _aligned(*_numpy_lbs(model, pose, betas))
    np.testing.assert_allclose(out.vertices[0].numpy(), verts, atol=1e-4)
    np.testing.assert_allclose(out.joints[0, :24].numpy(), joints, atol=1e-4)


def test_batch_invariance_and_translation(body: SmplBody) -> None:
    gen = torch.Generator().manual_seed(2)
    pose = (torch.rand(8, 72, generator=gen) - 0.5)
    betas = torch.randn(8, 10, generator=gen)
    transl = torch.randn(8, 3, generator=gen)
    with torch.no_grad():
        full = body(pose[:, :3], pose[:, 3:], betas, transl)
        for batch in range(1, 9):
            part = body(pose[:batch, :3], pose[:batch, 3:], betas[:batch], transl[:batch])
            torch.testing.assert_close(part.vertices, full.vertices[:batch], atol=1e-5, rtol=0)
        hands_free = body(pose[:, :3], pose[:, 3:66], betas, transl)  # [B, 63]: hands zero
        hands_zero = body(pose[:, :3], torch.cat([pose[:, 3:66], torch.zeros(8, 6)], 1), betas, transl)
    torch.testing.assert_close(hands_free.vertices, hands_zero.vertices)
    mid = 0.5 * (full.joints[:, 1] + full.joints[:, 2])
    torch.testing.assert_close(mid, transl, atol=1e-5, rtol=0)


def test_chumpy_pkl_without_chumpy(tmp_path: Path, model: dict[str, np.ndarray], body: SmplBody) -> None:
    assert importlib.util.find_spec("chumpy") is None
    pkl = synthetic_smpl.write_chumpy_pkl(tmp_path / "SMPL_NEUTRAL.pkl", model)
    arrays = load_smpl_arrays(pkl)
    assert "chumpy" not in sys.modules
    assert arrays["J_regressor"].shape == (24, 6890) and isinstance(arrays["J_regressor"], np.ndarray)
    np.testing.assert_allclose(arrays["v_template"], model["v_template"], atol=1e-6)
    cache = tmp_path / "SMPL_NEUTRAL.clean.npz"
    assert cache.is_file()
    pkl_body = SmplBody.from_file(tmp_path)  # folder lookup, now served from the cache
    pose = torch.full((2, 72), 0.2)
    with torch.no_grad():
        torch.testing.assert_close(pkl_body(pose[:, :3], pose[:, 3:]).vertices, body(pose[:, :3], pose[:, 3:]).vertices)


def test_unwritable_folder_falls_back_to_user_cache(tmp_path: Path, model: dict[str, np.ndarray],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.body.smpl as smpl_module

    pkl = synthetic_smpl.write_chumpy_pkl(tmp_path / "SMPL_NEUTRAL.pkl", model)
    monkeypatch.setattr(smpl_module, "CACHE_DIR", tmp_path / "user_cache")
    real_access = os.access
    monkeypatch.setattr(smpl_module.os, "access",
                        lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    load_smpl_arrays(pkl)
    assert not (tmp_path / "SMPL_NEUTRAL.clean.npz").exists()
    assert len(list((tmp_path / "user_cache").glob("*SMPL_NEUTRAL.clean.npz"))) == 1


@pytest.mark.parametrize("kind", ["os.system", "eval"])
def test_malicious_pickle_is_refused(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "payload_ran"
    pkl = synthetic_smpl.write_malicious_pkl(tmp_path / "SMPL_NEUTRAL.pkl", marker, kind=kind)
    with pytest.raises(ModelFileError, match="not allowed"):
        load_smpl_arrays(pkl)
    assert not marker.exists()


def test_file_errors(tmp_path: Path, model: dict[str, np.ndarray]) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_smpl_arrays(tmp_path / "missing.pkl")
    with pytest.raises(ModelFileError, match="no SMPL model file"):
        load_smpl_arrays(tmp_path)
    broken = dict(model)
    del broken["weights"]
    synthetic_smpl.write_npz(tmp_path / "no_weights.npz", broken)
    with pytest.raises(ModelFileError, match="'weights' is missing"):
        load_smpl_arrays(tmp_path / "no_weights.npz")
    bad = dict(model, v_template=model["v_template"][:100])
    synthetic_smpl.write_npz(tmp_path / "bad_shape.npz", bad)
    with pytest.raises(ModelFileError, match="'v_template' has shape"):
        load_smpl_arrays(tmp_path / "bad_shape.npz")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ModelFileError, match="not a usable SMPL"):
        load_smpl_arrays(tmp_path / "junk.pkl")


def test_factory_and_extra_regressor(tmp_path: Path, npz_dir: Path, model: dict[str, np.ndarray]) -> None:
    with pytest.raises(ConfigError, match="needs smpl_path"):
        create_body_model("smpl")
    with pytest.raises(ConfigError, match="topology"):
        create_body_model("smpl", smpl_path=npz_dir, topology="notoes_collapse10pc")
    assert isinstance(create_body_model("smpl", smpl_path=npz_dir), SmplBody)
    synthetic_smpl.write_npz(tmp_path / "SMPL_NEUTRAL.npz", model)
    extra = np.zeros((9, 6890), dtype=np.float32)
    extra[0, 10] = extra[1, 20] = 1.0  # "hips" at two vertices
    np.save(tmp_path / "J_regressor_extra.npy", extra)
    with_extra = create_body_model("smpl", smpl_path=tmp_path)
    with torch.no_grad():
        out = with_extra(torch.zeros(1, 3), torch.zeros(1, 69))
    torch.testing.assert_close(0.5 * (out.vertices[0, 10] + out.vertices[0, 20]), torch.zeros(3), atol=1e-6, rtol=0)


def test_npz_with_object_arrays_loads_without_pickle(tmp_path: Path, model: dict[str, np.ndarray]) -> None:
    path = tmp_path / "converted.npz"
    np.savez(path, bs_style=np.array(["lbs", None], dtype=object), **model)  # as some converters write
    arrays = load_smpl_arrays(path)
    assert "bs_style" not in arrays and arrays["v_template"].shape == (6890, 3)
