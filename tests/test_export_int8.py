"""CPU INT8 of the InstanceHMR network: QDQ everywhere except the FP32 islands, a people-parity report in the
metadata, and a runtime gate (``int8_for``) that refuses a failing, stale or foreign file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engine.decode import decode_people
from engine.preprocess import letterbox
from engine.runtime.onnxruntime_backend import OnnxRuntimeBackend
from export.int8 import (
    BACKBONE_SCOPE,
    DEFAULT_RULE,
    Int8Rule,
    _angles_deg,
    build_int8,
    head_nodes,
    int8_for,
    int8_path,
    read_int8_record,
)
from export.onnx import export_onnx, read_onnx_meta
from export.quantize import island_nodes
from testing.random_models import force_detections, random_model
from tests.conftest import randomise_bn

# accepts anything that matched at least one person: lets a random-weight network show the gate opening
LENIENT = Int8Rule(matched_frac=0.0, extra_frac=np.inf, root_deg_median=180.0, joint_deg_median=180.0,
                   cam_scale_rel_median=np.inf, min_people=1)


@pytest.fixture(scope="module")
def built(tmp_path_factory, frames):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = randomise_bn(random_model("mobilenetv3", seed=3, input_size=128))
        force_detections(model, frames[0], people=5)
        fp32 = export_onnx(model, tmp_path_factory.mktemp("int8") / "m.onnx")
    finally:
        torch.set_num_threads(n)
    # calibration and report on the same 4 real frames: this test checks the mechanics, not the accuracy; only the
    # islands float (not the whole head, the default) so that the island rule itself is what is checked
    return fp32, build_int8(fp32, calib_frames=frames, parity_frames=frames, threads=1, rule=LENIENT,
                            float_head=False)


def _weight_is_quantized(graph: onnx.GraphProto, node: onnx.NodeProto) -> bool:
    producer = {o: n for n in graph.node for o in n.output}
    w = producer.get(node.input[1])
    return w is not None and w.op_type == "DequantizeLinear"


def test_qdq_everywhere_but_the_islands(built):
    fp32, b = built
    assert b.path == int8_path(fp32) and b.path.is_file()
    q = onnx.load(str(b.path))
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    islands = set(island_nodes(onnx.load(str(fp32))))
    heads = {n for n in islands if n.endswith("Conv")}
    # the four head convs (centre, camera, parameters, joints) and the 1.1^x camera scale
    assert len(heads) == 4 and any(n.endswith("Pow") for n in islands)
    assert islands <= set(b.kept_float)
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    assert {n.name for n in convs} >= heads
    for conv in convs:
        assert _weight_is_quantized(q.graph, conv) == (conv.name not in heads), conv.name
    # the graph outputs come straight from float ops, never from a DequantizeLinear, and nothing quantises them
    producer = {o: n for n in q.graph.node for o in n.output}
    outputs = {o.name for o in q.graph.output}
    assert all(producer[o].op_type != "DequantizeLinear" for o in outputs)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in outputs for n in q.graph.node)


def test_default_float_head_is_everything_outside_the_backbone(built):
    fp32, _ = built
    model = onnx.load(str(fp32))
    head = set(head_nodes(model))
    backbone = {n.name for n in model.graph.node if n.name.startswith(BACKBONE_SCOPE)}
    assert backbone and head and not head & backbone
    assert head | backbone == {n.name for n in model.graph.node}
    assert set(island_nodes(model)) <= head


def test_parity_report_is_in_the_metadata_and_counts_add_up(built, frames):
    fp32, b = built
    meta = read_onnx_meta(onnx.load(str(b.path)), str(b.path))
    assert meta.precision == "int8" and set(meta.fp32_islands) == set(b.kept_float)
    rec = read_int8_record(b.path)
    assert rec is not None and rec["pass"] is b.passed and rec["parity"]["frames"] == len(frames)
    # the FP32 people count, recomputed independently with the app's letterbox + decoder
    ref = OnnxRuntimeBackend(fp32, intra_op_threads=1, providers=("CPUExecutionProvider",))
    total = 0
    for f in frames:
        img, box = letterbox(f, ref.input_size)
        m = ref.infer(img[None])
        total += len(decode_people(m["center_map"][0], m["params_maps"][0], box.input_size).center_preds)
    ref.close()
    p = b.parity
    assert total > 0 and p.fp32_people == total == rec["parity"]["fp32_people"]
    assert p.matched + p.missing == p.fp32_people and p.matched + p.extra == p.int8_people
    assert p.matched > 0 and np.isfinite(p.root_deg_median) and p.root_deg_median >= 0.0


def test_int8_for_gates_on_the_rule_and_the_source(built, tmp_path):
    fp32, b = built
    assert int8_for(fp32, LENIENT) == b.path
    assert int8_for(fp32, replace(LENIENT, matched_frac=1.01)) is None  # a rule it cannot pass
    assert int8_for(fp32, replace(LENIENT, root_deg_median=-1.0)) is None
    assert not b.parity.passes(replace(DEFAULT_RULE, min_people=10_000))
    # a different FP32 file next to a copy of the INT8 one: stale, refused
    other = tmp_path / "m.onnx"
    other.write_bytes(Path(fp32).read_bytes() + b"\0")
    int8_path(other).write_bytes(b.path.read_bytes())
    assert int8_for(other, LENIENT) is None
    assert int8_for(tmp_path / "missing.onnx", LENIENT) is None


def test_rotation_error_is_the_geodesic_angle():
    z30 = np.array([[0.0, 0.0, np.radians(30)]])
    x90 = np.array([[np.radians(90), 0.0, 0.0]])
    assert _angles_deg(z30, np.zeros((1, 3)))[0] == pytest.approx(30.0, abs=1e-6)
    assert _angles_deg(x90, x90)[0] == pytest.approx(0.0, abs=1e-4)
    assert _angles_deg(z30, -z30)[0] == pytest.approx(60.0, abs=1e-6)


def test_session_runs_the_int8_sibling_only_on_the_cpu(tmp_path, monkeypatch):
    """The app's choice: an exported .onnx on the CPU runs what ``int8_for`` approves; a GPU device, a checkpoint
    that is not ONNX, or an INT8 file that failed its rule keep the given file."""
    import export.int8 as int8
    from app.config import build_cfg, build_parser
    from app.session import _int8_if_passed

    onnx_file, approved = tmp_path / "m.onnx", tmp_path / "m_int8.onnx"
    onnx_file.write_bytes(b"x")
    cfg = build_cfg(build_parser().parse_args(["--headless", "--input", "x.mp4", "--checkpoint", str(onnx_file),
                                               "--device", "cpu"]))
    monkeypatch.setattr(int8, "int8_for", lambda p: approved)
    assert _int8_if_passed(cfg) == approved
    assert _int8_if_passed(cfg.changed(runtime={"device": "cuda"})) == onnx_file
    assert _int8_if_passed(cfg.changed(model={"checkpoint": tmp_path / "m.pt"})) == tmp_path / "m.pt"
    monkeypatch.setattr(int8, "int8_for", lambda p: None)  # missing, stale or failed its parity rule
    assert _int8_if_passed(cfg) == onnx_file
