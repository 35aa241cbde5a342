"""The threaded pipeline with the real network and body model: live mode drops stale frames (counted) under a slow
consumer, file mode loses nothing, ``stop()`` joins every thread, a camera that disappears ends the run with a
clear error after the outputs are saved, and the SMPL body (synthetic file) renders through the simplified mesh."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.capture import FrameSource, ReconnectingSource
from app.config import build_cfg, build_parser
from app.pipeline import LiveSettings, Pipeline, PipelineCfg
from app.session import build_session, live_faces
from engine.body import create_body_model
from engine.checkpoint import load_network
from engine.errors import CaptureError
from engine.frame_models.bottomup import BottomUpModel
from engine.runtime.torch_backend import TorchBackend
from testing.scene import write_synthetic_video

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def engine_parts(ckpt):
    torch.set_num_threads(1)
    return BottomUpModel(TorchBackend(load_network(ckpt), threads=1)), create_body_model("anny")


class Camera(FrameSource):
    def __init__(self, frames: int | None = None, fps: float = 100.0) -> None:
        self.live, self.name, self.fps = True, "cam", fps
        self.i, self.frames = 0, frames

    def read(self) -> np.ndarray | None:
        if self.frames is not None and self.i >= self.frames:
            return None
        time.sleep(1 / self.fps)
        self.i += 1
        img = np.full((120, 160, 3), 90, np.uint8)
        img[:, (self.i * 3) % 160] = 255
        return img


def test_live_mode_drops_stale_frames_and_stops_cleanly(engine_parts):
    model, body = engine_parts
    got = []

    def slow_consumer(out) -> None:
        got.append(out.frame.index)
        time.sleep(0.05)

    pipe = Pipeline(Camera(), model, body, LiveSettings(), PipelineCfg(live=True), on_output=slow_consumer)
    pipe.start()
    time.sleep(2.0)
    t = time.perf_counter()
    pipe.stop(timeout=5)
    assert time.perf_counter() - t < 5
    assert not pipe.capture.alive and all(not st.is_alive() for st in pipe._stages)
    snap = pipe.snapshot()
    assert got == sorted(got) and len(got) >= 5
    assert snap.dropped_capture + snap.dropped_render > 0  # the camera (100 fps) outran the consumer
    assert pipe.error is None


def test_file_mode_processes_every_frame(engine_parts, tmp_path):
    from app.capture import VideoSource

    model, body = engine_parts
    clip = write_synthetic_video(tmp_path / "c.mp4", frames=12)
    got = []
    pipe = Pipeline(VideoSource(str(clip)), model, body, LiveSettings(), PipelineCfg(live=False),
                    on_output=lambda out: (got.append(out.frame.index), time.sleep(0.02)))
    pipe.start()
    assert pipe.wait(60)
    pipe.stop()
    assert got == list(range(12)) and pipe.error is None
    assert set(pipe.stats.summary()["stages_ms"]) >= {"capture", "preprocess", "inference", "decode", "track",
                                                      "body_model", "render"}


def test_camera_lost_mid_run_ends_with_error_after_saving(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCEHMR_CACHE_DIR", str(tmp_path / "cache"))
    opened = []

    def factory() -> FrameSource:
        opened.append(1)
        if len(opened) > 1:
            raise CaptureError("camera 0 not found")
        return Camera(frames=15, fps=50)

    import app.session as session_mod

    monkeypatch.setattr(session_mod, "open_source",
                        lambda spec, **kw: ReconnectingSource(factory, "camera0", max_attempts=2, base_delay=0.01))
    cfg = build_cfg(build_parser().parse_args(["--camera", "0", "--headless", "--checkpoint", str(ckpt),
                                               "--backend", "torch", "--save-npz", str(tmp_path),
                                               "--record", str(tmp_path / "cam.mp4")]))
    from app.headless import run_headless

    session = build_session(cfg, render=True)
    with pytest.raises(CaptureError, match="disappeared"):
        run_headless(session)
    d = np.load(tmp_path / "camera0.npz")
    assert int(d["num_frames"]) >= 1  # what was processed before the camera vanished is saved
    assert (tmp_path / "cam.mp4").stat().st_size > 0


def test_smpl_body_with_simplified_live_mesh(engine_parts, tmp_path):
    from synthetic_smpl import make_synthetic_smpl, write_npz

    model, _ = engine_parts
    path = write_npz(tmp_path / "SMPL_NEUTRAL.npz", make_synthetic_smpl())
    body = create_body_model("smpl", smpl_path=path)
    faces = live_faces(body, 1600)
    assert faces is not None and len(faces) <= 1600 and len(body.faces) == 13776
    out = []
    done = threading.Event()
    src = Camera(frames=3)
    src.live = False
    pipe = Pipeline(src, model, body, LiveSettings(), PipelineCfg(live=False, live_faces=faces),
                    on_output=out.append, on_end=done.set)
    pipe.start()
    assert done.wait(60)
    pipe.stop()
    assert len(out) == 3 and out[-1].meshes.vertices.shape[1] == 6890
    assert out[-1].overlay is not None and pipe.mesh_annotator.last_faces_drawn <= 1600 * len(out[-1].people)


def test_ui_package_never_imports_torch():
    code = ("import sys; import app.ui.main_window, app.ui.bridge, app.ui.view3d, app.ui.widgets; "
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'engine.runtime') if m in sys.modules]; "
            "assert not bad, bad")
    import subprocess

    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "QT_QPA_PLATFORM": "offscreen"})
    assert p.returncode == 0, p.stderr[-1500:]


def test_session_freezes_start_up_objects_and_a_new_session_frees_the_old(tmp_path):
    """The collector's passes hold the GIL every stage needs, so start-up objects are frozen once the session is
    built; building the next one (the window opening another input) unfreezes first, so what the previous session
    left in reference cycles is collected, not kept for good."""
    import gc
    import weakref

    class Node:
        pass

    video = write_synthetic_video(tmp_path / "clip.mp4", frames=5)
    cfg = build_cfg(build_parser().parse_args(["--input", str(video), "--headless"]))
    cycle = Node()
    cycle.self = cycle
    alive = weakref.ref(cycle)
    first = build_session(cfg, render=False)
    try:
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert alive() is not None  # frozen with the start-up objects: the collector leaves it
        second = build_session(cfg, render=False)
        second.source.release()
        assert alive() is None
    finally:
        first.source.release()
        gc.unfreeze()
