"""INT8 quantisation (export/quantize.py): the quantiser on a tiny conv net made here, and, when the shipped INT8
files exist, each against its FP32 twin on one committed real input within the acceptance rule.

Why both: the tiny net checks the pipeline (pre-processing, calibration reader, QDQ placement, float islands) in a
second without any asset; the real-input check catches a stale or broken shipped file the way the app would see it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.quantize import (
    ACCEPT,
    QuantConfig,
    _pad_stack,
    app_crops,
    head_convs,
    prepare_float,
    quantize_model,
    tail_nodes,
)
from tests.conftest import needs_vtest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "assets" / "models" / "realfootage"
DATA = Path(__file__).parent / "data"


def _tiny_model(path: Path) -> Path:
    """Three convs (3 -> 16 -> 32 -> 8 channels) with ReLU6, as a converted MobileNet-like block would be."""
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "input"
    for i, (cin, cout) in enumerate([(3, 16), (16, 32), (32, 8)]):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        x = f"c{i}"
        if i < 2:
            nodes.append(helper.make_node("Clip", [x, "lo", "hi"], [f"r{i}"], name=f"clip{i}"))
            x = f"r{i}"
    inits += [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
    nodes.append(helper.make_node("Identity", [x], ["output"], name="out"))
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_pre_processing_leaves_nothing_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """A graph symbolic shape inference cannot finish (an op of an unknown domain) takes the fallback path, which in
    ORT also dumps a scratch model into the current folder; the user's folder must stay as it was."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Foo", ["r"], ["y"], domain="ai.test")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.test", 1)])
    (models := tmp_path / "models").mkdir()
    onnx.save(model, str(models / "src.onnx"))
    (cwd := tmp_path / "cwd").mkdir()
    monkeypatch.chdir(cwd)
    out = prepare_float(models / "src.onnx", models / "out.onnx")
    assert out.is_file() and [n.op_type for n in onnx.load(str(out)).graph.node] == ["Relu", "Foo"]
    assert list(cwd.iterdir()) == []


def test_quantizes_a_tiny_conv_net(tmp_path: Path) -> None:
    src = _tiny_model(tmp_path / "tiny.onnx")
    rng = np.random.default_rng(1)
    calib = rng.random((16, 3, 32, 32), dtype=np.float32)
    dst, kept = quantize_model(src, tmp_path / "tiny_int8.onnx", [calib], QuantConfig(keep_float=("heads",)))
    assert kept == ["conv2"] == head_convs(onnx.load(str(src)))
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 4
    assert dst.stat().st_size < src.stat().st_size
    x = rng.random((1, 3, 32, 32), dtype=np.float32)
    a, b = _run(src, x), _run(dst, x)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 0.06 * np.abs(a).max()


def _with_score_tail(path: Path) -> Path:
    """The tiny net with a detector-like tail: the head conv's bias added by a separate Add, then a Sigmoid (as
    the converted NanoDet has it)."""
    model = onnx.load(str(path))
    out = model.graph.node[-1]
    out.input[0] = "scores"
    model.graph.initializer.append(numpy_helper.from_array(np.full((1, 8, 1, 1), 3.0, np.float32), "bias"))
    model.graph.node.insert(len(model.graph.node) - 1, helper.make_node("Add", ["c2", "bias"], ["logits"], name="add"))
    model.graph.node.insert(len(model.graph.node) - 1, helper.make_node("Sigmoid", ["logits"], ["scores"], name="sig"))
    onnx.save(model, str(path))
    return path


def test_tails_keep_everything_after_the_heads_in_float(tmp_path: Path) -> None:
    src = _with_score_tail(_tiny_model(tmp_path / "tiny.onnx"))
    assert tail_nodes(onnx.load(str(src))) == ["add", "conv2", "out", "sig"]
    rng = np.random.default_rng(3)
    calib = rng.random((16, 3, 32, 32), dtype=np.float32)
    x = rng.random((1, 3, 32, 32), dtype=np.float32) * 1.5  # brighter than any calibration input
    ref = _run(src, x)
    errs = {}
    for keep in ("heads", "tails"):
        dst, _ = quantize_model(src, tmp_path / f"{keep}.onnx", [calib], QuantConfig("percentile", keep_float=(keep,)))
        q = onnx.load(str(dst))
        dq = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        tail_reads = [i for n in q.graph.node if n.name in ("add", "sig") for i in n.input]
        # "heads" leaves the bias add and the sigmoid reading rounded 8-bit tensors; "tails" keeps them float
        assert any(i in dq for i in tail_reads) == (keep == "heads")
        errs[keep] = float(np.abs(_run(dst, x) - ref).max())
    assert errs["tails"] < errs["heads"]


