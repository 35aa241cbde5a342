"""Frame sources and the capture thread.

Sources open eagerly and read one frame before any thread exists, so a bad camera index, a corrupt video or an
empty folder fails with one clear line at start-up instead of an empty window. The capture thread then hands frames
out in one of two ways:

* ``latest`` (cameras, streams, live playback): a one-slot buffer where the newest frame wins, so latency never
  builds up behind a slow stage; overwritten frames are counted as drops.
* ``queue`` (files while recording or headless): a bounded blocking queue, so every frame is processed in order and
  a slow consumer only slows reading down (back-pressure, no loss).

Reconnection is composition: :class:`ReconnectingSource` wraps a source factory with bounded attempts and
exponential backoff and exposes its state for the UI.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.errors import CaptureError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
THREAD_TIMEOUT = 1.0  # every blocking get/put/wait in this module is bounded by this


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


class VideoSource(FrameSource):
    """A video file, camera index or stream URL through ``cv2.VideoCapture``."""

    def __init__(self, target: int | str, name: str | None = None, live: bool | None = None) -> None:
        self.target = target
        is_cam = isinstance(target, int)
        self.live = (is_cam or str(target).lower().startswith(STREAM_PREFIXES)) if live is None else live
        self.name = name or (f"camera{target}" if is_cam else Path(str(target)).stem or "stream")
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            self.cap.release()
            if is_cam:
                raise CaptureError(f"camera {target} not found or busy; pass another --camera index, or use "
                                   "--input PATH to process a file")
            raise CaptureError(f"cannot open {target}: not a readable video/stream (corrupt, unsupported codec or "
                               "unreachable URL)")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0
        self.frame_count = 0 if self.live else max(int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        ok, first = self.cap.read()
        self._first = first if ok else None
        if self._first is None:
            self.cap.release()
            what = f"camera {target}" if is_cam else str(target)
            raise CaptureError(f"{what} opened but delivered no frame (corrupt or empty video, or the device is in "
                               "use); check the file or device")

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        ok, frame = self.cap.read()
        return frame if ok else None

    def release(self) -> None:
        self.cap.release()


class ImageListSource(FrameSource):
    """A list of image files, read in order; a file that does not decode is an error, not a silent skip."""

    def __init__(self, files: Sequence[Path], name: str = "images") -> None:
        if not files:
            raise CaptureError("no images to process")
        self.files = list(files)
        self.name = name
        self.frame_count = len(self.files)
        self._i = 0
        self.fps = 1.0

    def read(self) -> np.ndarray | None:
        if self._i >= len(self.files):
            return None
        f = self.files[self._i]
        self._i += 1
        self.frame_name = f.stem
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise CaptureError(f"cannot decode image {f} (corrupt or unsupported format); remove it or fix it")
        return img


def list_images(folder: Path) -> list[Path]:
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CaptureError(f"no images in folder {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                           "point --input at a folder with images, a video or an image file")
    return files


def open_source(spec: str | int) -> FrameSource:
    """``int`` = camera index; otherwise an image, a folder of images, a video file or a stream URL."""
    if isinstance(spec, int):
        return ReconnectingSource(lambda: VideoSource(spec), name=f"camera{spec}")
    if spec.lower().startswith(STREAM_PREFIXES):
        return ReconnectingSource(lambda: VideoSource(spec, live=True), name="stream")
    path = Path(spec)
    if path.is_dir():
        return ImageListSource(list_images(path), name=path.name)
    if not path.exists():
        raise CaptureError(f"input not found: {path}; pass an image, a folder of images, a video or a stream URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageListSource([path], name=path.stem)
    return VideoSource(str(path), live=False)


class ReconnectingSource(FrameSource):
    """Wraps a live source factory: on a failed read it reopens with exponential backoff, up to ``max_attempts``.

    Opening the first time is not retried, so a wrong camera index still fails at once. ``status`` is what the UI
    shows ("ok", "reconnecting 2/8", "lost").
    """

    def __init__(self, factory: Callable[[], FrameSource], name: str, max_attempts: int = 8,
                 base_delay: float = 0.25, max_delay: float = 4.0) -> None:
        self.factory = factory
        self.inner: FrameSource | None = factory()
        self.name = name
        self.live = True
        self.fps = self.inner.fps
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.status = "ok"
        self.reconnects = 0
        self.lost = False
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Stop any backoff wait at once (called on shutdown)."""
        self._cancel.set()

    def read(self) -> np.ndarray | None:
        if self.inner is not None:
            frame = self.inner.read()
            if frame is not None:
                return frame
            self.inner.release()
            self.inner = None
            log.warning("%s: no frame; reconnecting", self.name)
        for attempt in range(1, self.max_attempts + 1):
            self.status = f"reconnecting {attempt}/{self.max_attempts}"
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
                self.status = "ok"
                self.reconnects += 1
                log.warning("%s: reconnected after %d attempt(s)", self.name, attempt)
                return frame
            self.inner.release()
            self.inner = None
        self.status = "lost"
        self.lost = True
        return None

    def release(self) -> None:
        self._cancel.set()
        if self.inner is not None:
            self.inner.release()
            self.inner = None


