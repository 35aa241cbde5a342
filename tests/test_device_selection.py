"""--device auto|cpu|cuda[:N]: parsing, the auto order and its recorded reasons, cpu never touching CUDA, one-line
errors without a GPU, and the runtime opening artifacts without importing the exporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.config import build_cfg, build_parser
from engine.checkpoint import save_checkpoint
from engine.errors import BackendError, ConfigError
from engine.runtime import artifacts
from engine.runtime.auto import AUTO_ORDER, Candidate, candidates, open_backend
from engine.runtime.device import Device, parse_device, providers_for
from engine.runtime.formats import BACKENDS, FORMATS
from export.artifacts import install_builder
from testing.random_models import random_model

NO_GPU = not torch.cuda.is_available()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    install_builder()  # ONNX exports are built on a cache miss, as in the app
    return save_checkpoint(random_model("mobilenetv3", seed=3, input_size=64),
                           tmp_path_factory.mktemp("dev") / "tiny.pt")


@pytest.mark.parametrize(("text", "want"), [("auto", Device("auto")), ("CPU", Device("cpu")),
                                            ("cuda", Device("cuda", 0)), ("cuda:3", Device("cuda", 3))])
def test_parse_device(text, want):
    got = parse_device(text)
    assert got == want and parse_device(str(got)) == got


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps"])
def test_parse_device_rejects_with_one_line(bad):
    with pytest.raises(ConfigError, match="unknown device") as e:
        parse_device(bad)
    assert "\n" not in str(e.value)


def test_cli_flag_reaches_the_config(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    base = ["--input", str(video), "--headless"]
    assert build_cfg(build_parser().parse_args(base)).runtime.device == "auto"
    assert build_cfg(build_parser().parse_args([*base, "--device", "cuda:1"])).runtime.device == "cuda:1"
    with pytest.raises(ConfigError, match="unknown device"):
        build_cfg(build_parser().parse_args([*base, "--device", "tpu"]))


def test_one_formats_table_drives_backends():
    from app import config
    from export import formats

    assert config.BACKENDS is BACKENDS and formats.FORMATS is FORMATS
    assert ("auto", *dict.fromkeys(f.backend for f in FORMATS.values())) == BACKENDS


def test_auto_order_and_device_filter():
    assert [str(c) for c in candidates("auto", Device("auto"))] == [
        "tensorrt (cuda)", "onnxruntime (cuda)", "torch (cuda)", "onnxruntime (cpu)", "torch (cpu)"]
    assert candidates("auto", Device("auto")) == AUTO_ORDER
    assert candidates("auto", Device("cpu")) == (Candidate("onnxruntime", "cpu"), Candidate("torch", "cpu"))
    assert candidates("torch", Device("cuda", 1)) == (Candidate("torch", "cuda"),)
    with pytest.raises(ConfigError, match="does not run on --device cpu"):
        candidates("tensorrt", Device("cpu"))


def test_device_cpu_never_touches_cuda(ckpt, tmp_path, monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("CUDA was probed for --device cpu")

    monkeypatch.setattr(torch.cuda, "is_available", boom)
    monkeypatch.setattr(torch.cuda, "device_count", boom)
    be = open_backend(ckpt, "auto", tmp_path, threads=1, device="cpu")
    assert be.spec.device == "cpu" and be.spec.name == "onnxruntime"
    assert "auto picked onnxruntime (cpu)" in be.spec.note and "cuda" not in be.spec.note.split("auto picked")[1]
    assert open_backend(ckpt, "torch", tmp_path, threads=1, device="cpu").spec.device == "cpu"
    assert providers_for("cpu") == ("CPUExecutionProvider",)


@pytest.mark.skipif(not NO_GPU, reason="a GPU is visible: the no-GPU error is not reachable")
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_device_cuda_without_gpu_is_one_clear_line(ckpt, tmp_path, backend):
    with pytest.raises(BackendError) as e:
        open_backend(ckpt, backend, tmp_path, device="cuda")
    msg = str(e.value)
    assert msg == "no CUDA device: torch.cuda.is_available() is False; use --device cpu"


@pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")
def test_auto_records_every_gpu_skip_then_picks_the_cpu(ckpt, tmp_path):
    be = open_backend(ckpt, "auto", tmp_path, threads=1)
    note = be.spec.note
    assert be.spec.device == "cpu"
    for step in ("tensorrt (cuda) skipped", "onnxruntime (cuda) skipped", "torch (cuda) skipped: no CUDA device"):
        assert step in note, note


def test_ort_cuda_request_without_onnxruntime_gpu(monkeypatch):
    from engine.runtime import device

    monkeypatch.setattr(device, "ort_gpu_providers", lambda: ())
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        providers_for("cuda")
    monkeypatch.setattr(device, "ort_gpu_providers", lambda: ("CUDAExecutionProvider",))
    assert providers_for("cuda:0") == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert providers_for("auto") is None


def test_runtime_without_a_builder_names_the_export_command(ckpt, tmp_path):
    previous = artifacts.set_builder(None)
    try:
        with pytest.raises(BackendError, match="python -m export onnx") as e:
            open_backend(ckpt, "onnxruntime", tmp_path / "empty-cache", device="cpu")
        assert "\n" not in str(e.value)
        # torch needs no artifact: still opens
        assert open_backend(ckpt, "auto", tmp_path / "empty-cache", threads=1, device="cpu").spec.name == "torch"
    finally:
        artifacts.set_builder(previous)


def test_engine_never_imports_export():
    root = Path(__file__).resolve().parent.parent / "engine"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if any(line.strip().startswith(("from export", "import export"))
                        for line in p.read_text().splitlines())]
    assert offenders == []


def test_onnx_graph_follows_the_device_choice(monkeypatch):
    from app.config import REALFOOTAGE_DIR
    from engine.runtime import device
    from engine.runtime.graph import OnnxGraph

    path = REALFOOTAGE_DIR / "blazepose_lite.onnx"
    g = OnnxGraph(path, (), (), device="cpu")
    assert g.providers == ("CPUExecutionProvider",) and g.device == "cpu"
    g.close()
    monkeypatch.setattr(device, "ort_gpu_providers", lambda: ())
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        OnnxGraph(path, (), (), device="cuda")


def test_cpu_sessions_never_spin_and_more_threads_give_the_same_landmarks():
    """Idle intra-op workers sleep (a spinning one takes the core the render and encode stages need), and the
    thread count changes the speed of a landmark crop, not its numbers (the tracker is deterministic)."""
    from app.config import REALFOOTAGE_DIR
    from engine.runtime.graph import OnnxGraph

    crops = np.random.default_rng(0).random((3, 256, 256, 3), dtype=np.float32)
    outs = []
    for threads in (1, 2):
        g = OnnxGraph(REALFOOTAGE_DIR / "blazepose_lite.onnx", (), ("landmarks", "poseflag"), threads, device="cpu")
        opts = g.session.get_session_options()
        assert opts.intra_op_num_threads == threads
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        outs.append(g.run({g.input_names[0]: crops}))
        g.close()
    for k in ("landmarks", "poseflag"):
        np.testing.assert_array_equal(outs[0][k], outs[1][k])


def test_app_session_opens_the_model_on_the_chosen_device(tmp_path):
    from app.config import DEMO_CHECKPOINT
    from app.session import open_model

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    base = ["--input", str(video), "--headless", "--checkpoint", str(DEMO_CHECKPOINT), "--backend", "torch"]
    model, _ = open_model(build_cfg(build_parser().parse_args([*base, "--device", "cpu"])))
    assert model.info.backend == "torch cpu fp32"
    model.close()
    if NO_GPU:
        with pytest.raises(BackendError, match="no CUDA device"):
            open_model(build_cfg(build_parser().parse_args([*base, "--device", "cuda"])))


def test_tracker_models_follow_the_device_choice(tmp_path):
    """The real-footage model (and the pose-guided ones, which share its tracker) take --device too: cuda on the
    CPU-only onnxruntime wheel is one clear line, cpu opens on the CPU provider."""
    from app.config import REALFOOTAGE_DIR
    from engine.body import create_body_model
    from engine.errors import BackendError
    from engine.frame_models import open_realfootage, open_tracker

    body = create_body_model("anny")
    with pytest.raises(BackendError, match=r"onnxruntime-gpu|--device cpu"):
        open_realfootage(REALFOOTAGE_DIR, body, device="cuda")
    tracker, where, _, _ = open_tracker(REALFOOTAGE_DIR, device="cpu")
    assert where == "cpu"
    assert tracker.landmarks.graph.providers == ("CPUExecutionProvider",)


def test_a_background_detector_takes_one_thread_on_the_cpu():
    """The detector that runs beside the landmark crops gets one intra-op thread (two of its own beside the
    landmark network's two oversubscribed the two cores); on the model's own thread it gets what the others get."""
    from app.config import REALFOOTAGE_DIR
    from engine.frame_models import open_tracker

    behind = open_tracker(REALFOOTAGE_DIR, landmarks="mixed", threads=2, detect_lag=2, device="cpu").tracker
    assert behind.detector.graph.note.endswith("intra_op=1")
    assert behind.landmarks.graph.note.endswith("intra_op=2") and behind.follow.graph.note.endswith("intra_op=2")
    inline = open_tracker(REALFOOTAGE_DIR, landmarks="mixed", threads=2, detect_lag=0, device="cpu").tracker
    assert inline.detector.graph.note.endswith("intra_op=2")
