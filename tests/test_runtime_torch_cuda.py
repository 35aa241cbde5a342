"""The torch CUDA path, exercised on the CPU: the same classes with FP32 / no graph (or a capture double), the
GPU letterbox against OpenCV's, the device-side decoder against the host one, the FP32 islands under FP16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.decode import DecodeCfg, decode_people, decode_people_torch
from engine.errors import BackendError
from engine.preprocess import letterbox, letterbox_torch
from engine.runtime.torch_backend import TorchBackend
from engine.runtime.torch_cuda import Fp32Island, StaticShapeRunner, TorchCudaBackend, eager_capture
from export.compare import compare_people
from testing.random_models import force_detections, random_model
from tests.conftest import randomise_bn

SIZE = 128
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed: int = 2):
    return randomise_bn(random_model("mobilenetv3", seed=seed, input_size=SIZE))


@pytest.mark.parametrize(("h", "w", "size"), [(576, 768, 128), (720, 1280, 256), (97, 61, 64), (50, 40, 64)])
def test_gpu_letterbox_matches_opencv_within_one_grey_level(h, w, size):
    rng = np.random.default_rng(h * w)
    # smooth content plus noise: both the interpolation weights and the saturation at 0/255 are exercised
    yy, xx = np.mgrid[0:h, 0:w]
    base = (127 + 127 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[..., None]) * np.ones((1, 1, 3))
    frame = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    ref, box = letterbox(frame, size)
    got, gbox = letterbox_torch(torch.from_numpy(frame), size)
    assert gbox == box and tuple(got.shape) == ref.shape and got.dtype == torch.float32
    diff = np.abs(got.numpy() - ref)
    assert diff.max() <= 1.0, diff.max()
    assert diff.mean() < 0.05


def test_gpu_letterbox_on_a_real_frame(frames):
    ref, _ = letterbox(frames[0], 256)
    got, _ = letterbox_torch(torch.from_numpy(frames[0]), 256)
    assert np.abs(got.numpy() - ref).max() <= 1.0


def test_gpu_letterbox_rejects_grey():
    with pytest.raises(ValueError, match="colour frame"):
        letterbox_torch(torch.zeros(10, 10, dtype=torch.uint8), 64)


@pytest.mark.parametrize("threshold", [0.2, -np.inf])
def test_device_decoder_equals_host_decoder(threshold):
    rng = np.random.default_rng(5)
    cmap = rng.normal(0, 0.3, (1, 16, 16)).astype(np.float32)
    cmap[0, 3, 4] = cmap[0, 3, 6] = 0.9  # a tie between two peaks: order must follow the flat index
    params = rng.normal(0, 1, (82, 16, 16)).astype(np.float32)
    params[0] = np.abs(params[0]) + 0.5
    cfg = DecodeCfg(threshold=threshold, max_people=10)
    ref = decode_people(cmap, params, SIZE, cfg)
    got = decode_people_torch(torch.from_numpy(cmap), torch.from_numpy(params), SIZE, cfg)
    assert len(ref) == len(got) > 1
    np.testing.assert_array_equal(got.center_preds, ref.center_preds)
    np.testing.assert_allclose(got.center_confs, ref.center_confs)
    np.testing.assert_allclose(got.body_pose, ref.body_pose)
    np.testing.assert_allclose(got.cam_trans, ref.cam_trans, rtol=1e-6)
    empty = decode_people_torch(torch.full((1, 8, 8), -1.0), torch.zeros(82, 8, 8), SIZE)
    assert len(empty) == 0


def test_static_runner_captures_once_per_shape_and_reuses_its_buffer():
    calls: list[tuple[int, ...]] = []
    seen_inputs: list[int] = []

    def fn(x):
        return {"y": x * 2.0}

    def capture(f, static_in):
        calls.append(tuple(static_in.shape))
        seen_inputs.append(static_in.data_ptr())
        return lambda: f(static_in)

    run = StaticShapeRunner(fn, capture)
    a = torch.arange(24.0).reshape(1, 2, 3, 4)
    assert torch.equal(run(a)["y"], a * 2)
    b = a + 1
    assert torch.equal(run(b)["y"], b * 2), "the replay must see the new input copied into the static buffer"
    assert run.captures == 1 and calls == [(1, 2, 3, 4)]
    c = torch.ones(3, 2, 3, 4)  # batch 3: a new shape, a new buffer and capture
    assert torch.equal(run(c)["y"], c * 2)
    assert run.captures == 2 and calls[-1] == (3, 2, 3, 4)
    assert run(a)["y"].shape == a.shape and run.captures == 3
    assert run._static_in.is_contiguous(memory_format=torch.channels_last)


def test_torch_cuda_backend_refuses_without_gpu_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(BackendError) as e:
        TorchCudaBackend(_model(), "cuda:0")
    assert str(e.value) == "no CUDA device: torch.cuda.is_available() is False; use --device cpu"
    with pytest.raises(BackendError, match="need a CUDA device"):
        TorchCudaBackend(_model(), "cpu", fp16=True)


def test_fp32_path_on_cpu_matches_the_reference_backend(frames):
    model = _model()
    assert force_detections(model, frames[0], people=4) >= 2
    ref = TorchBackend(_clone(model), threads=1)
    be = TorchCudaBackend(_clone(model), "cpu", fp16=False, cuda_graphs=False)
    assert be.spec.precision == "fp32" and "eager" in be.spec.note
    x = letterbox(frames[0], SIZE)[0][None]
    a, b = ref.infer(x), be.infer(x)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-4)
    # the GPU-resident frame path (upload, letterbox, infer, decode on the device) finds the same people
    host = []
    for f in frames:
        maps = ref.infer(letterbox(f, SIZE)[0][None])
        host.append(decode_people(maps["center_map"][0], maps["params_maps"][0], SIZE))
    dev = [be.frame_people(f)[0] for f in frames]
    diff = compare_people(host, dev)
    assert sum(len(p) for p in host) >= 2 and diff.same_detections, diff.summary()
    assert diff.cam < 0.05 and diff.pose < 0.05, diff.summary()


def test_fp16_islands_keep_the_outputs_fp32(frames):
    model = _model()
    force_detections(model, frames[0], people=4)
    ref = TorchBackend(_clone(model), threads=1)
    be = TorchCudaBackend(_clone(model), "cpu", fp16=True, capture=eager_capture)  # CPU autocast, same code
    assert be.spec.precision == "fp16" and "final_layers.1.2" in be.spec.note
    assert sum(isinstance(m, Fp32Island) for m in be.model.modules()) == 3
    out = be.forward_tensor(torch.from_numpy(letterbox(frames[0], SIZE)[0][None]))
    assert all(v.dtype == torch.float32 for v in out.values()), {k: v.dtype for k, v in out.items()}
    x = letterbox(frames[0], SIZE)[0][None]
    a, b = ref.infer(x), be.infer(x)
    rel = {k: float(np.abs(b[k] - a[k]).max() / (np.abs(a[k]).max() + 1e-9)) for k in a}
    assert all(v < 0.05 for v in rel.values()), rel  # FP16 rounding, not a different network
    assert any(v > 0 for v in rel.values()), "autocast did not run anything in FP16"


def _clone(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.usefixtures("frames")
def test_export_fp16_reports_the_torch_path(capsys):
    from export.__main__ import main

    rc = main(["fp16", "--model", "mobilenetv3", "--input-size", str(SIZE), "--device", "cpu", "--frames", "2",
               "--people", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "torch FP16" in out and "FP32 islands" in out and "max rel map error: center_map" in out
    people = next(ln for ln in out.splitlines() if ln.startswith("decoded people"))
    assert " 0 missing, 0 extra" in people and not people.split(":")[1].strip().startswith("2 frames: 0 people")


def test_export_fp16_on_cuda_without_gpu_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from export.__main__ import main

    assert main(["fp16", "--model", "mobilenetv3", "--device", "cuda"]) == 4
    assert capsys.readouterr().err.strip() == ("error: no CUDA device: torch.cuda.is_available() is False; "
                                               "use --device cpu")