_END = object()


class CaptureThread:
    """Reads a :class:`FrameSource` on a named daemon thread.

    Args:
        source: what to read.
        mode: ``"latest"`` (newest frame wins, drops counted) or ``"queue"`` (every frame, blocking, in order).
        pace: sleep to the source frame rate (playing a file "live" in the window); cameras pace themselves.
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
        self.dropped = 0
        self.frames_read = 0
        self.error: BaseException | None = None
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._slot: Frame | object | None = None
        self._slot_cv = threading.Condition()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._step = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{source.name}", daemon=True)
        self._t0 = 0.0

    def start(self) -> CaptureThread:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def step(self) -> None:
        """While paused, read exactly one more frame."""
        self._step.set()

    def set_paused(self, paused: bool) -> None:
        """Pause reading (a paused file does not advance; a paused camera is simply not read)."""
        (self._paused.set if paused else self._paused.clear)()

    def _put(self, item: Frame | object) -> bool:
        if self.mode == "latest":
            with self._slot_cv:
                if isinstance(self._slot, Frame):
                    self.dropped += 1
                if self._slot is not _END:
                    self._slot = item
                self._slot_cv.notify_all()
            return True
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=THREAD_TIMEOUT)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        src = self.source
        index = 0
        try:
            while not self._stop.is_set():
                if self._paused.is_set() and not self._step.is_set():
                    self._stop.wait(0.02)
                    continue
                self._step.clear()
                if self.max_frames and index >= self.max_frames:
                    break
                t = time.perf_counter()
                img = src.read()
                dt = (time.perf_counter() - t) * 1e3
                if img is None:
                    break
                now = time.perf_counter()
                t_media = (now - self._t0) if src.live else index / src.fps
                frame = Frame(index, img, now, t_media, dt, src.frame_name or src.name)
                if not self._put(frame):
                    break
                index += 1
                self.frames_read = index
                if self.pace and not src.live:
                    wait = self._t0 + index / src.fps - time.perf_counter()
                    if wait > 0:
                        self._stop.wait(wait)
        except BaseException as e:
            log.debug("capture failed", exc_info=True)
            self.error = e
        finally:
            src.release()
            self._put(_END)

    def read(self, timeout: float = THREAD_TIMEOUT) -> Frame | None:
        """Next frame; ``None`` at the end of the stream. Raises ``TimeoutError`` if nothing arrives in time."""
        if self.mode == "latest":
            with self._slot_cv:
                if self._slot is None and not self._slot_cv.wait_for(lambda: self._slot is not None, timeout):
                    raise TimeoutError("no frame")
                item = self._slot
                if item is not _END:
                    self._slot = None
        else:
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty as e:
                raise TimeoutError("no frame") from e
        return None if item is _END else item  # type: ignore[return-value]

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if isinstance(self.source, ReconnectingSource):
            self.source.cancel()
        # drain so that a producer blocked on put can see the stop flag and exit
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("capture thread did not exit within %.1f s", timeout)
