"""TensorRT: the engine file format runs everywhere; building and running engines needs a GPU (skipped otherwise)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ModelFileError
from engine.runtime.meta import ENGINE_MAGIC, ArtifactMeta, read_engine_file, write_engine_file
from engine.runtime.tensorrt_backend import tensorrt_status

TRT_OK, TRT_WHY = tensorrt_status()
gpu = pytest.mark.skipif(not TRT_OK, reason=f"no TensorRT/GPU here ({TRT_WHY})")
META = ArtifactMeta(model_cfg={"input_size": 128}, precision="fp16", onnx_sha256="ab" * 32,
                    tensorrt_version="10.3.0", gpu_name="NVIDIA H100")


def test_engine_header_roundtrip(tmp_path):
    path = write_engine_file(tmp_path / "m.engine", META, b"\x01\x02engine")
    meta, body = read_engine_file(path)
    assert meta == META and body == b"\x01\x02engine"


@pytest.mark.parametrize(("content", "match"), [
    (b"plain trtexec engine bytes", "not an InstanceHMR engine"),
    (ENGINE_MAGIC + (999).to_bytes(4, "little") + b"{}", "truncated"),
    (ENGINE_MAGIC + (5).to_bytes(4, "little") + b"{bad}engine", "not valid JSON"),
    (ENGINE_MAGIC + (2).to_bytes(4, "little") + b"{}engine", "no model_cfg"),
])
def test_corrupt_or_foreign_engine_files_are_refused(tmp_path, content, match):
    path = tmp_path / "m.engine"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=match):
        read_engine_file(path)


def test_engine_header_without_engine_is_refused(tmp_path):
    path = write_engine_file(tmp_path / "m.engine", META, b"")
    with pytest.raises(ModelFileError, match="no engine"):
        read_engine_file(path)


def test_engine_key_changes_with_every_part():
    pytest.importorskip("onnx")
    from export.tensorrt import engine_key

    base = ("ab", "10.3.0", "NVIDIA H100", "fp16")
    keys = {engine_key(*base)}
    for i, other in enumerate(("cd", "10.4.0", "NVIDIA L4", "fp32")):
        parts = list(base)
        parts[i] = other
        keys.add(engine_key(*parts))
    assert len(keys) == 5


@gpu
def test_fp16_engine_matches_onnxruntime(tmp_path):  # pragma: no cover - needs a GPU
    from engine.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from engine.runtime.tensorrt_backend import TensorRTBackend
    from export.onnx import export_onnx
    from export.tensorrt import build_engine
    from testing.random_models import random_model

    onnx_path = export_onnx(random_model("mobilenetv3", input_size=128), tmp_path / "m.onnx")
    engine = build_engine(onnx_path, tmp_path / "m.engine", fp16=True)
    meta, _ = read_engine_file(engine)
    assert meta.fp32_islands, "heatmap heads / pow must be pinned to FP32"
    trt_be, ort_be = TensorRTBackend(engine), OnnxRuntimeBackend(onnx_path, providers=("CPUExecutionProvider",))
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 128, 128)).astype(np.float32)
    a, b = trt_be.infer(x), ort_be.infer(x)
    for k in a:
        assert np.all(np.isfinite(a[k]))
        assert np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k])) < 2e-2


@gpu
def test_engine_from_another_gpu_or_version_is_refused(tmp_path):  # pragma: no cover - needs a GPU
    from engine.runtime.tensorrt_backend import TensorRTBackend

    path = write_engine_file(tmp_path / "m.engine", META, b"x")
    with pytest.raises(ModelFileError, match="not portable"):
        TensorRTBackend(path)
