"""Capture (every frame vs newest frame, reconnection, bad sources) and recording (playable files, full disk)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.capture import CaptureThread, FrameSource, ImageListSource, ReconnectingSource, VideoSource, open_source
from app.recording import VideoRecorder, check_record_path
from engine.errors import CaptureError, OutputError
from testing.scene import write_synthetic_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=30, fps=25.0)


def drain(cap: CaptureThread, delay: float = 0.0) -> list[int]:
    got = []
    while True:
        f = cap.read(timeout=5)
        if f is None:
            return got
        got.append(f.index)
        time.sleep(delay)


def test_file_queue_mode_delivers_every_frame_to_a_slow_consumer(clip):
    cap = CaptureThread(VideoSource(str(clip)), mode="queue", queue_size=2).start()
    assert drain(cap, delay=0.005) == list(range(30))
    cap.stop()
    assert not cap.alive


class FakeCamera(FrameSource):
    """A live source producing numbered frames at a fixed rate; ``fail_after`` frames then it "unplugs"."""

    def __init__(self, fail_after: int | None = None, fps: float = 200.0) -> None:
        self.live = True
        self.name = "fake"
        self.fps = fps
        self.i = 0
        self.fail_after = fail_after

    def read(self) -> np.ndarray | None:
        if self.fail_after is not None and self.i >= self.fail_after:
            return None
        time.sleep(1 / self.fps)
        self.i += 1
        return np.full((8, 8, 3), self.i % 255, np.uint8)


def test_latest_mode_drops_stale_frames_and_counts_them():
    cap = CaptureThread(FakeCamera(), mode="latest", max_frames=60).start()
    got = drain(cap, delay=0.02)
    cap.stop()
    assert got == sorted(got) and len(got) < 40
    assert cap.dropped > 0 and cap.dropped + len(got) >= 59


def test_stop_is_prompt_with_a_blocked_producer(clip):
    cap = CaptureThread(VideoSource(str(clip)), mode="queue", queue_size=1).start()
    time.sleep(0.1)  # producer now blocked on a full queue
    t = time.perf_counter()
    cap.stop(timeout=3)
    assert not cap.alive and time.perf_counter() - t < 2.0


def test_reconnect_with_backoff_then_recover():
    opened = []

    def factory() -> FrameSource:
        opened.append(1)
        if len(opened) in (2, 3):  # the first two reopen attempts fail, the third works
            raise CaptureError("camera gone")
        return FakeCamera(fail_after=5)

    src = ReconnectingSource(factory, "fake", max_attempts=5, base_delay=0.01)
    frames = [src.read() for _ in range(8)]
    assert all(f is not None for f in frames)
    assert src.reconnects == 1 and src.status == "ok" and len(opened) == 4


def test_reconnect_gives_up_and_reports_lost():
    calls = []

    def factory() -> FrameSource:
        calls.append(1)
        if len(calls) > 1:
            raise CaptureError("camera gone")
        return FakeCamera(fail_after=3)

    src = ReconnectingSource(factory, "fake", max_attempts=3, base_delay=0.01)
    cap = CaptureThread(src, mode="latest").start()
    n = 0
    while cap.read(timeout=5) is not None:
        n += 1
    cap.stop()
    assert 1 <= n <= 3 and src.lost and src.status == "lost" and len(calls) == 4


def test_bad_sources_fail_with_one_line(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 1000)
    with pytest.raises(CaptureError, match=r"broken\.mp4"):
        open_source(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="no images in folder"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(CaptureError, match="not found"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(CaptureError, match="camera 7"):
        open_source(7)
    corrupt = tmp_path / "x.png"
    corrupt.write_bytes(b"not a png")
    with pytest.raises(CaptureError, match="cannot decode"):
        open_source(str(corrupt))  # at open, before a model is loaded
    with pytest.raises(CaptureError, match="cannot decode"):
        ImageListSource([corrupt])


def read_all(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps


def test_recorder_writes_a_playable_file(tmp_path):
    rec = VideoRecorder(tmp_path / "out.mp4", 20.0, (64, 48))
    for i in range(25):
        assert rec.write(np.full((48, 64, 3), i * 10, np.uint8))
    rec.close()
    rec.close()  # idempotent
    assert read_all(tmp_path / "out.mp4") == (25, 20.0)


def test_recorder_timed_mode_keeps_real_time_duration(tmp_path):
    rec = VideoRecorder(tmp_path / "t.mp4", 10.0, (32, 32), timed=True)
    for t in (0.0, 0.1, 0.5, 0.55, 1.0):  # slow processing: gaps are filled, early frames skipped
        rec.write(np.zeros((32, 32, 3), np.uint8), t)
    rec.close()
    assert read_all(tmp_path / "t.mp4")[0] == 11


def test_disk_full_stops_recording_and_keeps_a_playable_part(tmp_path):
    checks = []

    def free(_: Path) -> int:
        checks.append(1)
        return 10**12 if len(checks) <= 2 else 0  # the third check (frame 60) sees a full disk

    rec = VideoRecorder(tmp_path / "full.mp4", 25.0, (64, 48), disk_free=free)
    for i in range(100):
        rec.write(np.full((48, 64, 3), i, np.uint8))
    rec.close()
    assert "disk almost full" in rec.stopped_reason and not rec.active
    assert read_all(tmp_path / "full.mp4")[0] == 60


def test_record_path_checked_before_start(tmp_path):
    with pytest.raises(OutputError, match="extension"):
        check_record_path(tmp_path / "out.gif")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_record_path(tmp_path / "dir.mp4")
    with pytest.raises(OutputError, match="cannot create folder"):
        check_record_path(Path("/proc/nope/out.mp4"))
    with pytest.raises(OutputError, match="not writable"):
        check_record_path(Path("/proc/out.mp4"))
    check_record_path(tmp_path / "sub" / "ok.mp4")
    assert not (tmp_path / "sub" / "ok.mp4").exists()


class FakeWebcam:
    """cv2.VideoCapture of a webcam that has ``modes`` (width, height) and picks the nearest one asked for."""

    def __init__(self, modes: list[tuple[int, int]]) -> None:
        self.modes, self.mode, self.asked, self.fourcc = modes, modes[0], [None, None], None

    def __call__(self, index, *args):
        return self

    def isOpened(self) -> bool:
        return True

    def set(self, prop, value) -> bool:
        if prop == cv2.CAP_PROP_FOURCC:
            self.fourcc = int(value)
        elif prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            self.asked[prop == cv2.CAP_PROP_FRAME_HEIGHT] = int(value)
            if None not in self.asked:
                w, h = self.asked
                self.mode = min(self.modes, key=lambda m: abs(m[0] - w) + abs(m[1] - h))
        return True

    def get(self, prop) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: self.mode[0], cv2.CAP_PROP_FRAME_HEIGHT: self.mode[1],
                cv2.CAP_PROP_FPS: 30.0}.get(prop, 0.0)

    def read(self):
        return True, np.zeros((self.mode[1], self.mode[0], 3), np.uint8)

    def release(self) -> None:
        pass


def test_a_webcam_is_asked_for_the_size_and_mjpg_and_says_what_it_gave(monkeypatch, caplog):
    """--camera-size asks the webcam for that size in MJPG (USB webcams send 1280x720 uncompressed at ~10 FPS);
    a camera without that mode gives its nearest one, and one warning line says so. Without a size nothing is
    asked: the camera's own default stands."""
    cam = FakeWebcam([(640, 480), (1280, 720), (1920, 1080)])
    monkeypatch.setattr(cv2, "VideoCapture", cam)
    src = VideoSource(0, size=(1280, 720))
    assert src.read().shape == (720, 1280, 3) and cam.fourcc == cv2.VideoWriter.fourcc(*"MJPG")
    assert not [r for r in caplog.records if "asked for" in r.message]
    cam = FakeWebcam([(640, 480), (1280, 720)])
    monkeypatch.setattr(cv2, "VideoCapture", cam)
    with caplog.at_level("WARNING"):
        src = VideoSource(0, size=(1920, 1080))
    assert src.read().shape == (720, 1280, 3)
    assert [r.getMessage() for r in caplog.records if "asked for" in r.message] == [
        "camera 0 delivers 1280x720, not the 1920x1080 asked for (it has no such mode)"]
    cam = FakeWebcam([(640, 480), (1280, 720)])
    monkeypatch.setattr(cv2, "VideoCapture", cam)
    assert VideoSource(0).read().shape == (480, 640, 3) and cam.fourcc is None
    monkeypatch.setattr(cv2, "VideoCapture", FakeWebcam([(640, 480), (1280, 720)]))
    assert open_source(0, camera_size=(1280, 720)).read().shape == (720, 1280, 3)
