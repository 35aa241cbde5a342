"""The real-footage default: ROI geometry, detector decoding, the bundled networks on hand-boxed real frames,
and clear errors for missing or wrong model files."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.config import REALFOOTAGE_DIR
from engine.errors import ModelFileError
from engine.realfootage.detector import STRIDES, PersonDetector, cover_matrix, iou_matrix, nms
from engine.realfootage.evaluate import (
    IdentityScore,
    Score,
    camera_view,
    load_annotations,
    mesh_boxes,
    mirrored,
    score_image,
    swayed,
    zoomed,
)
from engine.realfootage.roi import (
    NARROW_CUT_HEIGHT,
    Rois,
    crop_rois,
    cut_boxes,
    extend_cut_boxes,
    follow_points,
    narrow_cut,
    rois_from_alignment,
    rois_from_boxes,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/usr/share/doc/opencv-doc/examples/data")
BOXES = ROOT / "tests" / "data" / "realfootage_boxes.json"
CLOSEUPS = ROOT / "tests" / "data" / "closeup_boxes.json"
needs_data = pytest.mark.skipif(not (DATA / "vtest.avi").is_file(), reason="apt-get install -y opencv-doc")


def test_roi_crop_maps_back_to_the_frame():
    """A point drawn in the frame lands where the crop->frame map says, for rotated ROIs too."""
    frame = np.zeros((300, 400, 3), np.uint8)
    cv2.circle(frame, (250, 120), 3, (255, 255, 255), -1)
    for angle in (0.0, 0.7, -2.0):
        rois = Rois(np.array([[240.0, 130.0]], np.float32), np.array([80.0], np.float32),
                    np.array([angle], np.float32))
        crops, maps = crop_rois(frame, rois, 64)
        ys, xs = np.nonzero(crops[0, :, :, 0] > 0.5)
        back = maps[0] @ np.array([xs.mean(), ys.mean(), 1.0])
        np.testing.assert_allclose(back, [250, 120], atol=1.0)


def test_roi_crops_are_rgb_cut_from_the_bgr_frame():
    """The tracker hands the captured BGR frame to the crops: the network still reads RGB, exactly as if the frame
    had been converted first."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    frame[40:80, 60:100] = (255, 0, 0)  # pure blue in BGR
    rois = Rois(np.array([[80.0, 60.0], [70.0, 50.0]], np.float32), np.array([40.0, 90.0], np.float32),
                np.array([0.0, 0.4], np.float32))
    crops, maps = crop_rois(frame, rois, 32)
    assert crops.dtype == np.float32 and crops.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(crops[0, 16, 16], [0.0, 0.0, 1.0])  # blue lands in the RGB crop's last channel
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    for crop, m in zip(crops, maps, strict=True):
        ref = cv2.warpAffine(rgb, m, (32, 32), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        np.testing.assert_allclose(crop, ref / 255.0, atol=1e-6)


@pytest.mark.parametrize("angle", [0.0, 0.6])
def test_a_crop_keeps_only_its_box_when_asked(angle):
    """A crop given a box to keep is the plain crop inside that box and blank outside it (the box's corners land
    where the crop->frame map says, rotated ROIs too), so the network reads the boxed person alone."""
    frame = np.full((200, 300, 3), 200, np.uint8)
    rois = Rois(np.array([[150.0, 100.0]], np.float32), np.array([160.0], np.float32), np.array([angle], np.float32))
    keep = np.array([[120.0, 60.0, 200.0, 150.0]])
    plain, maps = crop_rois(frame, rois, 64)
    kept, _ = crop_rois(frame, rois, 64, keep)
    v, u = np.mgrid[0:64, 0:64]
    xy = np.einsum("ij,hwj->hwi", maps[0], np.stack([u, v, np.ones_like(u)], axis=-1).astype(np.float64))
    inside = (xy[..., 0] > 122) & (xy[..., 0] < 198) & (xy[..., 1] > 62) & (xy[..., 1] < 148)
    in_frame = (xy[..., 0] > 2) & (xy[..., 0] < 298) & (xy[..., 1] > 2) & (xy[..., 1] < 198)
    outside = in_frame & ((xy[..., 0] < 118) | (xy[..., 0] > 202) | (xy[..., 1] < 58) | (xy[..., 1] > 152))
    assert inside.sum() > 300 and outside.sum() > 1000
    np.testing.assert_array_equal(kept[0][inside], plain[0][inside])
    assert (kept[0][outside] == 0).all() and (plain[0][outside] > 0.7).all()


def test_alignment_rois_are_upright_for_upright_people():
    hip = np.array([[100.0, 200.0], [50.0, 50.0]])
    top = np.array([[100.0, 150.0], [90.0, 50.0]])  # second person lies along +x
    rois = rois_from_alignment(hip, top, 1.5)
    np.testing.assert_allclose(rois.sides, [150.0, 120.0], rtol=1e-6)
    assert abs(rois.angles[0]) < 1e-6
    m = rois.crop_to_image(256)[1]
    up = m[:, :2] @ np.array([0.0, -1.0])  # the crop's "up" points from hip to the scale point in the frame
    np.testing.assert_allclose(up / np.linalg.norm(up), [1.0, 0.0], atol=1e-6)
    box = rois_from_boxes(np.array([[10, 20, 50, 120]]), 1.25)
    np.testing.assert_allclose(box.centers, [[30, 70]])
    np.testing.assert_allclose(box.sides, [125.0])


class _FakeGraph:
    """Stands in for the ONNX detector: one confident person cell with a known distance distribution."""

    def __init__(self, cell: tuple[int, int], stride: int, dist_cells: tuple[int, int, int, int]) -> None:
        self.cell, self.stride, self.dist = cell, stride, dist_cells
        self.input_names = ["input"]
        self.input_shapes = {"input": [1, 3, 416, 416]}

    def run(self, feeds):
        out = {}
        for s in STRIDES:
            n = 416 // s
            cls = np.zeros((1, n * n, 80), np.float32)
            box = np.full((1, n * n, 44), -30.0, np.float32)
            if s == self.stride:
                i = self.cell[1] * n + self.cell[0]
                cls[0, i, 0] = 0.9
                cls[0, i, 5] = 0.95  # another class: ignored
                for side, d in enumerate(self.dist):
                    box[0, i, side * 11 + d] = 30.0  # a one-hot distribution at d cells
            out[f"cls_{s}"], out[f"box_{s}"] = cls, box
        return out


def test_detector_decodes_cell_centres_and_distances():
    det = PersonDetector(_FakeGraph(cell=(10, 20), stride=8, dist_cells=(2, 5, 3, 6)))
    frame = np.zeros((416, 416, 3), np.uint8)
    found = det(frame, threshold=0.5)
    assert len(found) == 1
    cx, cy = 10.5 * 8, 20.5 * 8  # the cell centre
    np.testing.assert_allclose(found.boxes[0], [cx - 16, cy - 40, cx + 24, cy + 48], atol=1e-3)
    assert len(det(frame, threshold=0.95)) == 0
    # a 2x larger frame: the same box in its pixels (aspect kept, top-left letterbox)
    big = det(np.zeros((832, 600, 3), np.uint8), threshold=0.5)
    np.testing.assert_allclose(big.boxes[0], np.array([cx - 16, cy - 40, cx + 24, cy + 48]) * 2, atol=1e-2)


def test_nms_and_scoring():
    boxes = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [30, 30, 40, 50]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    people = [{"box": [0, 0, 10, 20], "hard": False}, {"box": [100, 100, 110, 120], "hard": True}]
    s = score_image(boxes[keep], people, ignore=[[28, 28, 45, 55]])
    assert (s.tp, s.fn, s.fp, s.hard_total) == (1, 0, 0, 1)  # the box in the ignore region is no false positive
    s = score_image(np.array([[0, 0, 10, 20], [0, 0, 100, 200]]), people, ignore=[])
    assert s.fp == 1 and s.giant == 1
    assert mesh_boxes(np.array([[[1, 2], [5, 9], [3, 0]]])).tolist() == [[1, 0, 5, 9]]
    # a body reaching out of a 8x6 frame is boxed where the picture shows it
    assert mesh_boxes(np.array([[[-4, 2], [5, 9], [3, 1]]]), (6, 8)).tolist() == [[0, 1, 5, 6]]


def test_identity_score_counts_id_changes_of_each_found_person():
    people = [{"box": [0, 0, 10, 20]}, {"box": [50, 0, 60, 20]}]
    a, b = [0, 0, 10, 20], [50, 0, 60, 20]
    # frame by frame: the predictions (in changing order), and the id the tracker gave each
    frames = [([a, b], [3, 4]), ([b, a], [4, 3]), ([a], [4]), ([a, b], [3, 7]), ([b], [4])]
    scores = [score_image(np.array(boxes, np.float32), people, []) for boxes, _ in frames]
    assert [sorted(s.matched.items()) for s in scores][:2] == [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]
    ids = IdentityScore.of_clip(scores, [np.array(i) for _, i in frames])
    # person 0: 3 3 4 3 (two changes, one extra id); person 1: 4 4 7 4 (two changes, one extra id)
    assert (ids.switches, ids.extra_ids, ids.found, ids.people) == (4, 2, 8, 2)
    total = Score(images=scores, identities=[ids, ids]).summary()
    assert total["id_switches"] == 8 and total["ids_per_person"] == 2.0


def test_box_overlaps():
    """IoU, and how much of each second box the first covers (a cut body's landmark box inside its detection)."""
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 5, 10, 10], [0, 0, 20, 20], [30, 30, 40, 40]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[0.25, 0.25, 0.0]])
    np.testing.assert_allclose(cover_matrix(a, b), [[1.0, 0.25, 0.0]])


