"""Preprocessing and camera conversion of the 2D-pose-guided models (3DCrowdNet, JOTR).

Expected numbers are worked out by hand from the official formulas (pose extent x1.2, corner clip keeping w - 1,
square, x1.25 / x1.1; centre -> (128, 128); crop pixels / 4; score > threshold and inside [0, 64)).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.errors import ConfigError
from engine.poseguided.camera import (
    K_VALUE,
    cam_param_to_translation,
    crop_to_original,
    crop_translation,
    default_focal,
    grid_depth_to_metres,
    joint_img_to_grid,
    official_render_translation,
)
from engine.poseguided.joints import (
    BLAZEPOSE_TO_COCO17,
    COCO17_JOINTS,
    COCO19_TO_INPUT,
    INPUT_JOINTS,
    OUTPUT_FROM_INPUT,
    OUTPUT_JOINTS,
    add_pelvis_neck,
    blazepose_to_coco17,
    coco17_from_landmarks,
)
from engine.poseguided.preprocess import box_affine, prepare, process_box
from engine.realfootage.landmarks import Landmarks
from engine.realfootage.roi import Rois

H, W = 480, 640
J = {name: i for i, name in enumerate(COCO17_JOINTS)}


def _frame() -> np.ndarray:
    return np.zeros((H, W, 3), np.uint8)


def _pose_in(x0: float, x1: float, y0: float, y1: float, score: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """A COCO-17 pose whose joints span exactly [x0, x1] x [y0, y1] (pelvis / neck land inside)."""
    rng = np.random.default_rng(0)
    xy = np.stack([rng.uniform(x0, x1, 17), rng.uniform(y0, y1, 17)], axis=1)
    xy[J["Nose"]] = (x0, y0)
    xy[J["R_Ankle"]] = (x1, y1)
    return xy[None].astype(np.float32), np.full((1, 17), score, np.float32)


def _apply(affine: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ affine[:, :2].T.astype(np.float64) + affine[:, 2]


# ---------------------------------------------------------------- joint orders


def test_input_and_output_joint_orders():
    assert len(INPUT_JOINTS) == 30 and len(OUTPUT_JOINTS) == 15
    # COCO-17 then pelvis, neck -> the 30-joint heatmap channels of the official SMPL joint set
    assert COCO19_TO_INPUT == (24, 25, 26, 27, 28, 16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8, 0, 12)
    assert OUTPUT_FROM_INPUT == (0, 1, 2, 4, 5, 7, 8, 12, 29, 16, 17, 18, 19, 20, 21)


def test_blazepose_to_coco17_picks_the_named_landmarks():
    n = 2
    pts = np.zeros((n, 33, 3), np.float32)
    pts[:, :, 0] = np.arange(33)  # x = landmark index
    pts[:, :, 1] = np.arange(33) * 10 + np.arange(n)[:, None]
    pts[:, :, 2] = -7.0  # depth column must be dropped
    vis = np.tile(np.linspace(0, 1, 33, dtype=np.float32), (n, 1))
    xy, sc = blazepose_to_coco17(pts, vis)
    assert xy.shape == (n, 17, 2) and sc.shape == (n, 17)
    # nose, eyes (2, 5), ears (7, 8), shoulders, elbows, wrists, hips, knees, ankles
    assert xy[0, :, 0].tolist() == [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
    np.testing.assert_allclose(xy[1, :, 1], np.array(BLAZEPOSE_TO_COCO17) * 10 + 1)
    np.testing.assert_allclose(sc[0], vis[0, list(BLAZEPOSE_TO_COCO17)])
    with pytest.raises(ValueError):
        blazepose_to_coco17(pts[:, :17], vis[:, :17])


def test_coco17_from_landmarks_uses_frame_pixels_and_visibility():
    n = 1
    image = np.random.default_rng(1).uniform(0, 500, (n, 33, 3)).astype(np.float32)
    vis = np.random.default_rng(2).uniform(0, 1, (n, 33)).astype(np.float32)
    pres = 1 - vis
    rois = Rois(np.zeros((n, 2), np.float32), np.ones(n, np.float32), np.zeros(n, np.float32))
    lm = Landmarks(image, vis, pres, np.zeros_like(image), np.ones(n, np.float32), rois)
    xy, sc = coco17_from_landmarks(lm)
    np.testing.assert_array_equal(xy[0, J["L_Hip"]], image[0, 23, :2])
    np.testing.assert_array_equal(sc[0], vis[0, list(BLAZEPOSE_TO_COCO17)])


def test_pelvis_and_neck_are_midpoints_with_product_scores():
    xy = np.zeros((1, 17, 2), np.float32)
    sc = np.ones((1, 17), np.float32)
    xy[0, J["L_Hip"]], xy[0, J["R_Hip"]] = (10, 20), (30, 40)
    sc[0, J["L_Hip"]], sc[0, J["R_Hip"]] = 0.5, 0.4
    xy[0, J["L_Shoulder"]], xy[0, J["R_Shoulder"]] = (100, 0), (50, 10)
    sc[0, J["L_Shoulder"]], sc[0, J["R_Shoulder"]] = 0.3, 0.2
    xy19, sc19 = add_pelvis_neck(xy, sc)
    np.testing.assert_allclose(xy19[0, 17], (20, 30))
    np.testing.assert_allclose(xy19[0, 18], (75, 5))
    np.testing.assert_allclose(sc19[0, 17:], (0.2, 0.06), rtol=1e-6)
    # in the network input: pelvis is channel 0, neck channel 12, with the product as the score; with the
    # demo's 0.1 threshold the neck (0.06) is masked although both shoulders pass
    crop = prepare(np.zeros((200, 200, 3), np.uint8), xy + 50, sc, "crowdnet")
    assert crop.joints[0, 0, 2] == pytest.approx(0.2) and crop.joints_mask[0, 0, 0] == 1
    assert crop.joints[0, 12, 2] == pytest.approx(0.06) and crop.joints_mask[0, 12, 0] == 0
    assert crop.joints_mask[0, 16, 0] == 1 and crop.joints_mask[0, 17, 0] == 1


# ---------------------------------------------------------------- boxes and affine


def test_box_from_pose_extent_matches_hand_derivation():
    # extent 100..200 x 50..350 -> x1.2: (90, 20, 120, 360) -> keep w-1, h-1: (90, 20, 119, 359)
    # -> square 359 about (149.5, 199.5) -> x1.25 = 448.75 (3DCrowdNet) / x1.1 = 394.9 (JOTR)
    xy, sc = _pose_in(100, 200, 50, 350)
    sc[0, J["L_Wrist"]] = 0.03
    xy[0, J["L_Wrist"]] = (600, 470)  # below both thresholds: must not widen the box
    crowd = prepare(_frame(), xy, sc, "crowdnet")
    jotr = prepare(_frame(), xy, sc, "jotr")
    np.testing.assert_allclose(crowd.boxes[0], (149.5 - 224.375, 199.5 - 224.375, 448.75, 448.75), atol=1e-3)
    np.testing.assert_allclose(jotr.boxes[0], (149.5 - 197.45, 199.5 - 197.45, 394.9, 394.9), atol=1e-3)
    assert crowd.keep[0] and jotr.keep[0]


def test_box_off_the_left_edge_is_shifted_not_cut():
    # extent -150..50 x 100..200 -> (-170, 90, 240, 120) -> corner clipped to 0 keeps 239 wide: (0, 90, 239, 119)
    # -> square 239 about (119.5, 149.5) -> x1.25 = 298.75 -> x = -29.875 (a cut box would centre at -50 + ...)
    xy, sc = _pose_in(-150, 50, 100, 200)
    crop = prepare(_frame(), xy, sc, "crowdnet")
    np.testing.assert_allclose(crop.boxes[0], (119.5 - 149.375, 149.5 - 149.375, 298.75, 298.75), atol=1e-3)
    # so the confident nose at x = -150 falls left of the crop and is masked out, the ankle at x = 50 stays
    nose, ankle = INPUT_JOINTS.index("Nose"), INPUT_JOINTS.index("R_Ankle")
    assert crop.joints[0, nose, 0] < 0 and crop.joints_mask[0, nose, 0] == 0
    assert 0 <= crop.joints[0, ankle, 0] < 64 and crop.joints_mask[0, ankle, 0] == 1


def test_affine_sends_box_to_crop_and_back():
    boxes = np.array([[-74.875, -24.875, 448.75, 448.75], [300.5, 10.25, 123.0, 123.0]], np.float32)
    trans, inv = box_affine(boxes)
    for b, t, ti in zip(boxes.astype(np.float64), trans, inv):
        x, y, w, h = b
        corners = np.array([[x, y], [x + w, y + h], [x + w / 2, y + h / 2]])
        np.testing.assert_allclose(_apply(t, corners), [[0, 0], [256, 256], [128, 128]], atol=2e-3)
        pts = np.random.default_rng(3).uniform(-100, 700, (20, 2))
        np.testing.assert_allclose(_apply(ti, _apply(t, pts)), pts, atol=2e-3)
        # the official construction: three point pairs (centre, centre + half-height down, centre + half-width
        # right) through cv2.getAffineTransform
        c = np.array([x + w / 2, y + h / 2])
        src = np.float32([c, c + np.array([0, h / 2]), c + np.array([w / 2, 0])])
        dst = np.float32([[128, 128], [128, 256], [256, 128]])
        np.testing.assert_allclose(t, cv2.getAffineTransform(src, dst), rtol=1e-5, atol=2e-3)
        np.testing.assert_allclose(ti, cv2.getAffineTransform(dst, src), rtol=1e-5, atol=2e-3)


def test_process_box_strict_rejects_degenerate_boxes():
    boxes, ok = process_box(np.array([[10, 10, 0, 50], [700, 10, 20, 20], [10, 10, 30, 50]], np.float32), W, H, 1.0)
    assert ok.tolist() == [False, False, True]
    np.testing.assert_allclose(boxes[2], (10 + 14.5 - 24.5, 10, 49, 49))  # (10, 10, 29, 49) squared to 49


# ---------------------------------------------------------------- joints, masks, image


@pytest.mark.parametrize("system", ["crowdnet", "jotr"])
def test_joints_are_crop_pixels_over_four_with_scores(system):
    xy, sc = _pose_in(220, 330, 120, 400)
    sc[0] = np.linspace(0.3, 1.0, 17)
    crop = prepare(_frame(), xy, sc, system)
    xy19, sc19 = add_pelvis_neck(xy, sc)
    expected = _apply(crop.trans[0], xy19[0].astype(np.float64)) / 4.0
    idx = list(COCO19_TO_INPUT)
    np.testing.assert_allclose(crop.joints[0, idx, :2], expected, atol=1e-3)
    np.testing.assert_allclose(crop.joints[0, idx, 2], sc19[0], rtol=1e-6)
    unfilled = [i for i in range(30) if i not in idx]
    assert len(unfilled) == 11
    assert not crop.joints[0, unfilled].any() and not crop.joints_mask[0, unfilled].any()
    # every filled joint is confident and inside the crop here
    assert crop.joints_mask[0, idx, 0].all()
    assert crop.joints.shape == (1, 30, 3) and crop.joints_mask.shape == (1, 30, 1)
    assert crop.joints.dtype == np.float32 and crop.joints_mask.dtype == np.float32


def test_mask_thresholds_differ_between_systems():
    xy, sc = _pose_in(220, 330, 120, 400)
    sc[0, J["L_Elbow"]] = 0.08  # between JOTR's 0.05 and the demo's 0.1
    sc[0, J["R_Elbow"]] = 0.1  # equal to the demo threshold: "> thr" fails
    sc[0, J["L_Knee"]] = 0.05  # equal to JOTR's threshold
    le, re, lk = (INPUT_JOINTS.index(n) for n in ("L_Elbow", "R_Elbow", "L_Knee"))
    crowd = prepare(_frame(), xy, sc, "crowdnet")
    jotr = prepare(_frame(), xy, sc, "jotr")
    assert crowd.joints_mask[0, [le, re, lk], 0].tolist() == [0, 0, 0]
    assert jotr.joints_mask[0, [le, re, lk], 0].tolist() == [1, 1, 0]


def test_marker_lands_where_the_affine_says():
    frame = _frame()
    xy, sc = _pose_in(200, 360, 60, 420)
    wrist = xy[0, J["R_Wrist"]]
    # a red (BGR) disc centred on the wrist
    centre = tuple(int(v) for v in np.rint(wrist * 16))  # 4 fractional bits
    cv2.circle(frame, centre, 4 * 16, (0, 0, 255), -1, lineType=cv2.LINE_AA, shift=4)
    crop = prepare(frame, xy, sc, "crowdnet")
    img = crop.img[0]
    assert img.shape == (3, 256, 256) and img.dtype == np.float32
    assert 0.9 < img.max() <= 1.0
    red, blue = img[0], img[2]  # RGB order: the red disc is in channel 0 only
    assert red.sum() > 10 and blue.sum() == 0
    ys, xs = np.mgrid[0:256, 0:256]
    centroid = np.array([(red * xs).sum(), (red * ys).sum()]) / red.sum()
    expected = _apply(crop.trans[0], wrist[None].astype(np.float64))[0]
    # pixel centres: cv2 samples destination pixel (u, v) at trans^-1 (u, v), so the centroid is the mapped point
    np.testing.assert_allclose(centroid, expected, atol=0.25)
    # and the wrist joint sits at that crop pixel / 4
    ri = INPUT_JOINTS.index("R_Wrist")
    np.testing.assert_allclose(crop.joints[0, ri, :2] * 4, expected, atol=1e-3)


def test_border_outside_the_frame_is_black():
    frame = np.full((H, W, 3), 200, np.uint8)
    xy, sc = _pose_in(-150, 50, 100, 200)
    crop = prepare(frame, xy, sc, "jotr")
    left = crop.img[0, :, :, :5]
    assert np.all(left == 0)
    assert np.allclose(crop.img[0, :, 128, 128], 200 / 255)


# ---------------------------------------------------------------- who is kept


def test_demo_filters_and_fallbacks():
    good_xy, good_sc = _pose_in(100, 200, 50, 350)
    dup_xy = good_xy + 5.0  # 5 px away: a repeat of the first person in the demo
    far_xy, _ = _pose_in(400, 520, 60, 400)
    weak_sc = np.zeros((1, 17), np.float32)
    weak_sc[0, :5] = 0.15  # face joints pass both thresholds, but the 19 scores sum to 0.75 < 1 (demo skips)
    blind_sc = np.zeros((1, 17), np.float32)  # nothing to frame the person with
    xy = np.concatenate([good_xy, dup_xy, far_xy, far_xy, far_xy])
    sc = np.concatenate([good_sc, good_sc, good_sc, weak_sc, blind_sc])
    fallback = np.zeros((5, 4), np.float32)
    fallback[4] = (100, 100, 200, 300)
    crowd = prepare(_frame(), xy, sc, "crowdnet", fallback_boxes=fallback)
    jotr = prepare(_frame(), xy, sc, "jotr", fallback_boxes=fallback)
    assert crowd.keep.tolist() == [True, False, True, False, False]
    assert jotr.keep.tolist() == [True, True, True, True, False]
    # the blind person is cropped from its fallback box: (100, 100, 100, 200) -> (100, 100, 99, 199)
    # -> square 199 about (149.5, 199.5) -> x1.25 = 248.75
    np.testing.assert_allclose(crowd.boxes[4], (149.5 - 124.375, 199.5 - 124.375, 248.75, 248.75), atol=1e-3)
    assert not crowd.joints_mask[4].any()
    assert len(crowd) == 5 and crowd.img.shape == (5, 3, 256, 256) and np.isfinite(crowd.trans).all()


def test_no_people_and_bad_arguments():
    crop = prepare(_frame(), np.zeros((0, 17, 2)), np.zeros((0, 17)), "jotr")
    assert crop.img.shape == (0, 3, 256, 256) and crop.joints.shape == (0, 30, 3) and crop.trans_inv.shape == (0, 2, 3)
    with pytest.raises(ConfigError, match="unknown pose-guided system"):
        prepare(_frame(), np.zeros((0, 17, 2)), np.zeros((0, 17)), "hmr")
    with pytest.raises(ValueError):
        prepare(np.zeros((H, W), np.uint8), np.zeros((0, 17, 2)), np.zeros((0, 17)))


# ---------------------------------------------------------------- outputs back to the frame


def test_crop_translation_constants():
    assert K_VALUE == 48.828125  # sqrt(5000 * 5000 * 2.5 * 2.5 / (256 * 256)), exact in binary
    t = crop_translation(np.array([[0.1, -0.2, 0.0], [0.0, 0.0, 50.0]]))
    np.testing.assert_allclose(t, [[0.1, -0.2, 48.828125 / 2], [0, 0, 48.828125]], rtol=1e-9)


def test_translation_reduces_to_the_demo_render_formula():
    xy, sc = _pose_in(100, 200, 50, 350)
    crop = prepare(_frame(), xy, sc, "crowdnet")
    cam = np.array([[0.05, 0.3, 0.4]])
    b = crop.boxes[0].astype(np.float64)
    ours = cam_param_to_translation(cam, crop.trans_inv, 5000.0, (b[0] + b[2] / 2, b[1] + b[3] / 2))
    np.testing.assert_allclose(ours, official_render_translation(cam, crop.boxes), rtol=1e-5)


@pytest.mark.parametrize("system", ["crowdnet", "jotr"])
def test_translation_projects_onto_the_same_original_pixels(system):
    xy, sc = _pose_in(420, 540, 100, 380)  # off-centre: the principal point shift matters
    crop = prepare(_frame(), xy, sc, system)
    cam = np.array([[0.12, -0.25, 0.7]])
    t_crop = crop_translation(cam)[0]
    focal, princpt = default_focal(W, H), np.array([W / 2, H / 2])
    t_ours = cam_param_to_translation(cam, crop.trans_inv, focal, princpt)[0].astype(np.float64)
    # body points on the plane of the translation (the model origin among them)
    local = np.array([[0.0, 0.0, 0.0], [0.3, -0.6, 0.0], [-0.2, 0.8, 0.0]])
    in_crop = (local + t_crop)[:, :2] / (local + t_crop)[:, 2:] * 5000.0 + 128.0
    expected = crop_to_original(in_crop[None], crop.trans_inv, units="pixels")[0]
    p = local + t_ours
    projected = p[:, :2] / p[:, 2:] * focal + princpt
    np.testing.assert_allclose(projected, expected, atol=1e-2)
    assert focal == pytest.approx(800.0)
    # depth: the body looks as large in our camera as in the crop camera seen from the frame
    a = float(crop.trans_inv[0, 0, 0])
    assert t_ours[2] == pytest.approx(t_crop[2] * focal / (5000.0 * a), rel=1e-5)


def test_joint_img_back_to_original_pixels():
    xy, sc = _pose_in(100, 200, 50, 350)
    crop = prepare(_frame(), xy, sc, "crowdnet")
    x, y, w, h = crop.boxes[0].astype(np.float64)
    grid = np.array([[[32.0, 32.0, 7.0], [0.0, 0.0, 1.0], [64.0, 64.0, 2.0]]])
    out = crop_to_original(grid, crop.trans_inv)
    np.testing.assert_allclose(out[0, :, :2], [[x + w / 2, y + h / 2], [x, y], [x + w, y + h]], atol=2e-3)
    np.testing.assert_array_equal(out[0, :, 2], [7, 1, 2])  # extra columns untouched
    # the input joints themselves come back to the original keypoints
    back = crop_to_original(crop.joints[:, list(COCO19_TO_INPUT)], crop.trans_inv)
    np.testing.assert_allclose(back[0, :17, :2], xy[0], atol=2e-3)
    with pytest.raises(ValueError):
        crop_to_original(grid, crop.trans_inv, units="metres")


def test_joint_img_units_per_system():
    ji = np.array([[[0.5, 0.25, 1.0]]], np.float32)
    np.testing.assert_array_equal(joint_img_to_grid(ji, "jotr"), [[[32, 16, 64]]])
    np.testing.assert_array_equal(joint_img_to_grid(ji, "crowdnet"), ji)
    with pytest.raises(ConfigError):
        joint_img_to_grid(ji, "romp")
    np.testing.assert_allclose(grid_depth_to_metres(np.array([0.0, 32.0, 64.0])), [-1.0, 0.0, 1.0])
