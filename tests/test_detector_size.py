"""The detector at the frame's own aspect: the size-dynamic rewrite of fixed-size graphs, and the bundled
detector on rectangular inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.config import REALFOOTAGE_DIR
from engine.errors import ExportError
from engine.realfootage.detector import Detections, PersonDetector, iou_matrix
from engine.realfootage.tracker import match_boxes
from engine.runtime.graph import OnnxGraph
from export.dynamic_size import make_file_size_dynamic, make_size_dynamic

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
needs_data = pytest.mark.skipif(not (DATA / "vtest.avi").is_file(), reason="apt-get install -y opencv-doc")


def _fixed_graph(up: tuple[int, int] = (32, 32)) -> onnx.ModelProto:
    """[1, 3, 32, 32] -> stride-2 conv -> upsample to ``up`` (size from Shape + constant, as the TF.js converter
    writes it) -> downsample to half that -> output, like the detector's FPN path."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Shape", ["c"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "two"], ["nc"]),
             helper.make_node("Concat", ["nc", "up"], ["sizes"], axis=0),
             helper.make_node("Resize", ["c", "", "", "sizes"], ["u"], mode="linear",
                              coordinate_transformation_mode="half_pixel", name="up"),
             helper.make_node("Concat", ["nc", "down"], ["sizes2"], axis=0),
             helper.make_node("Resize", ["u", "", "", "sizes2"], ["y"], mode="linear",
                              coordinate_transformation_mode="half_pixel", name="down")]
    inits = [w, numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array(up, np.int64), "up"),
             numpy_helper.from_array(np.array(up, np.int64) // 2, "down")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, up[0] // 2, up[1] // 2])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_dynamic_rewrite_is_exact_at_the_exported_size_and_runs_at_others():
    fixed = _fixed_graph()
    dynamic = make_size_dynamic(fixed)
    x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_run(dynamic, x), _run(fixed, x), atol=1e-6)
    # the fixed graph cannot take another size; the rewritten one gives the scaled output
    wide = np.random.default_rng(2).normal(size=(1, 3, 64, 96)).astype(np.float32)
    assert _run(dynamic, wide).shape == (1, 4, 32, 48)
    assert not any(n.op_type in ("Shape", "Slice", "Concat") for n in dynamic.graph.node)  # old size maths gone
    dims = dynamic.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[2:]] == ["height", "width"]


def test_dynamic_rewrite_refuses_a_size_that_is_no_whole_scale():
    with pytest.raises(ExportError, match="neither a whole number"):
        make_size_dynamic(_fixed_graph(up=(24, 24)))  # 16 -> 24: x1.5


def test_file_rewrite_checks_equivalence_and_records_how(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_fixed_graph(), str(path))
    x = np.random.default_rng(3).normal(size=(1, 3, 32, 32)).astype(np.float32)
    record = make_file_size_dynamic(path, [x], multiple_of=2)
    assert record["height_width"] == "dynamic" and record["same_as_fixed_size_max_abs"] < 1e-5
    assert _run(onnx.load(str(path)), np.zeros((1, 3, 40, 40), np.float32)).shape == (1, 4, 20, 20)


def _detector() -> PersonDetector:
    return PersonDetector(OnnxGraph(REALFOOTAGE_DIR / "nanodet.onnx", (), PersonDetector.OUTPUTS, 1,
                                    providers=["CPUExecutionProvider"]))


def test_bundled_detector_takes_the_frames_aspect():
    det = _detector()
    assert not det.fixed
    assert det.input_hw(576, 768) == (320, 416)  # 4:3
    assert det.input_hw(480, 640) == (320, 416)  # a webcam
    assert det.input_hw(100, 100) == (416, 416)
    x, k = det.preprocess(np.zeros((480, 640, 3), np.uint8))
    assert x.shape == (1, 3, 320, 416) and k == pytest.approx(416 / 640)


def test_a_large_frame_gets_a_larger_input_up_to_the_cap():
    """Above the tuned clip's 768 px the frame keeps that clip's scale (416 / 768) up to a 512 input by default."""
    det = _detector()
    assert det.input_hw(600, 800) == (352, 448)  # 800 x 416/768 = 433 -> 448
    assert det.input_hw(720, 1280) == (288, 512)  # 16:9 HD, capped
    assert det.input_hw(1280, 720) == (512, 288)  # portrait
    assert det.input_hw(2160, 3840) == (288, 512)
    x, k = det.preprocess(np.zeros((720, 1280, 3), np.uint8))
    assert x.shape == (1, 3, 288, 512) and k == pytest.approx(512 / 1280)
    fixed = PersonDetector(det.graph, max_size=416)  # the cap at the trained size: every frame at 416
    assert fixed.input_hw(720, 1280) == (256, 416)
    larger = PersonDetector(det.graph, max_size=640)
    assert larger.input_hw(720, 1280) == (384, 640) and larger.input_hw(600, 800) == (352, 448)