def test_a_crop_follows_the_points_seen_in_both_measurements():
    """A crop held on a cut body moves and zooms with the landmarks seen twice (a similarity about their centroid,
    the zoom clipped per step); one with too few such points, or none seen before, keeps its framing."""
    rois = Rois(np.array([[100.0, 200.0], [50.0, 50.0], [0.0, 0.0]], np.float32),
                np.array([300.0, 100.0, 80.0], np.float32), np.array([0.2, 0.0, 0.0], np.float32))
    rng = np.random.default_rng(0)
    before = rng.uniform(0, 200, (3, 33, 2))
    after = before.copy()
    after[0] = (before[0] - 100.0) * 1.1 + 100.0 + [5.0, -3.0]  # zoom 1.1 about (100, 100), then a shift
    after[1] = before[1] * 2.0  # a 2x jump: clipped to the step limit
    seen = np.ones((3, 33), bool)
    seen[0, 20:] = False
    after[0, 20:] = 1e4  # unseen points (a guess far off) do not count
    seen[2, 3:] = False  # three points only
    out = follow_points(rois, before, after, seen, min_points=4, max_zoom=1.25)
    np.testing.assert_allclose(out.centers[0], (np.array([100.0, 200.0]) - 100.0) * 1.1 + 100.0 + [5.0, -3.0],
                               atol=1e-3)
    np.testing.assert_allclose(out.sides, [330.0, 125.0, 80.0], rtol=1e-5)
    np.testing.assert_allclose(out.angles, rois.angles)
    np.testing.assert_allclose(out.centers[2], [0.0, 0.0])


