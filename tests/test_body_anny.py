"""AnnyBody contracts: baked file, T-pose, SMPL forward-kinematics agreement, batching, shape, export."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from engine.body import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel, create_body_model
from engine.body.anny import CROWN_RAISE, HEAD_SCALE, AnnyBody
from engine.body.base import ASSETS_DIR
from engine.bodyfit import FACE_LANDMARKS, pick_landmark_vertices
from engine.errors import ConfigError, ModelFileError

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
# (segment start joint, segment end joint, SMPL joint whose world rotation carries the segment)
SEGMENTS = [
    ("left_shoulder", "left_elbow", "left_shoulder"), ("right_shoulder", "right_elbow", "right_shoulder"),
    ("left_elbow", "left_wrist", "left_elbow"), ("right_elbow", "right_wrist", "right_elbow"),
    ("left_wrist", "left_hand", "left_wrist"), ("right_wrist", "right_hand", "right_wrist"),
    ("left_hip", "left_knee", "left_hip"), ("right_hip", "right_knee", "right_hip"),
    ("left_knee", "left_ankle", "left_knee"), ("right_knee", "right_ankle", "right_knee"),
    ("spine2", "spine3", "spine2"), ("spine3", "neck", "spine3"),
    ("left_collar", "left_shoulder", "left_collar"), ("pelvis", "spine1", "pelvis"),
]


@pytest.fixture(scope="module")
def body() -> AnnyBody:
    model = create_body_model("anny")
    assert isinstance(model, AnnyBody)
    return model


def _zero(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(batch, 3), torch.zeros(batch, 69)


def _random_pose(batch: int, seed: int, scale: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    pose = (torch.rand(batch, 72, generator=gen) * 2 - 1) * scale
    return pose[:, :3], pose[:, 3:]


def _smpl_world_rotations(pose: np.ndarray) -> np.ndarray:
    """Independent SMPL FK: [72] axis-angle -> [24, 3, 3] world rotations."""
    local = Rotation.from_rotvec(pose.reshape(24, 3).astype(np.float64)).as_matrix()
    world = np.zeros_like(local)
    for j in range(24):
        world[j] = local[j] if SMPL_PARENTS[j] < 0 else world[SMPL_PARENTS[j]] @ local[j]
    return world


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_baked_file_contents(body: AnnyBody) -> None:
    path = ASSETS_DIR / "anny_notoes_collapse10pc.npz"
    assert path.stat().st_size < 3_000_000
    with np.load(path, allow_pickle=False) as data:
        assert str(data["anny_version"]) == "0.6.2"
        assert str(data["topology"]) == "notoes_collapse10pc"
        assert data["blendshapes"].dtype == np.float32
    assert isinstance(body, BodyModel)
    assert body.num_vertices == 1229 and body.faces.shape == (2454, 3) and body.faces.dtype == np.int32
    assert body.faces.min() == 0 and body.faces.max() == body.num_vertices - 1
    assert body.joint_names[:24] == SMPL_JOINT_NAMES
    assert body.shape_kind == "anny_phenotypes" and body.num_shape == 6
    assert body.default_shape().shape == (6,)
    torch.testing.assert_close(body.skin_weights.sum(1), torch.ones(body.num_vertices), atol=1e-5, rtol=0)
    assert not any(name in sys.modules for name in ("anny", "warp", "roma"))


def test_zero_pose_is_t_pose(body: AnnyBody) -> None:
    with torch.no_grad():
        out = body(*_zero())
    assert out.vertices.shape == (1, 1229, 3) and out.joints.shape == (1, 24, 3)
    assert out.vertices.dtype == torch.float32
    j = out.joints[0].numpy()
    for side, sign in (("left", 1.0), ("right", -1.0)):
        xs = [sign * j[J[f"{side}_{n}"], 0] for n in ("shoulder", "elbow", "wrist", "hand")]
        assert 0 < xs[0] < xs[1] < xs[2] < xs[3], (side, xs)
        arm = j[[J[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")]]
        assert np.abs(arm[:, 1:] - arm[0, 1:]).max() < 0.01  # level and straight: along +-x
    assert j[J["head"], 1] > j[J["neck"], 1] > j[J["pelvis"], 1] > j[J["left_knee"], 1] > j[J["left_ankle"], 1]
    assert j[J["left_foot"], 2] > j[J["left_ankle"], 2]  # toes point forward (+z)


def test_segments_follow_smpl_forward_kinematics(body: AnnyBody) -> None:
    with torch.no_grad():
        rest = body(*_zero()).joints[0].numpy().astype(np.float64)
        go, bp = _random_pose(16, seed=1)
        posed = body(go, bp).joints.numpy().astype(np.float64)
    pose = torch.cat([go, bp], 1).numpy()
    worst = 0.0
    for b in range(len(pose)):
        world = _smpl_world_rotations(pose[b])
        for start, end, carrier in SEGMENTS:
            expected = world[J[carrier]] @ _unit(rest[J[end]] - rest[J[start]])
            got = _unit(posed[b, J[end]] - posed[b, J[start]])
            worst = max(worst, np.degrees(np.arccos(np.clip(expected @ got, -1, 1))))
    assert worst < 1.0, f"max segment direction error {worst:.3f} deg"


def test_batch_invariance(body: AnnyBody) -> None:
    go, bp = _random_pose(8, seed=2)
    shape = torch.rand(8, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = body(go, bp, shape)
        for batch in range(1, 9):
            part = body(go[:batch], bp[:batch], shape[:batch])
            torch.testing.assert_close(part.vertices, full.vertices[:batch], atol=2e-6, rtol=0)
        single = body(go[5:6], bp[5:6], shape[5:6])
    torch.testing.assert_close(single.vertices[0], full.vertices[5], atol=2e-6, rtol=0)
    torch.testing.assert_close(single.joints[0], full.joints[5], atol=2e-6, rtol=0)


def test_root_align_and_translation(body: AnnyBody) -> None:
    go, bp = _random_pose(3, seed=4)
    transl = torch.tensor([[0.1, -0.2, 3.0], [0.0, 0.0, 5.0], [-1.0, 0.5, 2.0]])
    with torch.no_grad():
        aligned = body(go, bp)
        moved = body(go, bp, transl=transl)
        raw = body(go, bp, root_align=False)
    mid = 0.5 * (aligned.joints[:, J["left_hip"]] + aligned.joints[:, J["right_hip"]])
    torch.testing.assert_close(mid, torch.zeros(3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(moved.vertices, aligned.vertices + transl[:, None], atol=1e-5, rtol=0)
    torch.testing.assert_close(raw.joints[:, 0], body.pelvis_offset.expand(3, 3), atol=1e-6, rtol=0)


def test_the_head_is_scaled_to_real_proportions_and_nothing_else_moves(body: AnnyBody) -> None:
    """The app's Anny has a head HEAD_SCALE times Anny's own (real people's faces are bigger beside their limbs):
    a vertex only the head carries is that much farther from the head joint, in any pose; a vertex the head does
    not carry, and every joint, are where Anny puts them."""
    own = AnnyBody.from_file(ASSETS_DIR / f"anny_{body.topology}.npz", head_scale=1.0, crown_raise=1.0)
    assert body.head_scale == pytest.approx(HEAD_SCALE) and HEAD_SCALE > 1.0
    body = AnnyBody.from_file(ASSETS_DIR / f"anny_{body.topology}.npz", crown_raise=1.0)  # the crown: next test
    weight = body.head_weight.numpy()
    head, rest = weight > 0.999, weight < 1e-6
    assert head.sum() > 0.1 * len(weight) and rest.sum() > 0.5 * len(weight)
    for orient, pose in (_zero(), _random_pose(1, 5)):
        with torch.no_grad():
            a, b = body(orient, pose), own(orient, pose)
        torch.testing.assert_close(a.joints, b.joints)
        np.testing.assert_allclose(a.vertices[0, rest].numpy(), b.vertices[0, rest].numpy(), atol=1e-6)
        pivot = a.joints[0, J["head"]].numpy()
        ratio = np.linalg.norm(a.vertices[0, head].numpy() - pivot, axis=1) / np.maximum(
            np.linalg.norm(b.vertices[0, head].numpy() - pivot, axis=1), 1e-9)
        far = np.linalg.norm(b.vertices[0, head].numpy() - pivot, axis=1) > 0.03
        np.testing.assert_allclose(ratio[far], HEAD_SCALE, rtol=2e-3)


def test_the_crown_is_raised_for_hair_and_the_face_stays(body: AnnyBody) -> None:
    """The app's Anny has the top of its head stretched upwards by a layer of hair (CROWN_RAISE): the crown is
    2-4 cm higher, every moved vertex moved straight up, and the face points the camera fit uses, the joints and
    everything below the head are where the head-scaled Anny puts them."""
    bald = AnnyBody.from_file(ASSETS_DIR / f"anny_{body.topology}.npz", crown_raise=1.0)
    assert body.crown_raise == pytest.approx(CROWN_RAISE) and CROWN_RAISE > 1.0
    with torch.no_grad():
        a, b = body(*_zero()), bald(*_zero())
    va, vb = a.vertices[0].numpy(), b.vertices[0].numpy()
    torch.testing.assert_close(a.joints, b.joints)
    assert 0.02 < va[:, 1].max() - vb[:, 1].max() < 0.04
    np.testing.assert_allclose(va[:, [0, 2]], vb[:, [0, 2]], atol=1e-6)
    assert (va[:, 1] >= vb[:, 1] - 1e-6).all()
    face = pick_landmark_vertices(vb, b.joints[0].numpy())[list(FACE_LANDMARKS)]
    np.testing.assert_allclose(va[face], vb[face], atol=1e-6)
    moved = np.abs(va[:, 1] - vb[:, 1]) > 1e-6
    assert moved.any() and (body.head_weight.numpy()[moved] > 0.5).all()
    with torch.no_grad():
        posed_a, posed_b = body(*_random_pose(1, 7)), bald(*_random_pose(1, 7))
    torch.testing.assert_close(posed_a.joints, posed_b.joints)
    np.testing.assert_allclose(posed_a.vertices[0, ~moved].numpy(), posed_b.vertices[0, ~moved].numpy(), atol=1e-5)


def test_phenotypes_change_shape(body: AnnyBody) -> None:
    shape = body.default_shape().repeat(3, 1)
    shape[:, body.phenotype_labels.index("height")] = torch.tensor([0.0, 0.5, 1.0])
    with torch.no_grad():
        verts = body(*_zero(3), shape=shape).vertices
        default = body(*_zero())
    heights = (verts[..., 1].max(1).values - verts[..., 1].min(1).values).tolist()
    assert heights[0] < heights[1] < heights[2], heights
    assert 1.4 < heights[1] < 2.0
    shape[:, body.phenotype_labels.index("weight")] = 1.0
    with torch.no_grad():
        heavy = body(*_zero(3), shape=shape).vertices
    assert (heavy - verts).abs().max() > 0.01
    torch.testing.assert_close(body(*_zero(), shape=None).vertices, default.vertices)


def test_zero_rotation_is_finite_with_finite_gradient(body: AnnyBody) -> None:
    go, bp = torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 63, requires_grad=True)  # 63: hands padded
    out = body(go, bp)
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.joints).all()
    out.vertices.sum().backward()
    assert torch.isfinite(go.grad).all() and torch.isfinite(bp.grad).all()


def test_bad_inputs_raise_config_error(body: AnnyBody) -> None:
    with pytest.raises(ConfigError, match="body_pose"):
        body(torch.zeros(1, 3), torch.zeros(1, 50))
    with pytest.raises(ConfigError, match="shape"):
        body(*_zero(), shape=torch.zeros(1, 10))
    with pytest.raises(ConfigError, match="unknown body kind"):
        create_body_model("smplx")
    with pytest.raises(ConfigError, match="smpl_path"):
        create_body_model("anny", smpl_path="/nowhere")
    with pytest.raises(ModelFileError, match="bake_anny"):
        create_body_model("anny", topology="no_such_topology")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_matches_torch(body: AnnyBody) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")

    class Wrapper(torch.nn.Module):
        def __init__(self, model: AnnyBody) -> None:
            super().__init__()
            self.model = model

        def forward(self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor,
                    transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.model(global_orient, body_pose, shape, transl)
            return out.vertices, out.joints

    names = ["global_orient", "body_pose", "shape", "transl"]
    go, bp = _random_pose(2, seed=5)
    args = (go, bp, body.default_shape().repeat(2, 1), torch.zeros(2, 3))
    buf = io.BytesIO()
    torch.onnx.export(Wrapper(body).eval(), args, buf, dynamo=False, opset_version=17, input_names=names,
                      output_names=["vertices", "joints"], dynamic_axes={n: {0: "batch"} for n in names})
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = onnxruntime.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    go3, bp3 = _random_pose(3, seed=6)
    bp3[0] = 0.0
    go3[0] = 0.0  # exactly zero rotation must not give NaN after export
    shape3 = torch.rand(3, 6, generator=torch.Generator().manual_seed(7))
    transl3 = torch.tensor([[0.0, 0.0, 4.0]]).repeat(3, 1)
    feeds = dict(zip(names, (t.numpy() for t in (go3, bp3, shape3, transl3))))
    verts, joints = sess.run(None, feeds)
    with torch.no_grad():
        ref = body(go3, bp3, shape3, transl3)
    assert np.isfinite(verts).all()
    np.testing.assert_allclose(verts, ref.vertices.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(joints, ref.joints.numpy(), atol=1e-4, rtol=0)
