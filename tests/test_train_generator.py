"""Synthetic data generator: determinism, depth-correct visibility, GT maps, one training step end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.dataset import make_sample
from train.poses import CATEGORIES, LIMITS, sample_euler, sample_pose
from train.scene import random_person, render_scene
from train.targets import build_targets, center_heatmap, joint_heatmaps, to_cells


def test_generator_is_deterministic_from_seed() -> None:
    a_img, a_ids, a = make_sample("train", 0, 7, 128, 0.5)
    b_img, b_ids, b = make_sample("train", 0, 7, 128, 0.5)
    c_img, _, _ = make_sample("train", 0, 8, 128, 0.5)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_ids, b_ids)
    assert np.array_equal(a.kp2d, b.kp2d) and np.array_equal(a.pose, b.pose)
    assert not np.array_equal(a_img, c_img)


def test_pose_sampler_respects_limits() -> None:
    from scipy.spatial.transform import Rotation

    for cat in CATEGORIES:
        for seed in range(20):
            e, got = sample_euler(np.random.default_rng(seed), cat)
            assert got == cat
            assert np.all(e[1:] >= LIMITS[1:, 0::2]) and np.all(e[1:] <= LIMITS[1:, 1::2]), cat
            rv = sample_pose(np.random.default_rng(seed), cat).body_pose.reshape(23, 3)
            assert np.allclose(Rotation.from_rotvec(rv).as_matrix(),
                               Rotation.from_euler("XYZ", e[1:], degrees=True).as_matrix(), atol=1e-5)


def _two_people(front_scale: float) -> tuple:
    rng = np.random.default_rng(3)
    back = random_person(rng, np.array([0.7, 0.0, 0.0]), category="standing", yaw=0.0)
    front = random_person(rng, np.array([front_scale, 0.02, 0.0]), category="standing", yaw=0.0)
    gt = render_scene([back, front], 128, 128, np.zeros((128, 128, 3), np.uint8), rng, photometric_aug=False)
    return gt


def test_joint_hidden_behind_another_person_is_not_visible() -> None:
    gt = _two_people(0.9)  # bigger scale = nearer: the second person stands in front of the first
    assert len(gt.cam) == 2
    back_vis, front_vis = gt.vis[0], gt.vis[1]
    assert not back_vis[0] and not back_vis[3]  # pelvis / spine of the person behind are covered
    assert front_vis[[0, 3, 6, 9, 12]].all()  # the front person's torso is visible
    assert gt.inimg[0, 0]  # hidden, yet inside the frame
    assert gt.occluded[0] and not gt.occluded[1]
    assert (gt.ids == 2).sum() > (gt.ids == 1).sum()


def test_face_and_hair_tell_front_from_back() -> None:
    """The head shows skin from the front and hair from behind, so orientation is not ambiguous by 180 degrees."""
    rng = np.random.default_rng(5)
    spec = random_person(rng, np.array([0.9, 0.0, 0.1]), category="standing", yaw=0.0)
    spec.part_colors[7] = (200, 200, 200)  # face/skin: light grey
    spec.part_colors[8] = (0, 0, 255)  # hair: pure red (BGR)
    bg = np.zeros((256, 256, 3), np.uint8)
    fractions = []
    for yaw in (0.0, np.pi):  # facing the camera, then facing away
        spec.world_orient = np.array([0.0, yaw, 0.0], np.float32)
        g = render_scene([spec], 256, 256, bg, np.random.default_rng(0), photometric_aug=False)
        x, y = np.round((g.kp2d[0, 15] + 1) * 128).astype(int)  # head joint
        patch = g.image[max(y - 12, 0):y + 4, x - 8:x + 8].reshape(-1, 3).astype(int)
        hairish = (patch[:, 2] > 2 * patch[:, 1] + 10) & (patch[:, 2] > 30)
        fractions.append(hairish[patch.sum(1) > 0].mean())
    assert fractions[0] < 0.35 and fractions[1] > 0.8, fractions


def test_center_heatmap_peak_and_radius() -> None:
    m = 32
    c = np.array([[0.0, 0.0]], np.float32)
    box = np.array([[-0.5, -1.0, 0.5, 1.0]], np.float32)  # w = 1, h = 2: r = int(|(1, 0.5)| * 2 + 1) = 3
    hm = center_heatmap(c, box, m)
    assert hm[16, 16] == 1.0 and hm.max() == 1.0
    assert hm[16, 16 + 3] > 0 and hm[16, 16 + 4] == 0


def test_joint_heatmaps_only_for_visible_joints() -> None:
    kp = np.zeros((1, 24, 2), np.float32)
    kp[0, :, 0] = np.linspace(-0.9, 0.9, 24)
    vis = np.zeros((1, 24), bool)
    vis[0, 5] = True
    hm = joint_heatmaps(kp, vis, 32)
    cx, cy = to_cells(kp[0, 5], 32)
    assert hm[5, cy, cx] == pytest.approx(1.0)
    assert hm[5, cy, cx + 1] == pytest.approx(np.exp(-0.5))
    assert hm[np.arange(24) != 5].max() == 0


def test_one_training_step_runs() -> None:
    from engine.models import build_model
    from train.bodies import get_body
    from train.dataset import GT_KEYS, P_MAX
    from train.losses import compute_losses
    from train.poses import GMMPrior

    torch.manual_seed(0)
    samples = [make_sample("train", 0, i, 256, 0.5) for i in (1, 2)]
    batch = {}
    for k in GT_KEYS:
        first = getattr(samples[0][2], k)
        arr = np.zeros((2, P_MAX, *first.shape[1:]), first.dtype)
        for i, (_, _, g) in enumerate(samples):
            arr[i, :len(getattr(g, k))] = getattr(g, k)
        batch[k] = arr
    batch["n"] = np.array([len(s[2].cam) for s in samples])
    model = build_model("mobilenetv3").train()
    imgs = torch.from_numpy(np.stack([s[0][:, :, ::-1] for s in samples]).astype(np.float32)).permute(0, 3, 1, 2)
    out = model(imgs, return_id_maps=True)
    d = 63
    gmm = GMMPrior(np.ones(1, np.float32), np.zeros((1, d), np.float32), np.eye(d, dtype=np.float32)[None],
                   np.zeros(1, np.float32))
    gt = {k: torch.as_tensor(batch[k]) for k in ("pose", "shape", "j3d", "kp2d", "inimg")}
    lo = compute_losses(out, build_targets(batch, 32), gt, get_body(), gmm, (model.ct_projector, model.jt_projector))
    assert set(lo.terms) == {"CenterMap", "JointMap", "CenterID", "JointID", "Pose", "Shape", "Prior", "MPJPE",
                             "PAMPJPE", "P_KP2D"}
    lo.total.backward()
    assert model.ct_projector[0].weight.grad is not None


def test_app_decodes_generator_ground_truth_onto_the_rendered_joints() -> None:
    """Encode one rendered person's GT into network-shaped maps; the app's decode + body + projection must land
    on the generator's 2D joints in the original 640x480 frame (same body, camera, axes and root alignment)."""
    from scipy.spatial.transform import Rotation

    from engine.decode import decode_people
    from engine.postprocess import people_to_meshes
    from engine.types import Letterbox
    from train.bodies import get_body

    body = get_body()
    rng = np.random.default_rng(5)
    spec = random_person(rng, np.array([0.8, 0.1, -0.05]), category="arms_raised")
    spec.shape = body.default_shape().numpy()  # the app poses Anny with its default shape
    h, w, m = 480, 640, 32
    gt = render_scene([spec], h, w, np.zeros((h, w, 3), np.uint8), rng, photometric_aug=False)
    cx, cy = to_cells(gt.center[0], m)
    cmap = np.zeros((1, m, m), np.float32)
    cmap[0, cy, cx] = 1.0
    params = np.zeros((82, m, m), np.float32)
    rot = Rotation.from_rotvec(gt.pose[0, :3]).as_matrix()
    params[:, cy, cx] = np.concatenate([gt.cam[0], rot[:, :2].reshape(-1), gt.pose[0, 3:66], np.zeros(10)])
    people = decode_people(cmap, params, 256)
    assert len(people) == 1
    meshes = people_to_meshes(people, body, Letterbox.for_frame(h, w, 256))
    side, top, left = 640, 80, 0
    expected = (gt.kp2d[0] + 1) * side / 2 - np.array([left, top])
    assert np.abs(meshes.pj2d_org[0, :24] - expected).max() < 0.05  # pixels