def test_a_swayed_clip_moves_the_annotation_with_the_picture():
    """The clip benchmark's frames: a white block boxed in the photo stays boxed in every frame of the clip (its
    box follows the zoom and sway to within a pixel), the zoom stays within 1.04-1.2x, the view moves, and a block
    pushed out of the picture becomes hard instead of a person the model must find."""
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[100:220, 150:210] = 255
    photo[10:60, 0:8] = 255  # a sliver at the left edge: swayed and zoomed out of the picture
    im = {"people": [{"box": [150, 100, 210, 220], "hard": False}, {"box": [0, 10, 8, 60], "hard": False}],
          "ignore": []}
    centres = []
    for i in range(0, 60, 7):
        frame, seen = swayed(photo, im, i)
        assert frame.shape == photo.shape
        ys, xs = np.nonzero(frame[80:280, 100:300, 0] > 127)
        drawn = np.array([xs.min() + 100, ys.min() + 80, xs.max() + 101, ys.max() + 81], float)
        box = np.array(seen["people"][0]["box"])
        np.testing.assert_allclose(box, drawn, atol=1.5)
        assert 1.04 - 1e-6 <= (box[3] - box[1]) / 120.0 <= 1.2 + 1e-6
        assert all(p["hard"] for p in seen["people"][1:])  # the sliver is (nearly) gone
        centres.append(box[:2])
    assert np.ptp(np.array(centres), axis=0).max() > 3.0


