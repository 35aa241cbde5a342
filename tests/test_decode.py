"""Decoding maps into people, on synthetic maps with known peaks, and the geometry it relies on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engine.decode import DecodeCfg, cam_to_translation, decode_people, detect_centers
from engine.geometry import (
    axis_angle_to_rotmat_np,
    rot6d_to_rotmat,
    rot6d_to_rotmat_np,
    rotmat_to_axis_angle_np,
)
from engine.preprocess import letterbox
from engine.types import Letterbox, People


def to_6d(r: np.ndarray) -> np.ndarray:
    """The official 6D layout: the first two columns as a row-major 3x2 matrix (interleaved)."""
    return r[..., :, :2].reshape(*r.shape[:-2], 6)


def synthetic_maps(m: int = 64):
    rng = np.random.default_rng(0)
    center = np.full((1, m, m), -0.5, np.float32)
    params = rng.normal(size=(82, m, m)).astype(np.float32)
    params[0] = 1.1 ** params[0]
    peaks = {"A": ((20, 10), 0.9), "B": ((21, 12), 0.5), "C": ((40, 40), 0.15), "D": ((5, 50), 0.6)}
    for (x, y), v in peaks.values():
        center[0, y, x] = v
    return center, params, peaks


def test_nms_threshold_and_order():
    center, _, _ = synthetic_maps()
    flat, scores = detect_centers(center, DecodeCfg(threshold=0.2))
    # B lies within the 5x5 window of the stronger A -> suppressed; C is under the threshold
    assert flat.tolist() == [10 * 64 + 20, 50 * 64 + 5]
    assert scores.tolist() == pytest.approx([0.9, 0.6])
    flat, _ = detect_centers(center, DecodeCfg(threshold=0.1))
    assert 40 * 64 + 40 in flat.tolist() and 12 * 64 + 21 not in flat.tolist()
    flat, _ = detect_centers(center, DecodeCfg(threshold=0.1, max_people=1))
    assert flat.tolist() == [10 * 64 + 20]


def test_peak_outside_window_is_kept():
    center = np.zeros((1, 64, 64), np.float32)
    center[0, 10, 10], center[0, 12, 12] = 0.9, 0.8  # 2 cells apart: inside the 5x5 window -> suppressed
    center[0, 30, 10], center[0, 30, 13] = 0.9, 0.8  # 3 cells apart: outside it -> both kept
    flat, _ = detect_centers(center, DecodeCfg(threshold=0.2))
    assert sorted(flat.tolist()) == sorted([10 * 64 + 10, 30 * 64 + 10, 30 * 64 + 13])


def test_decode_gathers_parameters_at_centres():
    center, params, _ = synthetic_maps()
    rots = Rotation.from_rotvec([[0.3, -1.2, 0.5], [2.9, 0.1, -0.4]]).as_matrix()
    for (x, y), r in zip([(20, 10), (5, 50)], rots):
        params[3:9, y, x] = to_6d(r) * 2.5  # unnormalised 6D must still decode to the same rotation
    people = decode_people(center, params, input_size=512, cfg=DecodeCfg(0.2))
    assert len(people) == 2
    assert people.center_preds.tolist() == [[160.0, 80.0], [40.0, 400.0]]  # 8 px per cell, (x, y)
    np.testing.assert_allclose(people.cam, params[0:3, [10, 50], [20, 5]].T, rtol=1e-6)
    np.testing.assert_allclose(people.body_pose[:, :63], params[9:72, [10, 50], [20, 5]].T, rtol=1e-6)
    assert np.all(people.body_pose[:, 63:] == 0)
    np.testing.assert_allclose(people.betas, params[72:82, [10, 50], [20, 5]].T, rtol=1e-6)
    np.testing.assert_allclose(people.global_orient, [[0.3, -1.2, 0.5], [2.9, 0.1, -0.4]], atol=1e-5)
    assert people.smpl_thetas.shape == (2, 72)
    assert people.track_ids.tolist() == [-1, -1]
    s, tx, ty = people.cam.T
    np.testing.assert_allclose(people.cam_trans, np.stack([2 * tx / s, 2 * ty / s, 2 / s], 1), rtol=1e-5)


def test_no_people_is_an_empty_result():
    people = decode_people(np.zeros((1, 32, 32), np.float32), np.zeros((82, 32, 32), np.float32), 256)
    assert len(people) == 0 and people.smpl_thetas.shape == (0, 72)


def test_6d_layout_is_interleaved():
    rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    v = np.array([0.0, -1.0, 1.0, 0.0, 0.0, 0.0])  # rows of the first two columns: (0,-1), (1,0), (0,0)
    np.testing.assert_allclose(rot6d_to_rotmat_np(v), rz, atol=1e-12)
    assert not np.allclose(rot6d_to_rotmat_np(np.array([0.0, 1.0, 0.0, -1.0, 0.0, 0.0])), rz)
    import torch
    np.testing.assert_allclose(rot6d_to_rotmat(torch.tensor(v)).numpy(), rz, atol=1e-7)


@pytest.mark.parametrize("angle", [0.0, 1e-7, 0.5, 2.0, np.pi - 1e-6, np.pi])
def test_axis_angle_roundtrip(angle):
    axis = np.array([0.2, -0.7, 0.4])
    aa = axis / np.linalg.norm(axis) * angle
    r = axis_angle_to_rotmat_np(aa)
    np.testing.assert_allclose(r, Rotation.from_rotvec(aa).as_matrix(), atol=1e-9)
    back = rotmat_to_axis_angle_np(r)
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), r, atol=1e-6)
    assert np.linalg.norm(back) <= np.pi + 1e-9


def test_cam_translation_formula():
    np.testing.assert_allclose(cam_to_translation(np.array([[0.5, 0.1, -0.2]], np.float32)), [[0.4, -0.8, 4.0]],
                               rtol=1e-6)


def test_letterbox_pads_centred_and_maps_back():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:110, 300:310] = 255  # a white square
    image, box = letterbox(frame, 512)
    assert image.shape == (3, 512, 512) and image.dtype == np.float32
    assert (box.padded_side, box.pad_top, box.pad_left) == (640, 80, 0)
    # the square's centre in the input, then back to the original frame
    ys, xs = np.nonzero(image[0] > 128)
    centre_in = np.array([[xs.mean(), ys.mean()]])
    np.testing.assert_allclose(box.input_to_original(centre_in), [[304.5, 104.5]], atol=1.0)
    # normalised coordinates: (-1, -1) is the padded square's top-left corner
    np.testing.assert_allclose(box.norm_to_original(np.array([[-1.0, -1.0], [1.0, 1.0]])), [[0, -80], [640, 560]])
    pts = np.array([[12.5, 300.0], [640.0, 0.0]])
    np.testing.assert_allclose(box.norm_to_original(box.original_to_norm(pts)), pts, atol=1e-4)
    assert Letterbox.for_frame(481, 640, 256).pad_top == 79  # odd pixel goes to the bottom


def test_people_validates_shapes():
    with pytest.raises(ValueError, match="body_pose"):
        People(center_preds=np.zeros((1, 2)), center_confs=np.zeros(1), cam=np.zeros((1, 3)),
               global_orient=np.zeros((1, 3)), body_pose=np.zeros((1, 63)), betas=np.zeros((1, 10)),
               cam_trans=np.zeros((1, 3)), track_ids=np.zeros(1, np.int64))
