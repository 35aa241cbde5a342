"""BodyFitter round trips: pose a body, synthesise BlazePose-like landmarks from it, fit, compare joints."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.body import create_body_model
from engine.bodyfit import (
    FACE_LANDMARKS,
    RELAXED_POSE,
    BodyFitter,
    fit_camera,
    landmarks_from_body,
    landmarks_to_smpl_joints,
    matrix_to_axis_angle,
)
from engine.geometry import axis_angle_to_rotmat_np
from engine.postprocess import project
from train.poses import sample_pose

sys.path.insert(0, str(Path(__file__).parent))
import synthetic_smpl

FLIP = np.array([np.pi, 0.0, 0.0])  # SMPL-style networks' turn from body to camera axes
KINDS = ("standing", "walking", "arms_raised", "bending", "crouching", "sitting")


@pytest.fixture(scope="module")
def anny_fitter() -> BodyFitter:
    return BodyFitter(create_body_model("anny"))


def _pose(body: torch.nn.Module, global_orient: np.ndarray, body_pose: np.ndarray,
          betas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    shape = None if betas is None else torch.tensor(betas, dtype=torch.float32)
    with torch.no_grad():
        out = body(torch.tensor(global_orient, dtype=torch.float32), torch.tensor(body_pose, dtype=torch.float32),
                   shape)
    return out.vertices.double().numpy(), out.joints[:, :24].double().numpy()


def _poses(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    body_pose = np.stack([sample_pose(rng, kind).body_pose for _ in range(n)]).astype(np.float64)
    return np.tile(FLIP, (n, 1)), body_pose


def _round_trip(fitter: BodyFitter, kind: str, noise: float, n: int = 8) -> np.ndarray:
    global_orient, body_pose = _poses(kind, n, seed=KINDS.index(kind))
    verts, joints = _pose(fitter.body, global_orient, body_pose)
    world = landmarks_from_body(verts, joints, fitter.vertex_ids, fitter.joint_map)
    world += np.random.default_rng(7).normal(0.0, noise, world.shape)
    result = fitter.fit(world, np.ones((n, 33)))
    assert result.body_pose.shape == (n, 69) and result.global_orient.shape == (n, 3)
    assert np.all(np.isfinite(result.body_pose)) and result.betas.shape == (n, 10) and not result.betas.any()
    return np.linalg.norm(result.joints - joints, axis=-1)  # [n, 24], both root-aligned


def test_rest_pose_is_exact(anny_fitter: BodyFitter) -> None:
    verts, joints = _pose(anny_fitter.body, FLIP[None], np.zeros((1, 69)))
    world = landmarks_from_body(verts, joints, anny_fitter.vertex_ids, anny_fitter.joint_map)
    result = anny_fitter.fit(world, np.ones((1, 33)))
    np.testing.assert_allclose(result.joints[0], joints[0], atol=2e-3)
    assert np.abs(result.body_pose).max() < 1e-3
    assert abs(result.scale[0] - 1.0) < 1e-3 and result.mean_error[0] < 2e-3


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_round_trip_joint_error(anny_fitter: BodyFitter, noise: float) -> None:
    errors = {kind: _round_trip(anny_fitter, kind, noise) for kind in KINDS}
    for kind, err in errors.items():
        print(f"{kind:12s} noise {noise * 100:.0f} cm: mean {err.mean() * 1000:.1f} mm, max {err.max() * 1000:.1f} mm")
    overall = np.mean([err.mean() for err in errors.values()])
    assert overall <= 0.030
    for kind, err in errors.items():
        # Bent-over spines are only observed through hips and shoulders: the spine joints themselves are a guess.
        assert err.mean() <= (0.040 if kind == "bending" else 0.030), kind


def test_turned_round_root(anny_fitter: BodyFitter) -> None:
    n = 6
    _, body_pose = _poses("walking", n, seed=11)
    yaw = np.radians(np.linspace(-180.0, 150.0, n))
    turns = np.stack([np.zeros(n), yaw, np.zeros(n)], 1)
    root = axis_angle_to_rotmat_np(FLIP)[None] @ axis_angle_to_rotmat_np(turns)
    global_orient = matrix_to_axis_angle(root)
    verts, joints = _pose(anny_fitter.body, global_orient, body_pose)
    world = landmarks_from_body(verts, joints, anny_fitter.vertex_ids, anny_fitter.joint_map)
    result = anny_fitter.fit(world, np.ones((n, 33)))
    fitted = axis_angle_to_rotmat_np(result.global_orient.astype(np.float64))
    rel = np.swapaxes(fitted, -1, -2) @ root
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)))
    assert np.all(angle < 15.0), angle
    assert np.linalg.norm(result.joints - joints, axis=-1).mean() < 0.030


def test_low_visibility_limbs_stay_neutral(anny_fitter: BodyFitter) -> None:
    global_orient, body_pose = _poses("arms_raised", 2, seed=3)
    verts, joints = _pose(anny_fitter.body, global_orient, body_pose)
    world = landmarks_from_body(verts, joints, anny_fitter.vertex_ids, anny_fitter.joint_map)
    vis = np.ones((2, 33))
    vis[0, [13, 15, 17, 19, 21]] = 0.1  # left elbow, wrist, hand points hidden
    world[0, [13, 15, 17, 19, 21]] += np.random.default_rng(0).normal(0.0, 0.3, (5, 3))  # and garbage
    result = anny_fitter.fit(world, vis)
    pose = result.body_pose.reshape(2, 23, 3)
    neutral = RELAXED_POSE.reshape(23, 3)
    for joint in (16, 18, 20):  # left shoulder (aims at the elbow), elbow, wrist: the neutral (relaxed) pose
        np.testing.assert_allclose(pose[0, joint - 1], neutral[joint - 1], atol=1e-5)
    assert np.abs(pose[1, 15] - neutral[15]).max() > 0.1  # the visible person's arm is posed
    assert result.confidence[0, 18] < 0.5 and result.confidence[1, 18] == 1.0
    # neutral_pose stays overridable: zeros give the rest (T-pose) arm
    t_pose = BodyFitter(anny_fitter.body, neutral_pose=np.zeros(69)).fit(world, vis).body_pose.reshape(2, 23, 3)
    assert np.abs(t_pose[0, [15, 17, 19]]).max() < 1e-6


@pytest.mark.parametrize("hidden", ["arm", "arm_and_shoulder"])
def test_unseen_arm_hangs_down(anny_fitter: BodyFitter, hidden: str) -> None:
    """An occluded arm (all its landmarks at visibility 0) hangs at the side instead of sticking out."""
    n = 4
    global_orient, body_pose = _poses("arms_raised", n, seed=8)
    verts, joints = _pose(anny_fitter.body, global_orient, body_pose)
    world = landmarks_from_body(verts, joints, anny_fitter.vertex_ids, anny_fitter.joint_map)
    vis = np.ones((n, 33))
    arms = {"left": [13, 15, 17, 19, 21], "right": [14, 16, 18, 20, 22]}
    if hidden == "arm_and_shoulder":
        arms = {"left": [11, *arms["left"]], "right": [12, *arms["right"]]}
    vis[: n // 2, arms["left"]] = 0.0
    vis[n // 2:, arms["right"]] = 0.0
    result = anny_fitter.fit(world, vis)
    root = axis_angle_to_rotmat_np(result.global_orient.astype(np.float64))
    body = np.einsum("nba,nkb->nka", root, result.joints.astype(np.float64))  # body frame: x left, y up
    shoulder = np.array([16] * (n // 2) + [17] * (n - n // 2))
    wrist = shoulder + 4
    rows = np.arange(n)
    drop = body[rows, shoulder, 1] - body[rows, wrist, 1]
    sideways = np.abs(body[rows, wrist, 0]) - np.abs(body[rows, shoulder, 0])
    print(f"wrist below shoulder {drop * 100} cm, outside it {sideways * 100} cm")
    assert np.all(drop > 0.3)  # about an arm's length below the shoulder (hanging), not level with it (T-pose)
    assert np.all(sideways < 0.3)  # a T-pose arm would be ~50 cm out


def test_empty_and_mapping_shapes(anny_fitter: BodyFitter) -> None:
    empty = anny_fitter.fit(np.zeros((0, 33, 3)), np.zeros((0, 33)))
    assert empty.body_pose.shape == (0, 69) and empty.joints.shape == (0, 24, 3)
    joints, conf = landmarks_to_smpl_joints(np.random.default_rng(0).normal(size=(3, 33, 3)), np.ones((3, 33)))
    assert joints.shape == (3, 24, 3) and conf.shape == (3, 24)


def test_smpl_betas_from_bone_lengths(tmp_path: Path) -> None:
    pytest.importorskip("smplx")
    synthetic_smpl.write_npz(tmp_path / "SMPL_NEUTRAL.npz", synthetic_smpl.make_synthetic_smpl(seed=0))
    body = create_body_model("smpl", smpl_path=tmp_path)
    fitter = BodyFitter(body, shape_reg=1e-7)
    rng = np.random.default_rng(5)
    n = 4
    betas = rng.uniform(-2.0, 2.0, (n, 10))
    global_orient, body_pose = _poses("walking", n, seed=5)
    verts, joints = _pose(body, global_orient, body_pose, betas)
    world = landmarks_from_body(verts, joints, fitter.vertex_ids, fitter.joint_map)
    result = fitter.fit(world, np.ones((n, 33)))
    # The synthetic model's betas move joints by only ~2 mm each, so the observed lengths pin down the bone
    # lengths (what matters for the fit) much better than the individual betas (9 lengths, 10 betas).
    op = fitter.measure_op[:9]  # the pose-invariant lengths
    true_len = np.linalg.norm(np.einsum("kj,njc->nkc", op, joints), axis=-1)
    fit_len = np.linalg.norm(np.einsum("kj,njc->nkc", op, result.joints), axis=-1)
    zero_len = np.linalg.norm(op @ fitter.rest_joints, axis=-1)
    print(f"length error {np.abs(fit_len - true_len).max() * 1000:.2f} mm, "
          f"beta error {np.abs(result.betas - betas).mean():.2f}")
    assert np.abs(fit_len - true_len).max() < 0.002
    assert np.abs(fit_len - true_len).mean() < 0.5 * np.abs(zero_len - true_len).mean()
    assert np.abs(result.betas - betas).mean() < np.abs(betas).mean()
    # A lumpy sphere, not a human: its face/hand "landmarks" are poor, so the pose bound is loose here.
    assert np.linalg.norm(result.joints - joints, axis=-1).mean() < 0.060
    np.testing.assert_allclose(result.scale, 1.0, atol=0.03)


def test_fit_camera_recovers_known_camera() -> None:
    rng = np.random.default_rng(0)
    joints = rng.normal(0.0, 0.4, (3, 24, 3))
    cam = np.array([[0.8, 0.1, -0.2], [1.7, -0.5, 0.3], [0.3, 0.0, 0.0]])
    points = project(joints, cam)
    weights = np.ones((3, 24))
    points[1, :5] += 10.0  # outliers with zero weight are ignored
    weights[1, :5] = 0.0
    weights[2, 1:] = 0.0  # a single usable point: no camera
    got = fit_camera(joints, points, weights)
    np.testing.assert_allclose(got[:2], cam[:2], atol=1e-9)
    assert np.isnan(got[2]).all()


def test_fit_camera_keeps_the_size_of_a_pose_that_differs_from_the_picture() -> None:
    """A fitted pose never matches the picture exactly (an arm raised in the picture, lowered in the fit). Least
    squares would shrink the body by the two shapes' correlation; the fitted camera keeps the observed points'
    spread, so the drawn body is as big as the person, and its centroid where theirs is."""
    rng = np.random.default_rng(1)
    joints = rng.normal(0.0, 0.4, (1, 12, 3))
    cam = np.array([[0.9, 0.05, -0.1]])
    points = project(joints, cam)
    posed = joints.copy()
    posed[0, :4, :2] = posed[0, :4, :2] @ np.array([[0.0, -1.0], [1.0, 0.0]])  # four joints swung by 90 degrees
    weights = np.ones((1, 12))
    got = fit_camera(posed, points, weights)[0]
    drawn = project(posed, got[None])[0]
    spread = lambda p: np.sqrt(((p - p.mean(0)) ** 2).sum(-1).mean())  # noqa: E731
    np.testing.assert_allclose(spread(drawn), spread(points[0]), rtol=1e-9)
    np.testing.assert_allclose(drawn.mean(0), points[0].mean(0), atol=1e-9)
    x = posed[0, :, :2] - posed[0, :, :2].mean(0)
    least_squares = (x * (points[0] - points[0].mean(0))).sum() / (x * x).sum()
    assert least_squares < 0.95 * got[0]  # what least squares would have drawn: a smaller body
    mirrored = fit_camera(joints * np.array([-1.0, -1.0, 1.0]), points, weights)[0]  # anti-correlated shapes
    assert mirrored[0] < 0


def test_skeleton_joints_match_the_body_joints(anny_fitter: BodyFitter) -> None:
    """The fast path (rotations chained down the rest skeleton, no body forward) lands within a few mm of the body
    model's own joints, so the camera fitted on it places the rendered body where the landmarks are."""
    global_orient, body_pose = _poses("walking", 6, seed=3)
    verts, joints = _pose(anny_fitter.body, global_orient, body_pose)
    world = landmarks_from_body(verts, joints, anny_fitter.vertex_ids, anny_fitter.joint_map)
    exact = anny_fitter.fit(world, np.ones((6, 33)))
    fast = anny_fitter.fit(world, np.ones((6, 33)), body_joints=False)
    np.testing.assert_array_equal(fast.body_pose, exact.body_pose)
    err = np.linalg.norm(fast.joints - exact.joints, axis=-1)
    assert err.mean() < 0.01 and err.max() < 0.03, (err.mean(), err.max())