def test_a_camera_view_crops_a_wide_photo_to_the_cameras_aspect_and_moves_the_boxes():
    """The webcam-sized clips: a 16:9 photo seen by a 4:3 camera loses its sides (a block at the middle stays boxed
    to within a pixel at the new scale), a person mostly beyond the cut edge becomes hard, one wholly beyond it
    goes, and an ignored region moves along."""
    photo = np.zeros((360, 640, 3), np.uint8)
    photo[100:220, 300:360] = 255  # the middle
    photo[50:300, 40:90] = 255  # four fifths of it beyond the left cut (which falls at x = 80)
    im = {"people": [{"box": [300, 100, 360, 220], "hard": False}, {"box": [40, 50, 90, 300], "hard": False},
                     {"box": [0, 10, 40, 60], "hard": False}], "ignore": [[300, 0, 320, 20]]}
    frame, seen = camera_view(photo, im, 320, 240)
    assert frame.shape == (240, 320, 3)
    ys, xs = np.nonzero(frame[:, :, 0] > 127)
    middle = xs > 100
    drawn = [xs[middle].min(), ys[middle].min(), xs[middle].max() + 1, ys[middle].max() + 1]
    np.testing.assert_allclose(seen["people"][0]["box"], drawn, atol=1.0)
    np.testing.assert_allclose(seen["people"][0]["box"], np.array([220, 100, 280, 220]) * 240 / 360, atol=1e-6)
    assert len(seen["people"]) == 2 and seen["people"][1]["hard"] and not seen["people"][0]["hard"]
    np.testing.assert_allclose(seen["ignore"][0], np.array([220, 0, 240, 20]) * 240 / 360, atol=1e-6)
    # a portrait seen by a wide camera keeps its top rows, where the head is
    tall = np.zeros((400, 300, 3), np.uint8)
    tall[20:60, 130:170] = 255  # a head at the top
    frame, seen = camera_view(tall, {"people": [{"box": [130, 20, 170, 60], "hard": False}]}, 160, 90)
    assert frame.shape == (90, 160, 3) and frame[:, :, 0].max() == 255
    np.testing.assert_allclose(seen["people"][0]["box"], np.array([130, 20, 170, 60]) * 160 / 300, atol=1e-6)


def test_a_mirrored_take_flips_the_picture_and_its_boxes():
    """The clip benchmark's mirrored take: a white block boxed near the left of the photo is at the right of the
    mirrored one, and its box (and an ignored region's) went with it, exactly."""
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[100:220, 30:90] = 255
    im = {"source": "x", "people": [{"box": [30, 100, 90, 220], "hard": True}], "ignore": [[0, 0, 10, 10]]}
    flipped, seen = mirrored(photo, im)
    ys, xs = np.nonzero(flipped[:, :, 0])
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [310, 100, 370, 220]
    assert seen["people"] == [{"box": [310, 100, 370, 220], "hard": True}]
    assert seen["ignore"] == [[390, 0, 400, 10]] and seen["source"] == "x"
    assert im["people"][0]["box"] == [30, 100, 90, 220]  # the photo's own annotation is left as it was

def test_a_box_cut_by_the_frame_is_framed_as_the_whole_body():
    """A box that the frame's top or bottom cuts AND that is too wide for a whole person grows, to the height a
    whole person of its width has, away from the cut (downwards when both edges cut it); the crop framed from it
    then holds the body where the landmark network expects it (the mid-hip near the centre), not a torso squeezed
    into a whole-body crop. A narrow box at the bottom is a candidate too (see the next test); boxes inside the
    frame are kept."""
    hw = (480, 640)
    boxes = np.array([[100, 60, 400, 480],  # chest-up close-up: cut at the bottom, 300 x 420 -> 666.7 tall
                      [500, 0, 620, 100],  # cut at the top (head out of the picture): grows upwards
                      [200, 100, 250, 470],  # a standing person ending above the bottom edge: kept
                      [20, 50, 220, 200],  # wide but inside the frame: kept
                      [0, 0, 640, 480]], np.float32)  # cut at both edges (a close-up's head at the top): down
    out = extend_cut_boxes(boxes, hw)
    np.testing.assert_allclose(out[0], [100, 60, 400, 60 + 300 / 0.45], rtol=1e-6)
    np.testing.assert_allclose(out[1], [500, 100 - 120 / 0.45, 620, 100], rtol=1e-6)
    np.testing.assert_array_equal(out[2:4], boxes[2:4])
    np.testing.assert_allclose(out[4], [0, 0, 640, 640 / 0.45], rtol=1e-6)
    np.testing.assert_array_equal(boxes[0], [100, 60, 400, 480])  # the input is not modified
    assert cut_boxes(boxes, hw).tolist() == [1, -1, 0, 0, 1]
    assert extend_cut_boxes(np.zeros((0, 4)), hw).shape == (0, 4)


