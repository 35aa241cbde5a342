"""FP16 ONNX proxy for the TensorRT FP16 engine: FP32 islands where FP16 overflows, same people as FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from export.fp16 import convert_file, convert_to_fp16, fp16_report, is_fp32_island
from export.onnx import export_onnx, read_onnx_meta
from testing.random_models import force_detections, random_model
from tests.conftest import randomise_bn


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory, frames) -> tuple[Path, Path]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = randomise_bn(random_model("mobilenetv3", seed=2, input_size=128))
        force_detections(model, frames[0], people=4)
        d = tmp_path_factory.mktemp("fp16")
        fp32 = export_onnx(model, d / "m.onnx")
    finally:
        torch.set_num_threads(n)
    fp16, _ = convert_file(fp32, d / "m_fp16.onnx")
    emulated, _ = convert_file(fp32, d / "m_fp16_emulated.onnx", emulate=True)
    return fp32, fp16, emulated


def test_islands_are_the_heatmap_heads_outputs_and_pow(onnx_pair):
    _fp32, fp16, _ = onnx_pair
    proto = onnx.load(str(fp16))
    meta = read_onnx_meta(proto, str(fp16))
    assert meta.precision == "fp16"
    producers = {o: n for n in proto.graph.node for o in n.output}
    for out in ("center_map", "joint_maps", "params_maps"):
        assert producers[out].name in meta.fp32_islands
        assert out in [o.name for o in proto.graph.output]
    assert any(n.op_type == "Pow" and n.name in meta.fp32_islands for n in proto.graph.node)
    halves = [i for i in proto.graph.initializer if i.data_type == TensorProto.FLOAT16]
    assert len(halves) > 50, "the convolutions' weights should be FP16"
    sess = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float)"  # FP32 I/O: backends need no special casing
    assert all(o.type == "tensor(float)" for o in sess.get_outputs())


def test_fp16_finds_the_same_people_on_real_frames(onnx_pair, frames):
    fp32, _, emulated = onnx_pair
    rel, diff = fp16_report(fp32, emulated, frames, threads=1)
    assert diff.matched >= 4, diff.summary()
    assert diff.same_detections, diff.summary()
    assert diff.pose < 0.05 and diff.betas < 0.05 and diff.cam < 0.01, diff.summary()
    assert all(v < 1e-2 for v in rel.values()), rel
    assert any(v > 1e-6 for v in rel.values()), "emulated FP16 rounding must actually change the numbers"


def _tiny(nodes, inits):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("emulate", [False, True])
def test_exp_like_ops_stay_fp32(emulate):
    w = numpy_helper.from_array(np.full((1, 4), 2.0, np.float32), "w")
    nodes = [helper.make_node("Mul", ["x", "w"], ["a"], name="mul"), helper.make_node("Exp", ["a"], ["b"], name="exp"),
             helper.make_node("Add", ["b", "w"], ["y"], name="out")]
    half, islands = convert_to_fp16(_tiny(nodes, [w]), emulate=emulate)
    assert {"exp", "out"} <= set(islands) and "mul" not in islands
    onnx.checker.check_model(half)
    xv = np.linspace(-1, 6, 4, dtype=np.float32)[None]  # exp(12) = 162755 would overflow FP16 (max 65504)
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": xv})[0]
    np.testing.assert_allclose(got, np.exp(2 * xv.astype(np.float16).astype(np.float32)) + 2, rtol=2e-3)
    assert is_fp32_island("Softmax", ["t"], set()) and not is_fp32_island("Conv", ["t"], {"u"})


def test_emulation_really_rounds_to_fp16():
    """An FP16-region tensor above 65504 becomes inf, as it would in a TensorRT FP16 engine."""
    w = numpy_helper.from_array(np.full((1, 4), 300.0, np.float32), "w")
    nodes = [helper.make_node("Mul", ["x", "w"], ["a"], name="mul"), helper.make_node("Relu", ["a"], ["b"], name="r"),
             helper.make_node("Mul", ["b", "b"], ["c"], name="sq"), helper.make_node("Relu", ["c"], ["y"], name="out")]
    half, _ = convert_to_fp16(_tiny(nodes, [w]), emulate=True)
    xv = np.array([[1.0, 0.0011, 0.5, 0.001]], np.float32)
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": xv})[0]
    assert np.isinf(got[0, 0]) and np.isfinite(got[0, 1:]).all()
    assert got[0, 1] != np.float32(0.0011 * 300) ** 2  # intermediate rounded to FP16