def _vtest_tiles(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n x n mosaic of the hand-boxed vtest.avi frames 100 and 180 in a checkerboard (the same people at the same
    pixel size in a view n times wider and higher), and the boxes of its people who are not marked hard."""
    ann = json.loads((Path(__file__).parent / "data" / "realfootage_boxes.json").read_text())["images"]
    wanted = {100: None, 180: None}
    cap = cv2.VideoCapture(str(DATA / "vtest.avi"))
    for i in range(181):
        ok, frame = cap.read()
        assert ok
        if i in wanted:
            wanted[i] = frame
    cap.release()
    people = {im["frame"]: [p["box"] for p in im["people"] if not p["hard"]] for im in ann if im.get("frame") in wanted}
    rows, truth = [], []
    for r in range(n):
        tiles = [100 if (r + c) % 2 == 0 else 180 for c in range(n)]
        rows.append(np.hstack([wanted[f] for f in tiles]))
        for c, f in enumerate(tiles):
            truth += [[x1 + 768 * c, y1 + 576 * r, x2 + 768 * c, y2 + 576 * r] for x1, y1, x2, y2 in people[f]]
    return np.vstack(rows), np.array(truth, np.float32)


@needs_data
def test_people_in_a_wide_view_are_found_at_the_larger_input():
    """A 2x2 mosaic of two hand-boxed vtest.avi frames (1536x1152: the same people at the same pixel size in a view
    four times larger, as an HD street camera sees them). Scaled to 416 the people shrink below what the network
    finds; at the larger input most of them are found again."""
    mosaic, truth = _vtest_tiles(2)

    def recall(det: PersonDetector) -> float:
        found = det(mosaic, 0.35)
        return len(match_boxes(iou_matrix(truth, found.boxes), 0.5)) / len(truth) if len(found) else 0.0

    det = _detector()
    assert det.input_hw(*mosaic.shape[:2]) == (384, 512)
    small = recall(PersonDetector(det.graph, max_size=416, fine_size=0))  # the first pass alone, at each size
    large = recall(PersonDetector(det.graph, fine_size=0))
    assert large >= 0.8 and large >= small + 0.1, (small, large)


@needs_data
def test_rectangular_input_finds_what_the_square_input_finds():
    """The same network on the 4:3 frame letterboxed to 416x320 and to 416x416: the same people, the same boxes."""
    det = _detector()
    cap = cv2.VideoCapture(str(DATA / "vtest.avi"))
    frames = []
    for i in range(300):
        ok, frame = cap.read()
        if ok and i % 100 == 0:
            frames.append(frame)
    cap.release()
    for frame in frames:
        rect = det(frame, 0.35)
        det.input_hw = lambda h, w: (416, 416)  # force the square canvas on the same network
        square = det(frame, 0.35)
        del det.input_hw
        assert len(square) >= 3
        pairs = match_boxes(iou_matrix(square.boxes, rect.boxes), 0.5)
        assert len(pairs) >= len(square) - 1 and abs(len(rect) - len(square)) <= 1
        assert np.median(iou_matrix(square.boxes, rect.boxes)[pairs[:, 0], pairs[:, 1]]) > 0.9


def test_the_input_is_the_frame_normalised_at_the_top_left_of_a_zero_canvas():
    det = _detector()
    x, k = det.preprocess(np.full((576, 768, 3), (10, 200, 90), np.uint8))
    assert k == pytest.approx(416 / 768)
    assert x.shape == (1, 3, 320, 416) and x.dtype == np.float32
    expected = (np.array([10, 200, 90], np.float32) - det.mean) * det.inv_std  # NanoDet reads BGR
    np.testing.assert_allclose(x[0, :, :312, :].reshape(3, -1).T, np.broadcast_to(expected, (312 * 416, 3)), rtol=1e-6)
    assert not x[0, :, 312:, :].any()  # the padding rows


@needs_data
def test_a_prepared_frame_is_a_copy_so_drawing_on_the_frame_does_not_reach_a_pass():
    """The model thread prepares the frame (a resize, its own copy) and the detector thread runs the pass later,
    while the frame may already carry the overlay."""
    det = _detector()
    cap = cv2.VideoCapture(str(DATA / "vtest.avi"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    clean = det(frame.copy(), 0.35)
    prepared = det.prepare(frame)
    assert prepared.image.dtype == np.uint8 and prepared.image.shape == (312, 416, 3)
    frame[:] = 255  # drawn over before the pass runs
    later = det.detect(prepared, 0.35)
    assert len(clean) >= 3
    np.testing.assert_array_equal(later.boxes, clean.boxes)


def test_only_a_frame_larger_than_the_first_pass_shows_gets_a_fine_pass():
    """The fine pass runs at the clip's scale (416 / 768) up to ``fine_size``, and only where that is at least
    FINE_GAIN x the first pass: a webcam frame gets none, HD gets one at its clip scale, 4K one capped."""
    det = _detector()
    assert det.fine_side(480, 640) == 0 and det.fine_side(960, 1120) == 0  # clip scale 608 < 1.25 x 512
    assert det.fine_side(842, 1123) == 0 and det.fine_side(843, 1124) == 640  # the documented bound: over 1123 px
    assert det.fine_side(720, 1280) == 704 and det.fine_side(1280, 720) == 704
    assert det.fine_side(1080, 1920) == 1024 and det.fine_side(2160, 3840) == 1024
    assert PersonDetector(det.graph, fine_size=0).fine_side(2160, 3840) == 0
    assert PersonDetector(det.graph, fine_size=640).fine_side(1080, 1920) == 640
    assert PersonDetector(det.graph, fine_size=608).fine_side(1080, 1920) == 0  # not enough finer than 512
    assert PersonDetector(det.graph, max_size=832).fine_side(1080, 1920) == 0  # 1024 < 1.25 x 832
    assert PersonDetector(det.graph, max_size=832, fine_size=1088).fine_side(1080, 1920) == 1056  # the clip scale
    assert det.small_height(1080, 1920) == pytest.approx(64 * 1920 / 512) and det.small_height(480, 640) == 0
    prepared = det.prepare(np.zeros((1080, 1920, 3), np.uint8))
    assert prepared.image.shape == (288, 512, 3) and prepared.fine.shape == (576, 1024, 3)
    assert prepared.fine_scale == pytest.approx(1024 / 1920)
    x, k = det.preprocess(np.zeros((1080, 1920, 3), np.uint8), fine=True)
    assert x.shape == (1, 3, 576, 1024) and k == pytest.approx(1024 / 1920)
    with pytest.raises(ValueError, match="640x480 frame gets no fine pass"):
        det.preprocess(np.zeros((480, 640, 3), np.uint8), fine=True)
    assert det.prepare(np.zeros((480, 640, 3), np.uint8)).fine is None


def test_the_fine_pass_boxes_the_small_people_and_the_first_pass_the_tall_ones(monkeypatch):
    """The merge: the first pass's people at least SMALL_HEIGHT input pixels tall, the fine pass's shorter ones,
    except a fine box lying inside a tall person (a bag, a child held), overlaps suppressed."""
    det = _detector()
    frame = np.zeros((1080, 1920, 3), np.uint8)
    small = det.small_height(1080, 1920)  # 240 frame px
    tall, short = [100, 100, 300, 700], [1000, 500, 1060, 650]
    first = Detections(np.array([tall, [990, 490, 1075, 660]], np.float32), np.array([0.9, 0.5], np.float32))
    fine = Detections(np.array([[105, 95, 298, 705],  # the tall person again: the first pass keeps them
                                short,  # the small one, boxed better than the first pass did
                                [150, 300, 210, 420],  # inside the tall person
                                [1500, 800, 1530, 870]],  # someone only the fine pass sees
                               np.float32), np.array([0.8, 0.7, 0.6, 0.4], np.float32))
    calls = []

    def one_pass(prepared, threshold, max_people, fine_pass):
        calls.append(fine_pass)
        return fine if fine_pass else first

    monkeypatch.setattr(det, "_pass", lambda p, t, m, fine: one_pass(p, t, m, fine))
    found = det(frame, 0.3)
    assert calls == [False, True] and 660 - 490 < small <= 700 - 100
    np.testing.assert_array_equal(found.boxes, np.array([tall, short, [1500, 800, 1530, 870]], np.float32))
    np.testing.assert_array_equal(found.scores, np.array([0.9, 0.7, 0.4], np.float32))
    calls.clear()
    webcam = det(np.zeros((480, 640, 3), np.uint8), 0.3)  # no fine pass: the first pass as it is
    assert calls == [False] and webcam is first


@needs_data
def test_a_crowd_seen_from_afar_is_found_by_the_fine_pass():
    """A 3x3 mosaic of two hand-boxed vtest.avi frames (2304x1728, people 100-150 px tall, a street seen from
    three times as far by a camera with three times the pixels): the 512 first pass misses most of them."""
    mosaic, truth = _vtest_tiles(3)

    def score(det: PersonDetector) -> tuple[float, float]:
        found = det(mosaic, 0.35)
        hits = len(match_boxes(iou_matrix(truth, found.boxes), 0.5)) if len(found) else 0
        return hits / len(truth), hits / max(1, len(found))

    det = _detector()
    assert det.fine_side(*mosaic.shape[:2]) == 1024
    (r0, p0), (r1, p1) = score(PersonDetector(det.graph, fine_size=0)), score(det)
    assert r1 >= 0.85 and r1 >= r0 + 0.4 and p1 >= max(p0, 0.8), (r0, p0, r1, p1)