def test_the_fitted_face_points_are_where_the_posed_body_has_its_face(anny_fitter: BodyFitter) -> None:
    """``FitResult.face`` (what places a chest-up person's head) is the posed body's own nose, eyes and ears: on
    bodies with turned and tilted heads it lands within about 2 cm of the mesh's face vertices (Anny's neck
    bones share the head's turn); the rest face, not turned with the head, lands 16 cm off."""
    global_orient, body_pose = _poses("walking", 6, seed=5)
    rng = np.random.default_rng(11)
    body_pose = body_pose.copy()
    body_pose[:, 14 * 3:15 * 3] = rng.uniform(-0.6, 0.6, (6, 3))  # head (SMPL joint 15): yaw, pitch, roll
    verts, joints = _pose(anny_fitter.body, global_orient, body_pose)
    world = landmarks_from_body(verts, joints, anny_fitter.vertex_ids, anny_fitter.joint_map)
    truth = landmarks_from_body(verts, joints, anny_fitter.vertex_ids, anny_fitter.joint_map, centre=False)
    truth = truth[:, list(FACE_LANDMARKS)] - 0.5 * (joints[:, 1:2] + joints[:, 2:3])  # the joints' mid-hip frame
    for body_joints in (True, False):
        result = anny_fitter.fit(world, np.ones((6, 33)), body_joints=body_joints)
        assert result.face.shape == (6, len(FACE_LANDMARKS), 3)
        err = np.linalg.norm(result.face - truth, axis=-1)
        assert err.mean() < 0.025 and err.max() < 0.04, (body_joints, err.mean(), err.max())
    unturned = result.joints[:, 15:16] + (anny_fitter.rest_landmarks[list(FACE_LANDMARKS)]
                                          - anny_fitter.rest_joints[15])
    assert np.linalg.norm(unturned - truth, axis=-1).mean() > 0.08