def test_detector_calibration_inputs_pad_to_one_shape() -> None:
    a = np.ones((1, 3, 320, 416), np.float32)
    b = np.full((1, 3, 288, 416), 2.0, np.float32)
    batch = _pad_stack([a, b])
    assert batch.shape == (2, 3, 320, 416)
    assert (batch[1, :, :288] == 2).all() and (batch[1, :, 288:] == 0).all()  # bottom zero padding, as the detector


@needs_vtest
def test_app_crops_are_the_landmark_networks_inputs() -> None:
    crops = app_crops(MODELS, range(0, 3), landmarks="lite")
    assert len(crops) >= 3 and {t for t, _ in crops} <= {"vtest#0", "vtest#1", "vtest#2"}
    assert all(c.shape == (256, 256, 3) and c.dtype == np.uint8 for _, c in crops)
    assert np.std(crops[0][1]) > 10  # a picture, not padding


def test_all_int8_tensors_without_float_islands(tmp_path: Path) -> None:
    src = _tiny_model(tmp_path / "tiny.onnx")
    calib = np.random.default_rng(2).random((8, 3, 32, 32), dtype=np.float32)
    dst, kept = quantize_model(src, tmp_path / "tiny_int8.onnx", [calib], QuantConfig(method="percentile"))
    assert kept == []
    x = calib[:1]
    assert np.abs(_run(src, x) - _run(dst, x)).max() <= 0.1 * np.abs(_run(src, x)).max()


@pytest.mark.parametrize("name", ["blazepose_full", "blazepose_lite"])
def test_shipped_blazepose_int8_matches_fp32(name: str) -> None:
    int8 = MODELS / f"{name}_int8.onnx"
    if not int8.is_file():
        pytest.skip(f"{int8.name} not shipped (failed the accuracy rule; see QUANTIZATION.md)")
    crop = cv2.cvtColor(cv2.imread(str(DATA / "realfootage_crop.png")), cv2.COLOR_BGR2RGB)
    x = (crop.astype(np.float32) / 255.0)[None]
    import onnxruntime as ort

    outs = []
    for path in (MODELS / f"{name}.onnx", int8):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs.append(s.run(["landmarks", "poseflag"], {"input": x}))
    (la, fa), (lb, fb) = outs
    la, lb = la.reshape(-1, 5)[:33], lb.reshape(-1, 5)[:33]
    err = np.linalg.norm(la[:, :2] - lb[:, :2], axis=1)[la[:, 3] > 0]
    assert np.median(err) <= ACCEPT["landmark_median_px"]
    assert np.percentile(err, 95) <= ACCEPT["landmark_p95_px"]
    assert (fa.item() >= 0.5) == (fb.item() >= 0.5)


def test_shipped_nanodet_int8_matches_fp32() -> None:
    int8 = MODELS / "nanodet_int8.onnx"
    if not int8.is_file():
        pytest.skip("nanodet_int8.onnx not shipped (failed the accuracy rule; see QUANTIZATION.md)")
    from engine.realfootage.detector import PersonDetector, iou_matrix
    from engine.runtime.graph import OnnxGraph

    frame = cv2.imread(str(DATA / "realfootage_frame.jpg"))
    dets = [PersonDetector(OnnxGraph(p, (), PersonDetector.OUTPUTS, 1, providers=["CPUExecutionProvider"]))(
        frame, 0.45) for p in (MODELS / "nanodet.onnx", int8)]
    a, b = dets
    assert len(a) > 0
    best = iou_matrix(a.boxes, b.boxes).max(axis=1) if len(b) else np.zeros(len(a))
    assert (best >= ACCEPT["match_iou"]).mean() >= ACCEPT["boxes_matched_frac"]
    assert len(b) - len(a) <= max(0, int(ACCEPT["extra_boxes_frac"] * len(a)))