def test_a_box_cut_by_a_side_and_the_bottom_is_framed_from_its_height():
    """A player half out of the picture at a side and cut at the waist by the bottom: the box is narrow because the
    side cut it, so its width says nothing; it is a cut candidate all the same and grows to NARROW_CUT_HEIGHT x the
    height in the picture. So does a narrow box at the bottom away from the sides (a person standing close, seen
    down to the thighs), but not one at the top (a whole body whose head touches the top of the picture). A narrow
    box at a side that the top and bottom do not cut stays a whole body."""
    hw = (480, 640)
    boxes = np.array([[2, 98, 99, 477],  # left edge + bottom: 97 x 379 (aspect 0.26)
                      [441, 20, 640, 480],  # right edge + bottom: 199 x 460 (aspect 0.43 < 0.45)
                      [0, 100, 80, 400],  # left edge only: a whole body walking in
                      [300, 150, 360, 479],  # bottom only, narrow, away from the sides: seen down to the thighs
                      [300, 2, 360, 300]], np.float32)  # top only, narrow: a whole body, head at the top edge
    assert cut_boxes(boxes, hw).tolist() == [1, 1, 0, 1, 0]
    assert narrow_cut(boxes, hw).tolist() == [True, True, False, True, False]
    out = extend_cut_boxes(boxes, hw)
    np.testing.assert_allclose(out[0], [2, 98, 99, 98 + NARROW_CUT_HEIGHT * 379], rtol=1e-6)
    np.testing.assert_allclose(out[1], [441, 20, 640, 20 + NARROW_CUT_HEIGHT * 460], rtol=1e-6)
    np.testing.assert_allclose(out[3], [300, 150, 360, 150 + NARROW_CUT_HEIGHT * 329], rtol=1e-6)
    np.testing.assert_array_equal(out[[2, 4]], boxes[[2, 4]])


@pytest.fixture(scope="module")
def realfootage(one_torch_thread):
    from engine.body import create_body_model
    from engine.frame_models import open_realfootage

    body = create_body_model("anny")
    return open_realfootage(REALFOOTAGE_DIR, body), body


def drawn_score(model, body, frame: np.ndarray, im: dict):
    """Run the model on one frame and score the bodies it draws (the boxes of the projected meshes) against the
    image's hand-boxed people."""
    from app.render.projection import project_points
    from engine.frame_models import PeopleQuery
    from engine.postprocess import people_to_meshes

    res = model(frame, PeopleQuery(threshold=model.info.default_threshold))
    meshes = people_to_meshes(res.people, body, res.box)
    px, _ = project_points(meshes.vertices, res.people.cam, res.box)
    return score_image(mesh_boxes(px, frame.shape[:2]), im["people"], im.get("ignore", []))


@needs_data
def test_finds_the_people_of_hand_boxed_real_frames(realfootage):
    """Cold start on annotated vtest frames and photos: recall and precision of the rendered bodies >= 0.8,
    no body far larger than the people around it."""
    model, body = realfootage
    images = load_annotations(BOXES)
    wanted = {im["frame"]: im for im in images if "frame" in im and im["frame"] in (100, 260, 580, 760)}
    photos = [im for im in images if "frame" not in im]
    cap = cv2.VideoCapture(str(DATA / "vtest.avi"))
    todo = []
    for i in range(max(wanted) + 1):
        _, frame = cap.read()
        if i in wanted:
            todo.append((frame, wanted[i]))
    cap.release()
    todo += [(cv2.imread(str(DATA / im["source"])), im) for im in photos]
    score = Score()
    for frame, im in todo:
        model.reset()
        score.add(drawn_score(model, body, frame, im))
    summary = score.summary()
    assert summary["recall"] >= 0.8, summary
    assert summary["precision"] >= 0.8, summary
    assert summary["giant_bodies"] == 0, summary
    assert 0.75 < summary["height_ratio_median"] < 1.3, summary


