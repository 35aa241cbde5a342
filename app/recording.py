"""Annotated-video recording on its own writer thread.

The OpenCV wheel has no H.264 encoder (``avc1`` does not open), so ``.mp4`` uses ``mp4v`` and ``.avi`` uses
``XVID``; both cost ~1-2 ms per frame, which the writer thread keeps off the render path.

Why the care around stopping: the MP4 index (``moov``) is written when the writer is released. A process killed
before that, or a disk that fills up first, leaves an unplayable file. So the recorder is closed on every exit path
(normal end, Ctrl+C, SIGTERM, window close; see the CLI), and it stops itself while there is still room for the
index when free space drops below ``min_free_bytes`` (``cv2.VideoWriter.write`` reports no errors, so running out
of disk would otherwise go unnoticed).

Live sources are recorded against the clock (``timed=True``): a frame is repeated, or skipped, so the file's
duration matches real time even when processing runs slower than the camera.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from engine.errors import OutputError

log = logging.getLogger(__name__)

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "XVID", ".mkv": "XVID"}
_STOP = object()


def check_record_path(path: Path) -> None:
    """Refuse an unusable ``--record`` path before anything starts."""
    if path.suffix.lower() not in FOURCC_BY_SUFFIX:
        raise OutputError(f"--record {path}: unsupported extension {path.suffix or '(none)'}; use one of "
                          f"{', '.join(sorted(FOURCC_BY_SUFFIX))}")
    if path.is_dir():
        raise OutputError(f"--record {path} is a folder; pass a file name such as {path / 'out.mp4'}")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder for --record {path}: {e.strerror}; choose a writable path") from e
    existed = path.exists()
    try:  # prove it: permissions alone do not tell (root, read-only mounts, /proc)
        with open(path, "ab"):
            pass
    except OSError as e:
        raise OutputError(f"--record {path} is not writable ({e.strerror}); choose a writable path") from e
    finally:
        if not existed:
            path.unlink(missing_ok=True)


class VideoRecorder:
    """Writes BGR frames to a video file on a named writer thread.

    Args:
        path: output file (.mp4/.avi/...).
        fps: frame rate written into the file (the source rate).
        size: (width, height) of every frame.
        block: wait for queue space (files/headless: no frame lost) instead of dropping (live: never stall).
        timed: live mode: place frames by their capture time, repeating/skipping to keep real-time duration.
        min_free_bytes: stop cleanly when the disk has less than this free.
        disk_free: injectable free-space probe (tests simulate a full disk with it).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], block: bool = True, timed: bool = False,
                 queue_size: int = 32, min_free_bytes: int = 64 << 20,
                 disk_free: Callable[[Path], int] | None = None) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.block = block
        self.timed = timed
        self.min_free_bytes = min_free_bytes
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        fourcc = FOURCC_BY_SUFFIX.get(self.path.suffix.lower(), "mp4v")
        check_record_path(self.path)
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size)
        if not self._writer.isOpened():
            raise OutputError(f"cannot open a {fourcc} video writer for {self.path}; check the path and free space")
        self.fourcc = fourcc
        self.frames_written = 0
        self.frames_dropped = 0
        self.encode_ms = 0.0  # last frame
        self.stopped_reason = ""
        self._t0: float | None = None
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()
        log.info("recording to %s (%s, %.2f fps, %dx%d)", self.path, fourcc, self.fps, *self.size)

    @property
    def active(self) -> bool:
        return not self._closed.is_set() and not self.stopped_reason

    def write(self, frame: np.ndarray, t: float | None = None) -> bool:
        """Queue a frame (``t``: capture time, used when ``timed``). Returns False if it was not accepted."""
        if not self.active:
            return False
        item = (frame, t)
        if self.block:
            while self.active:
                try:
                    self._q.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False
        try:
            self._q.put_nowait(item)
            return True
        except queue.Full:
            self.frames_dropped += 1
            return False

    def _check_disk(self) -> bool:
        try:
            free = self._disk_free(self.path.parent if str(self.path.parent) else Path("."))
        except OSError:
            return True
        if free < self.min_free_bytes:
            self.stopped_reason = (f"disk almost full ({free / 2**20:.0f} MiB free); recording stopped, "
                                   f"{self.frames_written} frames kept in {self.path}")
            log.error(self.stopped_reason)
            return False
        return True

    def _emit(self, frame: np.ndarray) -> None:
        if frame.shape[1] != self.size[0] or frame.shape[0] != self.size[1]:
            frame = cv2.resize(frame, self.size)
        self._writer.write(frame)
        self.frames_written += 1

    def _run(self) -> None:
        last: np.ndarray | None = None
        try:
            while True:
                try:
                    item = self._q.get(timeout=0.5)
                except queue.Empty:
                    if self._closed.is_set():
                        break
                    continue
                if item is _STOP:
                    break
                if self.stopped_reason:
                    continue  # drain without writing
                frame, t = item
                t0 = time.perf_counter()
                if self.frames_written % 30 == 0 and not self._check_disk():
                    continue
                if self.timed and t is not None:
                    if self._t0 is None:
                        self._t0 = t
                    due = int((t - self._t0) * self.fps) + 1  # frames the file should hold once this one is in
                    while last is not None and self.frames_written < due - 1:
                        self._emit(last)  # fill a gap (processing slower than the clock)
                    if self.frames_written >= due:
                        last = frame
                        continue  # ahead of the clock: skip
                self._emit(frame)
                last = frame
                self.encode_ms = (time.perf_counter() - t0) * 1e3
        except Exception as e:
            self.stopped_reason = f"recording failed: {e}"
            log.error(self.stopped_reason)
        finally:
            with self._lock:
                self._writer.release()

    def close(self, timeout: float = 10.0) -> Path:
        """Flush queued frames, finalise the file and return its path. Safe to call more than once."""
        if not self._closed.is_set():
            self._closed.set()
            try:
                self._q.put(_STOP, timeout=timeout)
            except queue.Full:
                log.warning("recorder queue still full at close; finalising without the last frames")
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("recorder did not finish within %.0f s; %s may be incomplete", timeout, self.path)
            log.info("recording finished: %s (%d frames)", self.path, self.frames_written)
        return self.path
