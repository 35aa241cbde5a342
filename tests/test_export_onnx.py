"""ONNX export: metadata, static graph, parity with PyTorch, dynamic batch, and the CLI's one-line errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from engine.errors import ModelFileError
from engine.runtime.base import INPUT_NAME, OUTPUT_NAMES
from engine.runtime.meta import META_KEY, SCHEMA, ArtifactMeta
from engine.runtime.onnxruntime_backend import OnnxRuntimeBackend
from export.__main__ import main
from export.onnx import export_onnx, parity_check, read_onnx_meta
from testing.random_models import random_model
from tests.conftest import randomise_bn

SIZE = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mbv3():
    return randomise_bn(random_model("mobilenetv3", input_size=SIZE)).eval()


@pytest.fixture(scope="module")
def fixed_onnx(tmp_path_factory, mbv3):
    return export_onnx(mbv3, tmp_path_factory.mktemp("onnx") / "m.onnx", checkpoint_sha256="ab" * 32)


def test_metadata_describes_the_model(fixed_onnx, mbv3):
    proto = onnx.load(str(fixed_onnx))
    meta = read_onnx_meta(proto, str(fixed_onnx))
    assert meta.model_cfg == mbv3.cfg.to_dict()
    assert (meta.schema, meta.batch, meta.max_batch, meta.checkpoint_sha256) == (SCHEMA, 1, 1, "ab" * 32)
    raw = next(p.value for p in proto.metadata_props if p.key == META_KEY)
    assert json.loads(raw)["app_version"] == meta.app_version  # plain JSON, readable by any tool


def test_graph_is_static_and_host_decodes(fixed_onnx):
    g = onnx.load(str(fixed_onnx)).graph
    assert [i.name for i in g.input] == [INPUT_NAME]
    assert [o.name for o in g.output] == list(OUTPUT_NAMES)
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, SIZE, SIZE]
    ops = {n.op_type for n in g.node}
    assert not ops & {"NonZero", "TopK", "Loop", "If"}  # no data-dependent shapes: decoding stays on the host
    # an `x + eps` guard would be folded away by optimisers; guards must be clamps (Clip/Max)
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Add":
            for name in n.input:
                v = inits.get(name)
                assert v is None or v.size > 1 or abs(float(v)) >= 1e-4, f"epsilon Add in {n.name}"


def test_parity_with_torch_on_a_real_image(fixed_onnx, mbv3):
    report = parity_check(fixed_onnx, mbv3, tolerance=1e-4)
    assert report.ok, report.lines()
    assert set(report.max_abs) == set(OUTPUT_NAMES)


def test_dynamic_batch_range(tmp_path, mbv3):
    path = export_onnx(mbv3, tmp_path / "dyn.onnx", max_batch=2)
    be = OnnxRuntimeBackend(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, SIZE, SIZE)).astype(np.float32)
    with torch.inference_mode():
        ref = mbv3(torch.from_numpy(x))
    got = be.infer(x)
    for k in OUTPUT_NAMES:
        np.testing.assert_allclose(got[k], ref[k].numpy(), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="batch"):
        be.infer(np.zeros((3, 3, SIZE, SIZE), np.float32))


def test_meta_refuses_other_schema_and_io():
    meta = ArtifactMeta(model_cfg={"input_size": 128})
    with pytest.raises(ModelFileError, match="schema"):
        ArtifactMeta.from_json(meta.to_json().replace(f'"schema": {SCHEMA}', '"schema": 99'), "x.onnx")
    with pytest.raises(ModelFileError, match="I/O"):
        ArtifactMeta.from_json(meta.to_json().replace('"images"', '"input"'), "x.onnx")
    with pytest.raises(ModelFileError, match="JSON"):
        ArtifactMeta.from_json("{not json", "x.onnx")


def test_cli_onnx_export_and_parity_exit_codes(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    rc = main(["onnx", "--model", "mobilenetv3", "--input-size", str(SIZE), "--output", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    assert "center_map" in text and "max rel" in text and "ok" in text
    rc = main(["onnx", "--model", "mobilenetv3", "--input-size", str(SIZE), "--output", str(out),
               "--tolerance", "0"])  # nothing is bit-exact: the parity check must fail with a non-zero exit
    err = capsys.readouterr().err
    assert rc == 7 and err.count("\n") == 1 and "differs from PyTorch" in err


def test_cli_tensorrt_without_gpu_is_one_line(tmp_path, capsys, fixed_onnx):
    from engine.runtime.tensorrt_backend import tensorrt_status

    usable, _ = tensorrt_status()
    if usable:
        pytest.skip("TensorRT and a GPU are present: the no-GPU message is not reachable here")
    rc = main(["tensorrt", "--onnx", str(fixed_onnx), "--output", str(tmp_path / "m.engine"), "--fp16"])
    err = capsys.readouterr().err
    assert rc == 4 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "m.engine").exists()