def test_close_up_people_get_a_body_that_fits_what_the_frame_shows(realfootage):
    """The webcam case: one person seen from the chest or the waist up, cut by the bottom of the frame (three
    public-domain photos, hand-boxed). Cold and with tracking over a few frames, each gets one body whose visible
    part overlaps the person's box with IoU >= 0.5 (the build before framed the cut box as a whole body: one of
    the three found, the others drawn as a small crouching figure over the face), and no second body. The same
    seen 1.3x and 1.7x closer: cold, the cameraman 1.3x closer (knees up, bent over his camera, no leg in the
    picture) was drawn as a whole body squeezed into the picture while the network was as sure of both framings."""
    model, body = realfootage
    for im in load_annotations(CLOSEUPS):
        for zoom in (1.0, 1.3, 1.7):
            frame, seen = zoomed(cv2.imread(im["path"]), im, zoom)
            model.reset()
            for step in range(4):  # a still camera: the first frame is cold, the next ones follow the tracked person
                s = drawn_score(model, body, frame, seen)
                assert (s.tp, s.fp) == (1, 0), (im["source"], zoom, step, s)


@needs_data
def test_players_cut_by_a_side_and_the_bottom_are_found(realfootage):
    """The two basketball photos as a camera 1.3x closer sees them: each player is cut by a side edge and by the
    bottom (at the hips or the thighs). Framed as whole bodies, neither was found (0 of 4); framed as the top of a
    taller body, both are, cold and over a few tracked frames, with no other body."""
    model, body = realfootage
    for im in load_annotations(BOXES):
        if not im["source"].startswith("basketball"):
            continue
        frame, seen = zoomed(cv2.imread(str(DATA / im["source"])), im, 1.3)
        assert len(seen["people"]) == 2 and not any(p["hard"] for p in seen["people"])
        model.reset()
        for step in range(4):
            s = drawn_score(model, body, frame, seen)
            assert (s.tp, s.fp) == (2, 0), (im["source"], step, s)


@needs_data
def test_tracking_keeps_people_across_frames(realfootage):
    """On consecutive frames the detector runs only every few frames, yet the people stay found."""
    from engine.frame_models import PeopleQuery

    model, _ = realfootage
    model.reset()
    cap = cv2.VideoCapture(str(DATA / "vtest.avi"))
    counts, detect_ms = [], []
    for _ in range(12):
        _, frame = cap.read()
        res = model(frame, PeopleQuery(threshold=model.info.default_threshold))
        counts.append(len(res.people))
        detect_ms.append(res.timings_ms["detect"])
    cap.release()
    assert min(counts) >= 3, counts  # three walkers in the open from frame 0, a fourth enters at the edge
    assert sum(ms > 0 for ms in detect_ms) <= 9, detect_ms  # tracking carries people: no detector pass per frame


def test_missing_or_wrong_model_files_give_one_clear_error(tmp_path):
    from engine.body import create_body_model
    from engine.frame_models import open_realfootage

    body = create_body_model("anny")
    with pytest.raises(ModelFileError, match="not found"):
        open_realfootage(tmp_path, body)
    for name in ("nanodet.onnx", "blazepose_full.onnx"):
        (tmp_path / name).write_bytes(b"not an onnx file")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        open_realfootage(tmp_path, body)
    # a real ONNX file of the wrong kind: the landmark network where the detector should be
    (tmp_path / "blazepose_full.onnx").write_bytes((REALFOOTAGE_DIR / "blazepose_full.onnx").read_bytes())
    (tmp_path / "nanodet.onnx").write_bytes((REALFOOTAGE_DIR / "blazepose_lite.onnx").read_bytes())
    with pytest.raises(ModelFileError, match="not the expected model"):
        open_realfootage(tmp_path, body, landmarks="full")


def test_cli_missing_model_is_one_line(tmp_path):
    """The app with the default model and its files gone: one error line, exit code 3, no traceback."""
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((64, 64, 3), np.uint8))
    code = ("import sys, app.config as c; from pathlib import Path; c.REALFOOTAGE_DIR = Path(sys.argv[1]); "
            "import app.session as s; s.REALFOOTAGE_DIR = c.REALFOOTAGE_DIR; from app.cli import main; "
            "sys.exit(main(sys.argv[2:]))")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "gone"), "--input", str(img), "--headless"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not found" in lines[0], p.stderr


@needs_data
def test_smpl_body_gets_betas_and_meshes(tmp_path, one_torch_thread):
    """With --body-model smpl the IK fits SMPL shape from bone lengths, and the people render as SMPL meshes."""
    sys.path.insert(0, str(ROOT / "tests"))
    import synthetic_smpl

    from engine.body import create_body_model
    from engine.frame_models import PeopleQuery, open_realfootage
    from engine.postprocess import people_to_meshes

    path = synthetic_smpl.write_npz(tmp_path / "SMPL_NEUTRAL.npz", synthetic_smpl.make_synthetic_smpl())
    body = create_body_model("smpl", smpl_path=path)
    model = open_realfootage(REALFOOTAGE_DIR, body)
    frame = cv2.imread(str(DATA / "basketball1.png"))
    res = model(frame, PeopleQuery(threshold=model.info.default_threshold))
    assert len(res.people) == 2
    assert np.abs(res.people.betas).max() > 0  # shape was fitted, not left at the mean
    meshes = people_to_meshes(res.people, body, res.box)
    assert meshes.vertices.shape == (2, 6890, 3)
    assert np.isfinite(meshes.pj2d_org).all()


