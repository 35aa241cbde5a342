"""Input-side faults: file names that are not UTF-8, images that decode to gigabytes, camera indices out of range,
video files served over HTTP, streams that never answer or go silent, native library chatter on stderr, pausing a
paced file, and output names for URLs.

Anything that could crash the interpreter (OpenCV segfaulted on non-UTF-8 str paths) runs in a child process, so a
regression fails the test instead of killing pytest.
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.capture import CaptureThread, FrameSource, ReconnectingSource, VideoSource, open_source, url_stem
from app.config import build_cfg, build_parser
from app.paths import MAX_IMAGE_PIXELS, Cv2Path, image_size, read_image
from engine.errors import CaptureError, ConfigError
from testing.scene import write_synthetic_video

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def child(code: str, *args: str | bytes, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (argv as given: bytes arguments reach it as surrogate-escaped str)."""
    return subprocess.run([PY, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, errors="replace",
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def png_bytes(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


# ---------------------------------------------------------------------------------------------- non-UTF-8 names
NON_UTF8_CHILD = """
import os, sys
from pathlib import Path
import cv2, numpy as np
from app.capture import list_images, open_source
from app.config import build_cfg, build_parser
from app.paths import Cv2Path, read_image, write_image
from app.session import open_input

folder = sys.argv[1]
name = os.fsdecode(b"caf\\xe9")
files = list_images(Path(folder))
src = open_source(folder)
img = src.read()
print("folder", len(files), img.shape, src.frame_name == name, int(img[0, 0, 2]))

src = open_source(os.path.join(folder, name + ".mp4"))
n = 0
while src.read() is not None:
    n += 1
link = src._cv2name.name
src.release()
print("video", type(src).__name__, src.name == name, n, os.path.lexists(link))

cfg = build_cfg(build_parser().parse_args(["--input", os.path.join(folder, name + ".mp4"), "--headless"]))
src = open_input(cfg)
n = 0
while src.read() is not None:
    n += 1
print("input", n, src.name == name)

target = os.path.join(folder, os.fsdecode(b"r\\xe9sultat.mp4"))
with Cv2Path(target) as cv2name:
    w = cv2.VideoWriter(cv2name, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(7):
        w.write(np.full((48, 64, 3), i * 30, np.uint8))
    w.release()
write_image(target + ".png", np.full((5, 6, 3), 77, np.uint8))
with Cv2Path(target) as cv2name:
    cap = cv2.VideoCapture(cv2name)
    n = 0
    while cap.read()[0]:
        n += 1
print("write", n, os.path.lexists(cv2name), read_image(target + ".png")[0, 0].tolist() == [77, 77, 77])
"""


@pytest.fixture(scope="module")
def non_utf8(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """One child process (torch start-up is the slow part) exercising every way a non-UTF-8 name reaches OpenCV:
    a folder listing, a video, the --input option, and writing a video and an image; one output line each."""
    tmp = tmp_path_factory.mktemp("latin1")
    d = os.fsencode(tmp)
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = (0, 0, 255)
    with open(d + b"/caf\xe9.png", "wb") as f:
        f.write(png_bytes(img))
    clip = write_synthetic_video(tmp / "plain.mp4", frames=12, fps=10.0, size=(64, 48))
    os.rename(os.fsencode(clip), d + b"/caf\xe9.mp4")
    p = child(NON_UTF8_CHILD, d)
    return p, {ln.split(" ", 1)[0]: ln for ln in p.stdout.splitlines()}


def check_child(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, f"rc {p.returncode} (-11 is the OpenCV segfault): {p.stderr[-1500:]}"


def test_non_utf8_image_in_a_folder_is_read_not_crashed(non_utf8):
    p, out = non_utf8
    check_child(p)
    assert out["folder"] == "folder 1 (40, 60, 3) True 255"  # the red half decoded: real pixels


def test_non_utf8_video_is_read_and_its_stand_in_link_removed(non_utf8):
    p, out = non_utf8
    check_child(p)
    assert out["video"] == "video VideoSource True 12 False"  # every frame; no link left after release


def test_non_utf8_input_option_opens_the_video(non_utf8):
    p, out = non_utf8
    check_child(p)
    assert out["input"] == "input 12 True"


def test_stand_in_name_lets_a_writer_use_a_non_utf8_path(non_utf8):
    p, out = non_utf8
    check_child(p)
    assert out["write"] == "write 7 False True"


def test_utf8_names_go_to_opencv_unchanged(tmp_path):
    p = tmp_path / "café.png"
    with Cv2Path(p) as name:
        assert name == str(p)
    bad = Cv2Path(os.fsdecode(os.fsencode(tmp_path) + b"/x\xff.avi"))
    assert bad.is_link and bad.name.isascii() and bad.name.endswith(".avi")
    bad.close()
    assert not os.path.lexists(bad.name)


# ---------------------------------------------------------------------------------------------- huge and bad images
def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` (the 106 KiB 30000x30000 kind), with a token IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


def test_huge_image_is_refused_before_decoding(tmp_path):
    f = tmp_path / "bomb.png"
    f.write_bytes(png_header_only(30000, 30000))
    t = time.perf_counter()
    with pytest.raises(CaptureError, match=r"30000x30000 pixels \(900 megapixels\), over the 120-megapixel limit"):
        read_image(f)
    assert time.perf_counter() - t < 1.0
    with pytest.raises(CaptureError, match="megapixel limit"):
        open_source(str(f))  # a single image fails at open, before any model is loaded


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm"])
def test_header_size_matches_the_encoder(ext):
    img = np.zeros((37, 53, 3), np.uint8)
    assert image_size(cv2.imencode(ext, img)[1].tobytes()) == (53, 37)


def test_header_cap_applies_to_jpeg_too():
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 20000, 20000)  # height, width in the frame header
    assert image_size(bytes(data)) == (20000, 20000)
    assert MAX_IMAGE_PIXELS < 20000 * 20000


def test_folder_skips_a_bad_image_with_one_warning(tmp_path, caplog):
    for name in ("a.png", "c.png"):
        (tmp_path / name).write_bytes(png_bytes(np.full((20, 30, 3), 9, np.uint8)))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "d.png").write_bytes(png_header_only(40000, 40000))
    src = open_source(str(tmp_path))
    got = []
    while (img := src.read()) is not None:
        got.append((src.frame_name, img.shape))
    assert got == [("a", (20, 30, 3)), ("c", (20, 30, 3))]
    assert [p.name for p in src.skipped] == ["b.png", "d.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "b.png" in warnings[0] and "40000x40000" in warnings[1]


def test_folder_where_nothing_decodes_fails_at_open(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(CaptureError, match=r"none of the 1 images in .* could be read"):
        open_source(str(tmp_path))


# ---------------------------------------------------------------------------------------------- camera index
def test_camera_index_out_of_range_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"--camera must be a camera index in 0\.\.9999"):
        build_cfg(build_parser().parse_args(["--camera", "1099511627776", "--headless"]))
    with pytest.raises(CaptureError, match="out of range"):
        open_source(1099511627776)  # never reaches cv2's overload error


# ---------------------------------------------------------------------------------------------- HTTP and streams
class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve(tmp_path) -> Iterator[str]:
    """A local HTTP server for ``tmp_path``; yields its base URL."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(tmp_path)))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_video_file_over_http_is_a_file_every_frame_in_order(tmp_path, serve):
    write_synthetic_video(tmp_path / "walk.mp4", frames=40, fps=25.0, size=(96, 64))
    src = open_source(f"{serve}/walk.mp4")
    assert isinstance(src, VideoSource) and not src.live and src.frame_count == 40
    assert src.name.startswith("127.0.0.1_") and src.name.endswith("_walk")
    cap = CaptureThread(src, mode="queue", queue_size=2).start()
    got = []
    while (f := cap.read(timeout=10)) is not None:
        got.append(f.index)
        time.sleep(0.002)  # a consumer slower than reading: back-pressure, nothing dropped
    cap.stop()
    assert got == list(range(40))  # ends at EOF: no reconnect, no replay
    cap = CaptureThread(open_source(f"{serve}/walk.mp4"), mode="queue", max_frames=25).start()
    n = 0
    while cap.read(timeout=10) is not None:
        n += 1
    cap.stop()
    assert n == 25


class MjpegServer:
    """An MJPEG-over-HTTP camera: each connection gets ``burst`` frames, then silence (connection held open)."""

    def __init__(self, burst: int, fps: float = 50.0) -> None:
        self.burst, self.fps = burst, fps
        self.connections = 0
        self.quit = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i in range(outer.burst):
                        jpg = cv2.imencode(".jpg", np.full((48, 64, 3), i * 20 % 255, np.uint8))[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpg) + jpg + b"\r\n")
                        self.wfile.flush()
                        time.sleep(1 / outer.fps)
                    outer.quit.wait(30)
                except OSError:
                    pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/video.mjpg"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.quit.set()
        self.srv.shutdown()
        self.srv.server_close()


def test_mjpeg_over_http_stays_live_and_a_silent_stream_is_reported_then_reconnected():
    cam = MjpegServer(burst=10)
    try:
        src = open_source(cam.url, timeout_s=2.0)
        assert isinstance(src, ReconnectingSource) and src.live
        cap = CaptureThread(src, mode="latest").start()
        last_frame = time.perf_counter()
        stalled_seen = reconnect_seen = None
        deadline = last_frame + 12
        while time.perf_counter() < deadline and src.reconnects == 0:
            try:
                if cap.read(timeout=0.05) is not None:
                    last_frame = time.perf_counter()
            except TimeoutError:
                pass
            if stalled_seen is None and src.status.startswith("no frames for") and cap.stalled_s >= 1.5:
                stalled_seen = time.perf_counter() - last_frame
            if reconnect_seen is None and "reconnecting" in src.status:
                reconnect_seen = time.perf_counter() - last_frame
        cap.stop()
    finally:
        cam.close()
    assert stalled_seen is not None and stalled_seen < 2.5, (stalled_seen, src.status)  # said within ~2 s
    assert reconnect_seen is not None and reconnect_seen < 4.0  # short read timeout, not FFmpeg's 30 s
    assert src.reconnects == 1 and cam.connections == 2


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(s.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{s.getsockname()[1]}/cam.mjpg"
    stop.set()
    for c in held:
        c.close()
    s.close()


def test_server_that_never_answers_fails_within_the_open_timeout(silent_server):
    t = time.perf_counter()
    with pytest.raises(CaptureError, match=r"no answer within 1 s"):
        open_source(silent_server, timeout_s=1.0)
    assert time.perf_counter() - t < 3.0


def test_server_that_closes_at_once_fails_fast():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(0.2)  # closing a socket does not wake a thread blocked in accept(): it polls ``done`` instead
    done = threading.Event()

    def slam() -> None:
        while not done.is_set():
            try:
                s.accept()[0].close()
            except TimeoutError:
                continue
            except OSError:
                return

    server = threading.Thread(target=slam, daemon=True)
    server.start()
    t = time.perf_counter()
    with pytest.raises(CaptureError, match=r"cannot open http://127\.0\.0\.1"):
        open_source(f"http://127.0.0.1:{s.getsockname()[1]}/x.mjpg")
    elapsed = time.perf_counter() - t
    done.set()
    server.join(5)
    s.close()
    assert elapsed < 3.0 and not server.is_alive()


def test_url_stems_name_the_stream_without_credentials():
    a = url_stem("rtsp://admin:s3cret@10.0.0.7:554/live/ch1")
    assert a == "10.0.0.7_554_live_ch1" and "s3cret" not in a
    assert url_stem("https://example.org/clips/walk.mp4?token=abc") == "example.org_clips_walk"
    assert url_stem("rtsp://cam-b.local/stream") != url_stem("rtsp://cam-a.local/stream")


# ---------------------------------------------------------------------------------------------- stderr: one line
def bad_files(tmp: Path) -> dict[str, Path]:
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    w = cv2.VideoWriter(str(tmp / "whole.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(10):
        w.write(np.full((48, 64, 3), i * 20, np.uint8))
    w.release()
    # cut inside the header: OpenCV's own AVI reader prints "Unexpected element. Expected: LIST" for this
    (tmp / "truncated.avi").write_bytes((tmp / "whole.avi").read_bytes()[:3000])
    jpg = bytearray(cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))[1])
    jpg[400:500] = b"\0" * 100  # libjpeg prints "Corrupt JPEG data: ..." for this
    (tmp / "corrupt.jpg").write_bytes(bytes(jpg))
    return {p.name: p for p in (tmp / "empty.mp4", tmp / "text.mp4", tmp / "truncated.avi", tmp / "corrupt.jpg")}


@pytest.mark.parametrize("name", ["empty.mp4", "text.mp4", "truncated.avi", "corrupt.jpg", "silent-server"])
def test_bad_input_prints_exactly_one_error_line(tmp_path, name, silent_server):
    """The real entry point (each case ~3-5 s of interpreter start-up; the silent server adds the 5 s timeout)."""
    target = silent_server if name == "silent-server" else str(bad_files(tmp_path)[name])
    # OPENCV_FFMPEG_LOGLEVEL: in-process tests that ran set_native_logging() left it in os.environ
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "OPENCV_FFMPEG_LOGLEVEL")}
    p = subprocess.run([PY, "run_app.py", "--headless", "--input", target], cwd=ROOT, env=env, capture_output=True,
                       text=True, errors="replace", timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 5 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-2000:]
    p = subprocess.run([PY, "run_app.py", "--headless", "--debug", "--input", target], cwd=ROOT, env=env,
                       capture_output=True, text=True, errors="replace", timeout=120) if name == "text.mp4" else None
    if p is not None:  # --debug keeps the libraries' own words (here FFmpeg's)
        assert "moov atom not found" in p.stderr


# ---------------------------------------------------------------------------------------------- pacing
class NumberedFile(FrameSource):
    """A non-live source of ``n`` numbered frames at ``fps`` (reads are instant, like a local file)."""

    def __init__(self, n: int, fps: float) -> None:
        self.n, self.fps, self.live, self.name, self.i = n, fps, False, "file", 0

    def read(self) -> np.ndarray | None:
        if self.i >= self.n:
            return None
        self.i += 1
        return np.full((4, 4, 3), self.i, np.uint8)


def test_paused_file_resumes_at_its_rate_and_loses_nothing():
    fps = 50.0
    cap = CaptureThread(NumberedFile(40, fps), mode="queue", pace=True).start()
    got: list[tuple[int, float]] = []
    while len(got) < 5:
        f = cap.read(timeout=5)
        got.append((f.index, time.perf_counter()))
    cap.set_paused(True)
    time.sleep(0.1)
    while True:  # what was read before the pause took effect
        try:
            f = cap.read(timeout=0.05)
        except TimeoutError:
            break
        got.append((f.index, time.perf_counter()))
    time.sleep(0.8)  # 40 frames' worth of pause
    cap.set_paused(False)
    resumed_at = len(got)
    while (f := cap.read(timeout=5)) is not None:
        got.append((f.index, time.perf_counter()))
    cap.stop()
    assert [i for i, _ in got] == list(range(40))
    after = [t for _, t in got[resumed_at:resumed_at + 11]]
    # 10 intervals at 50 fps take 0.2 s; pacing from the start time would burst them out at once after the pause
    assert after[-1] - after[0] >= 0.7 * 10 / fps, after[-1] - after[0]


def test_a_file_in_the_window_is_read_frame_by_frame(tmp_path, monkeypatch):
    """Window playback of a file uses the blocking queue with pacing (no newest-frame slot that drops frames)."""
    import types

    import app.session as session_mod
    from engine.body import create_body_model

    clip = write_synthetic_video(tmp_path / "c.mp4", frames=5, fps=25.0, size=(64, 48))
    body = create_body_model("anny")
    model = types.SimpleNamespace(info=types.SimpleNamespace(default_threshold=0.3))
    monkeypatch.setattr(session_mod, "open_model", lambda cfg: (model, body))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    session = session_mod.build_session(build_cfg(build_parser().parse_args(["--input", str(clip)])), render=True)
    try:
        cap = session.pipeline.capture
        assert cap.mode == "queue" and cap.pace and not session.pipeline.cfg.live
    finally:
        session.source.release()
