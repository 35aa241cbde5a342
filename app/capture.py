"""Frame sources and the capture thread.

Sources open eagerly and read one frame before any thread exists, so a bad camera index, a corrupt video or an
empty folder fails with one clear line at start-up instead of an empty window. The capture thread then hands frames
out in one of two ways:

* ``latest`` (cameras, live streams): a one-slot buffer where the newest frame wins, so latency never builds up
  behind a slow stage; overwritten frames are counted as drops.
* ``queue`` (every file, in the window too, and video files served over HTTP): a bounded blocking queue, so every
  frame is processed in order and a slow consumer only slows reading down (back-pressure, no loss).

What counts as live: a camera, an ``rtsp://``-like URL, and an ``http(s)://`` URL whose container reports no
finite length (MJPEG and similar). An ``http(s)://`` URL with a frame count (or a video-file extension) is a file:
every frame, in order, ending at its end, never "reconnected" and replayed.

Streams open and read with short timeouts (:data:`STREAM_TIMEOUT_S`): a server that accepts and never answers
fails in seconds, not after FFmpeg's 30 s default. A live source that stops delivering says so (``stalled_s``,
and ``status`` "no frames for N s") long before a read times out, so a frozen picture is never shown as live.

Reconnection is composition: :class:`ReconnectingSource` wraps a source factory with bounded attempts and
exponential backoff and exposes its state for the UI.

OpenCV never gets a file name from here directly: images go through :func:`app.paths.read_image` (bytes +
decode, with a pixel cap) and videos through :class:`app.paths.Cv2Path` (see there for why).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from engine.errors import CaptureError

from .paths import Cv2Path, check_pixels, cv2_safe, native_stderr_muted, read_image, set_native_logging, shown
from .stages import Handoff, Pacer, Stage

log = logging.getLogger(__name__)

__all__ = ["CaptureThread", "Frame", "FrameSource", "ImageListSource", "ReconnectingSource", "VideoSource",
           "list_images", "open_source", "set_native_logging", "url_stem"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "rtmps://", "udp://", "tcp://", "srt://")
SEEKABLE_SCHEMES = ("http", "https")  # schemes that may serve a whole file rather than a live stream
# a URL path ending like this names a file even if the container does not report its length
VIDEO_FILE_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
THREAD_TIMEOUT = 1.0  # every blocking get/put/wait in this module is bounded by this
STREAM_TIMEOUT_S = 5.0  # open and per-read timeout for URLs (FFmpeg's default is 30 s)
STALL_NOTICE_S = 1.5  # a live source without a frame for this long reports "no frames for N s"
MAX_CAMERA_INDEX = 2**31 - 1  # what cv2.VideoCapture(int) accepts; more is a cv2 overload error


@dataclass
class Frame:
    """One captured frame.

    Attributes:
        index: 0-based frame number in the source (video frame / image index / camera frame counter).
        image: BGR uint8 [H, W, 3].
        t_capture: ``time.perf_counter()`` when the frame was grabbed (for latency).
        t_media: media time in seconds (index / fps for files, wall time since start for live sources); drives
            smoothing so that it does not depend on processing speed.
        capture_ms: time spent grabbing and decoding it.
        name: display/output stem (image file stem, video stem or ``camera0``).
    """

    index: int
    image: np.ndarray
    t_capture: float
    t_media: float
    capture_ms: float
    name: str


class FrameSource(ABC):
    """A synchronous source. ``read()`` returns the next BGR frame or None at the end / on a read failure."""

    name: str = "source"
    fps: float = 30.0
    live: bool = False
    frame_count: int = 0  # 0 when unknown (live)
    frame_name: str = ""  # per-frame name for image lists; empty means ``name``

    @abstractmethod
    def read(self) -> np.ndarray | None: ...

    def release(self) -> None:  # noqa: B027 - optional hook
        """Free the device or file handle."""

    def seek(self, frame_index: int) -> bool:
        """Make ``frame_index`` the next frame read; False where the source cannot (cameras, streams)."""
        return False


def is_url(spec: str) -> bool:
    return spec.lower().startswith(STREAM_PREFIXES)


def redact_url(url: str) -> str:
    """The URL without a password (``rtsp://user:secret@cam`` -> ``rtsp://user:***@cam``), for messages."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


def url_stem(url: str) -> str:
    """A file-name stem for a URL's outputs: host, port and path, sanitised (no credentials, no query).

    ``rtsp://admin:pw@10.0.0.7:554/live/ch1`` -> ``10.0.0.7_554_live_ch1``; ``http://host/clips/walk.mp4`` ->
    ``host_clips_walk``. Two different streams then no longer both write ``stream.npz``.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    path = parts.path
    suffix = Path(path).suffix
    if suffix and len(suffix) <= 6:
        path = path[: -len(suffix)]
    raw = "_".join(p for p in (parts.hostname or "", str(port) if port else "", path) if p)
    stem = re.sub(r"[^A-Za-z0-9.-]+", "_", raw).strip("._-")
    return stem[:80] or "stream"


def check_camera_index(index: int) -> None:
    if not 0 <= index <= MAX_CAMERA_INDEX:
        raise CaptureError(f"camera index {index} is out of range (0..{MAX_CAMERA_INDEX}); pass the index of an "
                           "attached camera, usually 0")


class VideoSource(FrameSource):
    """A video file, camera index or stream URL through ``cv2.VideoCapture``.

    ``live=None`` decides by itself: cameras are live, URLs are live unless they look like a file (see the module
    docstring), paths are files.
    """

    def __init__(self, target: int | str, name: str | None = None, live: bool | None = None,
                 timeout_s: float = STREAM_TIMEOUT_S, size: tuple[int, int] | None = None) -> None:
        self.target = target
        is_cam = isinstance(target, int)
        url = not is_cam and is_url(str(target))
        self._cv2name: Cv2Path | None = None
        if is_cam:
            check_camera_index(target)  # type: ignore[arg-type]
            what = f"camera {target}"
            self.cap = cv2.VideoCapture(target)
        elif url:
            what = redact_url(str(target))
            if not cv2_safe(str(target)):
                raise CaptureError(f"stream URL {shown(what)} is not valid UTF-8; check the URL")
            ms = int(timeout_s * 1000)
            t = time.perf_counter()
            self.cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG,
                                        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
            if not self.cap.isOpened() and time.perf_counter() - t >= 0.9 * timeout_s:
                self.cap.release()
                raise CaptureError(f"cannot open {what}: no answer within {timeout_s:.0f} s (server down, busy or "
                                   "not a video stream); check the URL and the server")
        else:
            what = shown(str(target))
            self._cv2name = Cv2Path(str(target))
            with native_stderr_muted():  # OpenCV's own AVI reader prints parse errors with fprintf
                self.cap = cv2.VideoCapture(self._cv2name.name)
        if not self.cap.isOpened():
            self._close()
            if is_cam:
                raise CaptureError(f"camera {target} not found or busy; pass another --camera index, or use "
                                   "--input PATH to process a file")
            raise CaptureError(f"cannot open {what}: not a readable video/stream (empty, corrupt, unsupported codec "
                               "or unreachable URL)")
        if is_cam and size is not None:
            _ask_camera_size(self.cap, size)
        try:
            w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            check_pixels(w, h, f"video {what}")
        except CaptureError:
            self._close()
            raise
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        finite = 0 < count < 2**40
        if live is None:
            live = is_cam or (url and not (urlsplit(str(target)).scheme.lower() in SEEKABLE_SCHEMES and (
                finite or Path(urlsplit(str(target)).path).suffix.lower() in VIDEO_FILE_SUFFIXES)))
        self.live = live
        self.name = name or (f"camera{target}" if is_cam else url_stem(str(target)) if url
                             else Path(str(target)).stem or "video")
        self.frame_count = int(count) if finite and not self.live else 0
        ok, first = self.cap.read()
        self._first = first if ok else None
        if self._first is None:
            self._close()
            raise CaptureError(f"{what} opened but delivered no frame (corrupt or empty video, a silent stream, or "
                               "the device is in use); check the file, URL or device")
        got = (first.shape[1], first.shape[0])
        if is_cam and size is not None and got != tuple(size):
            log.warning("%s delivers %dx%d, not the %dx%d asked for (it has no such mode)", what, *got, *size)

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        ok, frame = self.cap.read()
        return frame if ok else None

    def seek(self, frame_index: int) -> bool:
        """Reposition a video file (called by the capture thread between reads)."""
        if self.live:
            return False
        self._first = None
        return bool(self.cap.set(cv2.CAP_PROP_POS_FRAMES, max(int(frame_index), 0)))

    def _close(self) -> None:
        self.cap.release()
        if self._cv2name is not None:
            self._cv2name.close()

    def release(self) -> None:
        self._close()


class ImageListSource(FrameSource):
    """A list of image files, read in order; the first one is decoded at once, so a bad single image (or a folder
    where nothing decodes) fails before the model loads.

    A single image that does not decode (or is over the pixel cap) is an error. In a folder (``skip_bad``) such a
    file is skipped with one warning line and listed in ``skipped``: one bad photo should not cost the other
    results; only a folder where nothing decodes is an error.
    """

    def __init__(self, files: Sequence[Path], name: str = "images", skip_bad: bool = False) -> None:
        if not files:
            raise CaptureError("no images to process")
        self.files = list(files)
        self.name = name
        self.frame_count = len(self.files)
        self.skip_bad = skip_bad
        self.skipped: list[Path] = []
        self._i = 0
        self.fps = 1.0
        self._first = self._next()
        if self._first is None:
            where = shown(self.files[0].parent) if skip_bad else shown(name)
            raise CaptureError(f"none of the {len(self.files)} images in {where} could be read (see the warnings "
                               "above); check the files")
        self._first_name = self.frame_name

    def _next(self) -> np.ndarray | None:
        while self._i < len(self.files):
            f = self.files[self._i]
            self._i += 1
            try:
                img = read_image(f)
            except CaptureError as e:
                if not self.skip_bad:
                    raise
                self.skipped.append(f)
                log.warning("skipped: %s", e)
                continue
            self.frame_name = f.stem
            return img
        return None

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            img, self._first = self._first, None
            self.frame_name = self._first_name
            return img
        return self._next()

    def seek(self, frame_index: int) -> bool:
        """Make image ``frame_index`` the next one read (the window's seek bar)."""
        self._first = None
        self._i = min(max(int(frame_index), 0), len(self.files))
        return True


def list_images(folder: Path) -> list[Path]:
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CaptureError(f"no images in folder {shown(folder)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                           "point --input at a folder with images, a video or an image file")
    return files


def _ask_camera_size(cap: cv2.VideoCapture, size: tuple[int, int]) -> None:
    """Ask an opened webcam for ``size`` (width, height), in MJPG where it offers that: most USB webcams send
    uncompressed YUYV by default, which USB 2 carries at 1280x720 only at about 10 frames a second. What the camera
    really gives is read back from its first frame (a camera picks its nearest mode, or ignores the request)."""
    cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(size[0]))
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(size[1]))


def open_source(spec: str | int, timeout_s: float = STREAM_TIMEOUT_S,
                camera_size: tuple[int, int] | None = None) -> FrameSource:
    """``int`` = camera index (asked for ``camera_size`` when given); otherwise an image, a folder of images, a video
    file or a stream URL."""
    if isinstance(spec, int):
        check_camera_index(spec)
        return ReconnectingSource(lambda: VideoSource(spec, size=camera_size), name=f"camera{spec}")
    if is_url(spec):
        first = VideoSource(spec, timeout_s=timeout_s)
        if not first.live:
            return first  # a file served over HTTP: every frame, no reconnect
        return ReconnectingSource(lambda: VideoSource(spec, name=first.name, live=True, timeout_s=timeout_s),
                                  name=first.name, first=first)
    path = Path(spec)
    if path.is_dir():
        return ImageListSource(list_images(path), name=path.name or str(path), skip_bad=True)
    if not path.exists():
        raise CaptureError(f"input not found: {shown(path)}; pass an image, a folder of images, a video or a stream "
                           "URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageListSource([path], name=path.stem)
    return VideoSource(str(path), live=False)


class ReconnectingSource(FrameSource):
    """Wraps a live source factory: on a failed read it reopens with exponential backoff, up to ``max_attempts``.

    Opening the first time is not retried (``first`` is an already opened source, else the factory is called once
    here), so a wrong camera index still fails at once. ``status`` is what the UI shows ("ok", "no frames for 3 s",
    "no frames for 9 s, reconnecting 2/8", "lost"); ``stalled_s`` is how long the current read has been waiting.
    """

    def __init__(self, factory: Callable[[], FrameSource], name: str, max_attempts: int = 8,
                 base_delay: float = 0.25, max_delay: float = 4.0, first: FrameSource | None = None) -> None:
        self.factory = factory
        self.inner: FrameSource | None = first if first is not None else factory()
        self.name = name
        self.live = True
        self.fps = self.inner.fps
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.reconnects = 0
        self.lost = False
        self._state = "ok"
        self._waiting_since: float | None = None
        self._cancel = threading.Event()

    @property
    def stalled_s(self) -> float:
        """Seconds the current ``read()`` has waited for a frame (0 when not reading)."""
        t = self._waiting_since
        return 0.0 if t is None else max(time.perf_counter() - t, 0.0)

    @property
    def status(self) -> str:
        state = self._state
        stalled = self.stalled_s
        if state != "lost" and stalled >= STALL_NOTICE_S:
            return f"no frames for {stalled:.0f} s" + ("" if state == "ok" else f", {state}")
        return state

    def cancel(self) -> None:
        """Stop any backoff wait at once (called on shutdown)."""
        self._cancel.set()

    def read(self) -> np.ndarray | None:
        self._waiting_since = time.perf_counter()
        try:
            return self._read()
        finally:
            self._waiting_since = None

    def _read(self) -> np.ndarray | None:
        if self.inner is not None:
            frame = self.inner.read()
            if frame is not None:
                return frame
            self.inner.release()
            self.inner = None
            log.warning("%s: no frame; reconnecting", self.name)
        for attempt in range(1, self.max_attempts + 1):
            self._state = f"reconnecting {attempt}/{self.max_attempts}"
            delay = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
            if self._cancel.wait(delay):
                return None
            try:
                self.inner = self.factory()
            except CaptureError as e:
                log.info("%s: attempt %d failed: %s", self.name, attempt, e)
                continue
            frame = self.inner.read()
            if frame is not None:
                self._state = "ok"
                self.reconnects += 1
                log.warning("%s: reconnected after %d attempt(s)", self.name, attempt)
                return frame
            self.inner.release()
            self.inner = None
        self._state = "lost"
        self.lost = True
        return None

    def release(self) -> None:
        self._cancel.set()
        if self.inner is not None:
            self.inner.release()
            self.inner = None



class CaptureThread:
    """Reads a :class:`FrameSource` on a named :class:`~app.stages.Stage`, handing frames on through a
    :class:`~app.stages.Handoff` (latest-wins for live sources, lossless for files).

    Args:
        source: what to read.
        mode: ``"latest"`` (newest frame wins, drops counted) or ``"queue"`` (every frame, blocking, in order).
        pace: play a file at its frame rate (the window); cameras pace themselves. Pacing never runs ahead to
            catch up: after a pause, a step or a slow stretch it restarts from "now", so a paused video resumes
            where it stopped instead of skipping the paused time.
        max_frames: stop after this many frames (0 = no limit).
        queue_size: bound of the ``queue`` mode buffer.
    """

    def __init__(self, source: FrameSource, mode: str = "queue", pace: bool = False, max_frames: int = 0,
                 queue_size: int = 8) -> None:
        if mode not in ("latest", "queue"):
            raise ValueError(f"mode must be 'latest' or 'queue', got {mode!r}")
        self.source = source
        self.mode = mode
        self.pace = pace
        self.max_frames = max_frames
        self.frames_read = 0
        self._out: Handoff[Frame] = Handoff(1, "latest") if mode == "latest" else Handoff(queue_size, "lossless")
        self._paused = threading.Event()
        self._step = threading.Event()
        self._stage = Stage(f"capture-{source.name}", self._run, on_exit=self._finish)
        self._stop = self._stage.stop_event
        self._t0 = 0.0
        self._reading_since: float | None = None
        self._seek_to: int | None = None
        self._seek_lock = threading.Lock()
        self.seek_failed: int | None = None  # the last seek target the source could not go to

    def start(self) -> CaptureThread:
        self._t0 = time.perf_counter()
        self._stage.start()
        return self

    @property
    def alive(self) -> bool:
        return self._stage.is_alive()

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before anyone read them (``latest`` mode; always 0 in ``queue`` mode)."""
        return self._out.dropped

    @property
    def error(self) -> BaseException | None:
        """What ended the stream early (a source that failed while reading); re-raised by the reader's owner."""
        return self._stage.error

    @property
    def stalled_s(self) -> float:
        """Seconds the thread has been waiting on the source for the next frame; 0 while paused, after the end,
        or while it waits for a slow consumer (that is back-pressure, not a stall). The window shows "no frames
        for N s" from this instead of a frozen picture with a stale FPS."""
        t = self._reading_since
        return 0.0 if t is None else max(time.perf_counter() - t, 0.0)

    def step(self) -> None:
        """While paused, read exactly one more frame."""
        self._step.set()

    def set_paused(self, paused: bool) -> None:
        """Pause reading (a paused file does not advance; a paused camera is simply not read)."""
        (self._paused.set if paused else self._paused.clear)()

    def _run(self) -> None:
        src = self.source
        index = 0
        pacer = Pacer(self._stop)
        while not self._stop.is_set():
            if self._paused.is_set() and not self._step.is_set():
                pacer.reset()  # resume from "now", not from where the clock would be without the pause
                self._stop.wait(0.02)
                continue
            self._step.clear()
            if self._seek_to is not None:
                index = self._apply_seek(index)
                pacer.reset()
            if self.max_frames and index >= self.max_frames:
                break
            if self.pace and not src.live and not self._paused.is_set():
                pacer.tick(1.0 / src.fps)
            t = time.perf_counter()
            self._reading_since = t
            try:
                img = src.read()
            finally:
                self._reading_since = None
            dt = (time.perf_counter() - t) * 1e3
            if img is None:
                break
            now = time.perf_counter()
            t_media = (now - self._t0) if src.live else index / src.fps
            frame = Frame(index, img, now, t_media, dt, src.frame_name or src.name)
            if not self._out.put(frame, until=self._stop.is_set):
                break
            index += 1
            self.frames_read = index

    def _finish(self) -> None:
        """Capture thread, on every exit (end, stop, failure): release the source, then mark the end of stream."""
        self._reading_since = None
        try:
            self.source.release()
        finally:
            self._out.close()

    # ---- seeking (files; the window's seek bar)
    def seek(self, frame_index: int) -> None:
        """Continue from ``frame_index`` (applied by the capture thread before its next read; ignored by sources
        that cannot seek). Frames read before it and not yet taken are dropped."""
        with self._seek_lock:
            self._seek_to, self.seek_failed = frame_index, None
        if not self.source.live:
            self._drop_read()

    def _apply_seek(self, index: int) -> int:
        """Capture thread: reposition the source; returns the index of the next frame."""
        with self._seek_lock:
            target, self._seek_to = self._seek_to, None
        if target is None:
            return index
        if not self.source.seek(target):
            log.warning("%s: cannot seek to frame %d; playing on", self.source.name, target)
            self.seek_failed = target
            return index
        self._drop_read()
        return target

    def _drop_read(self) -> None:
        """Drop the frames read but not taken yet (the end of stream, if reached, stays)."""
        self._out.drain()

    def read(self, timeout: float = THREAD_TIMEOUT) -> Frame | None:
        """Next frame; ``None`` at the end of the stream. Raises ``TimeoutError`` if nothing arrives in time."""
        return self._out.get(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if isinstance(self.source, ReconnectingSource):
            self.source.cancel()
        self._out.drain()  # frames nobody will read; a producer waiting for room sees the stop flag at once
        self._stage.join(timeout)