def test_model_selection_options():
    """No --checkpoint: the real-footage model; a checkpoint: its system (told from the file when it is opened); the
    demo by name; contradictions refused (tracker options with an InstanceHMR file: see test_poseguided_app)."""
    from app.config import DEMO_CHECKPOINT, build_cfg, build_parser
    from engine.errors import ConfigError

    def cfg(*argv):
        return build_cfg(build_parser().parse_args(["--headless", "--input", "x.mp4", *argv]))

    default = cfg().model
    assert default.name == "realfootage" and default.checkpoint is None and default.landmarks == "mixed"
    assert cfg("--landmarks", "lite").model.landmarks == "lite"
    assert cfg("--checkpoint", "w.pkl").model.name == "instancehmr"
    assert cfg("--checkpoint", "w.pkl", "--landmarks", "lite").model.landmarks == "lite"  # 3DCrowdNet/JOTR use it
    demo = cfg("--model", "demo").model
    assert demo.name == "demo" and demo.checkpoint == DEMO_CHECKPOINT
    for bad in (["--model", "demo", "--checkpoint", "w.pkl"], ["--backend", "torch"],
                ["--model", "demo", "--landmarks", "lite"], ["--detect-every", "0"]):
        with pytest.raises(ConfigError):
            cfg(*bad)


