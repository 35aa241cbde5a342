"""Backends behind one interface: same decoded people on real frames, auto selection, artifact cache, clear errors.

The network has random weights, calibrated (testing.random_models.force_detections) so that a few people pass the
threshold on vtest.avi with a wide margin, which makes "same people" a robust check rather than a coin flip.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
import torch

from engine.checkpoint import save_checkpoint
from engine.decode import decode_people
from engine.errors import BackendError, ConfigError, ModelFileError
from engine.preprocess import letterbox
from engine.runtime.auto import onnx_for_checkpoint, open_backend
from engine.runtime.onnxruntime_backend import OnnxRuntimeBackend
from engine.runtime.tensorrt_backend import tensorrt_status
from export.compare import compare_people
from testing.random_models import force_detections, random_model
from tests.conftest import needs_vtest, randomise_bn

SIZE = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, frames) -> Path:
    model = randomise_bn(random_model("mobilenetv3", seed=1, input_size=SIZE))
    n = force_detections(model, frames[0], people=4)
    assert n >= 2
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "calibrated.pt")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _people(backend, frames):
    out = []
    for f in frames:
        image, box = letterbox(f, backend.input_size)
        maps = backend.infer(image[None])
        out.append(decode_people(maps["center_map"][0], maps["params_maps"][0], box.input_size))
    return out


@needs_vtest
def test_all_cpu_backends_find_the_same_people(ckpt, cache, frames):
    ref = _people(open_backend(ckpt, "torch", threads=1), frames)
    assert sum(len(p) for p in ref) >= 4, "calibration should give people on the test frames"
    ort = open_backend(ckpt, "onnxruntime", cache)
    assert ort.spec.name == "onnxruntime" and ort.spec.device == "cpu"
    diff = compare_people(ref, _people(ort, frames))
    assert diff.same_detections, diff.summary()
    assert diff.cam < 1e-3 and diff.pose < 1e-3 and diff.betas < 1e-3, diff.summary()


@needs_vtest
def test_auto_says_what_it_picked_and_why(ckpt, cache):
    be = open_backend(ckpt, "auto", cache)
    usable, _why = tensorrt_status()
    if usable:
        assert be.spec.name == "tensorrt"
    else:
        assert be.spec.name == "onnxruntime"
        assert "auto picked onnxruntime (cpu)" in be.spec.note and "tensorrt (cuda) skipped" in be.spec.note
        assert "CPUExecutionProvider" in be.spec.note
        if not torch.cuda.is_available():  # every faster step names its own reason
            assert "torch (cuda) skipped: no CUDA device" in be.spec.note


@needs_vtest
def test_cache_reuses_and_rebuilds_on_content_change(ckpt, cache, tmp_path):
    own = tmp_path / "c.pt"
    own.write_bytes(ckpt.read_bytes())
    path, sha, built = onnx_for_checkpoint(own, cache)
    assert built
    again, _, built_again = onnx_for_checkpoint(own, cache)
    assert again == path and not built_again
    os.utime(own, None)  # touch: same content, same key, no rebuild
    assert onnx_for_checkpoint(own, cache)[2] is False
    model = torch.load(own, weights_only=True)
    model["model_state_dict"]["final_layers.1.2.bias"] += 1.0
    torch.save(model, own)
    new, new_sha, rebuilt = onnx_for_checkpoint(own, cache)
    assert rebuilt and new != path and new_sha != sha
    assert not path.exists(), "the stale export of the same checkpoint path is pruned"
    be = OnnxRuntimeBackend(new, expect_checkpoint_sha256=new_sha)
    assert be.meta.checkpoint_sha256 == new_sha
    with pytest.raises(ModelFileError, match="another checkpoint"):
        OnnxRuntimeBackend(new, expect_checkpoint_sha256=sha)


@needs_vtest
def test_corrupt_cached_onnx_is_rebuilt(ckpt, cache, tmp_path):
    own = tmp_path / "d.pt"
    own.write_bytes(ckpt.read_bytes())
    path, _, _ = onnx_for_checkpoint(own, cache)
    path.write_bytes(b"\x00garbage")
    be = open_backend(own, "onnxruntime", cache)
    assert be.spec.name == "onnxruntime" and onnx.load(str(path)) is not None


def test_corrupt_or_foreign_onnx_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        OnnxRuntimeBackend(bad)
    with pytest.raises(ModelFileError, match="not found"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8),
              str(foreign))
    with pytest.raises(ModelFileError, match="no 'instancehmr' metadata"):
        OnnxRuntimeBackend(foreign)


def test_open_backend_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown backend"):
        open_backend(tmp_path / "x.pt", "openvino")
    with pytest.raises(ModelFileError, match="not found"):
        open_backend(tmp_path / "missing.pt", "auto", tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"nope")
    with pytest.raises(ModelFileError):  # auto falls through to torch, which reports the checkpoint itself
        open_backend(garbage, "auto", tmp_path)


@pytest.mark.skipif(tensorrt_status()[0], reason="TensorRT is usable: the refusal path is not reachable")
def test_tensorrt_backend_refuses_cleanly_without_tensorrt(tmp_path):
    from engine.runtime.tensorrt_backend import TensorRTBackend

    with pytest.raises(BackendError) as e:
        TensorRTBackend(tmp_path / "m.engine")
    assert "\n" not in str(e.value)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"IHMRTRT1")
    with pytest.raises(BackendError):
        open_backend(engine, "auto")