def test_the_extra_photo_sets_box_exactly_the_photos_the_fetch_script_downloads():
    """The group and wheel photo sets keep only boxes here; every boxed image is one the fetch script knows (same
    folder, pinned by sha256), every photo it fetches is boxed, and every box lies inside its image."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fetch_photos", ROOT / "benchmarks" / "photo_sets" / "fetch.py")
    fetch = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = fetch  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(fetch)
    finally:
        del sys.modules[spec.name]
    known = {(p.folder, p.name) for p in fetch.PHOTOS}
    assert all(len(p.sha256) == 64 for p in fetch.PHOTOS)
    boxed = set()
    for name in ("group_boxes.json", "wheel_boxes.json"):
        path = ROOT / "benchmarks" / "photo_sets" / name
        folder = json.loads(path.read_text())["images_dir"]
        for im in load_annotations(path):
            boxed.add((folder, im["source"]))
            assert Path(im["path"]) == path.parent / folder / im["source"]
            for p in im["people"]:
                x1, y1, x2, y2 = p["box"]
                assert 0 <= x1 < x2 <= im["width"] and 0 <= y1 < y2 <= im["height"], (im["source"], p)
    assert boxed == known


def _standing_body_landmarks():
    """(fitter, world landmarks [1, 33, 3], image-plane landmarks [33, 2] in metres) of Anny standing, facing the
    camera: the landmarks a perfect network would report for her, for the camera-fit tests."""
    from engine.body import create_body_model
    from engine.bodyfit import BodyFitter, landmarks_from_body

    fitter = BodyFitter(create_body_model("anny"))
    with torch.no_grad():
        out = fitter.body(torch.tensor([[np.pi, 0.0, 0.0]]), torch.zeros(1, 69))
    verts, joints = out.vertices.double().numpy(), out.joints[:, :24].double().numpy()
    world = landmarks_from_body(verts, joints, fitter.vertex_ids, fitter.joint_map)
    xy = landmarks_from_body(verts, joints, fitter.vertex_ids, fitter.joint_map, centre=False)[0, :, :2]
    return fitter, world, xy


@pytest.mark.parametrize(("ear_px", "face_weight"), [(100.0, 2.0), (55.0, 1.0), (10.0, 0.15)])
def test_a_face_big_enough_to_measure_weighs_up_in_the_camera_fit(monkeypatch, ear_px, face_weight):
    """A whole body in view (all ten limb joints seen) gets the face weight of a whole body, 0.15, while its face is
    a few pixels; a face big enough to measure (30-80 px between the ears and more) weighs up to 2, whatever the
    limbs: with the body's head at real proportions it is the steadiest cue of where a person close to the camera
    belongs."""
    import engine.frame_models.realfootage as rf
    from engine.bodyfit import CAMERA_PAIRS
    from engine.realfootage.landmarks import Landmarks
    from engine.types import Letterbox

    seen = {}

    def capture(points, norm, weights):
        seen["weights"] = weights.copy()
        return np.tile(np.array([[0.5, 0.0, 0.0]]), (len(points), 1))

    monkeypatch.setattr(rf, "fit_camera", capture)
    fitter, world, xy = _standing_body_landmarks()
    image = np.zeros((1, 33, 3), np.float32)
    image[0, :, :2] = xy * ear_px / np.linalg.norm(xy[7] - xy[8]) + (640.0, 500.0)
    ones = np.ones((1, 33), np.float32)
    lm = Landmarks(image, ones, ones, world.astype(np.float32), np.ones(1, np.float32),
                   Rois(np.zeros((1, 2), np.float32), np.ones(1, np.float32), np.zeros(1, np.float32)))
    rf.RealFootageModel(None, fitter, None)._people(lm, np.array([0]), np.array([True]),
                                                     Letterbox.for_frame(1400, 1280, 512))
    weights = seen["weights"][0]
    np.testing.assert_allclose(weights[: len(CAMERA_PAIRS)], 1.0)  # limb joints weigh their visibility
    np.testing.assert_allclose(weights[len(CAMERA_PAIRS):], face_weight, rtol=1e-6)


def test_a_hand_whose_elbow_is_unseen_does_not_place_the_body(monkeypatch):
    """A person seen from the top of the head to the collar bones: the network guesses both hands under the chin
    (visible, elbows not). A limb joint weighs in the camera fit by its chain's least visible landmark, so those
    hands count for nothing, and the body keeps the size its face and shoulders give (matched to the guessed hands
    it shrank to a small figure under the face); where the elbow is seen the hand counts by its visibility."""
    import engine.frame_models.realfootage as rf
    from engine.bodyfit import CAMERA_PAIRS
    from engine.realfootage.landmarks import Landmarks
    from engine.types import Letterbox

    seen = {}
    real_fit = rf.fit_camera

    def capture(points, norm, weights):
        seen["weights"] = weights.copy()
        return real_fit(points, norm, weights)

    fitter, world, xy = _standing_body_landmarks()
    box = Letterbox.for_frame(480, 640, 512)
    ear = 180.0  # pixels between the ears: the face fills half the picture
    image = np.zeros((1, 33, 3), np.float32)
    image[0, :, :2] = (xy - xy[0]) * ear / np.linalg.norm(xy[7] - xy[8]) + (320.0, 240.0)  # the nose at the centre
    vis = np.zeros((1, 33), np.float32)
    vis[0, :13] = 1.0  # face and shoulders (at the bottom edge)
    vis[0, 15:23] = 0.8  # hands, guessed ...
    side = (np.arange(8)[:, None] % 2 * 2 - 1) * (60.0, 0.0)
    image[0, 15:23, :2] = image[0, 0, :2] + side + (0.0, 100.0)  # under the chin
    lm = Landmarks(image, vis, np.ones((1, 33), np.float32), world.astype(np.float32), np.ones(1, np.float32),
                   Rois(np.zeros((1, 2), np.float32), np.ones(1, np.float32), np.zeros(1, np.float32)))
    model = rf.RealFootageModel(None, fitter, None)
    one, fresh = np.array([0]), np.array([True])
    no_hands = np.where(np.arange(33) < 13, 1.0, 0.0)[None].astype(np.float32)
    truth = model._people(replace(lm, visibility=no_hands), one, fresh, box).cam[0]
    monkeypatch.setattr(rf, "fit_camera", capture)
    got = model._people(lm, one, fresh, box).cam[0]
    order = [j for j, _ in CAMERA_PAIRS]
    wrists = [order.index(20), order.index(21)]  # SMPL wrists
    assert (seen["weights"][0, wrists] == 0).all()  # elbows unseen: the guessed hands count for nothing
    np.testing.assert_allclose(got, truth, rtol=1e-5, atol=1e-6)  # placed by face and shoulders alone
    vis[0, 13:15] = 0.9  # now the elbows are seen: the hands count, by their own visibility
    model._people(replace(lm, visibility=vis), one, fresh, box)
    np.testing.assert_allclose(seen["weights"][0, wrists], 0.8)
