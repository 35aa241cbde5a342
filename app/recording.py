"""Annotated-video recording on its own writer thread: H.264 in fragmented MP4, written with PyAV.

Why fragmented MP4: a plain MP4 is only playable once its index (``moov``) is written at the very end, so a process
that is killed (SIGKILL, power loss, a crash) or a disk that fills up leaves a file no player opens. A fragmented
MP4 puts an empty index first and then one self-contained fragment (``moof`` + ``mdat``) per second of video (one
per keyframe), so the file on disk is playable at every fragment boundary: a killed run keeps all but the last
second. The same holds for ``.mov``; ``.mkv`` (Matroska) is written cluster by cluster and ``.avi`` chunk by chunk,
which players also read without an index.

Why PyAV and not ``cv2.VideoWriter``: the OpenCV wheel has no H.264 encoder and its writer accepts no muxer options
(fragmentation), reports no write errors (a full disk went unnoticed), and crashes on a file name that is not UTF-8.
PyAV bundles FFmpeg with libx264; the file is opened by Python and handed to FFmpeg as a file object, so any file
name works and a failed write raises ``OSError`` here. ``ultrafast`` + ``zerolatency`` keeps the encoder's cost per
frame about that of OpenCV's MPEG-4 Part 2 writer, and H.264 plays in browsers and every player.

Why the care around stopping: the recorder is still closed on every exit path (normal end, Ctrl+C, SIGTERM, window
close; see the CLI) so that the last fragment is written too. It stops itself while there is still room for the
other outputs when free space drops below a reserve, and when a write fails (disk full, device gone) it cuts the
file back to its last whole fragment, so the part kept is always playable; ``error`` then says what was lost.

Live sources are recorded against the clock (``timed=True``): a frame is repeated, or skipped, so the file's
duration matches real time even when processing runs slower than the camera.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from engine.errors import OutputError

from .paths import shown
from .stages import Handoff, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Container:
    """How a ``--record`` extension is written: FFmpeg muxer, encoder, and whether it is fragmented MP4/MOV."""

    muxer: str
    codec: str
    fragmented: bool


CONTAINERS = {
    ".mp4": Container("mp4", "libx264", True),
    ".m4v": Container("mp4", "libx264", True),
    ".mov": Container("mov", "libx264", True),
    ".mkv": Container("matroska", "libx264", False),
    ".avi": Container("avi", "mpeg4", False),  # AVI has no standard way to carry H.264's B-frames/params: MPEG-4 Part 2
}
FRAGMENT_FLAGS = "frag_keyframe+empty_moov+default_base_moof"
X264_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23"}


@dataclass(frozen=True)
class RecordFrame:
    """One frame handed to the writer stage: the BGR image and its capture time (``None``: not timed)."""

    image: np.ndarray
    t: float | None = None


def _unlink_quietly(path: Path) -> None:
    """Remove ``path`` if possible; a failure (read-only filesystem, gone already) must not hide the real error."""
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        log.debug("could not remove %s: %s", shown(path), e)


def check_record_path(path: Path) -> None:
    """Refuse an unusable ``--record`` path before anything starts."""
    name = shown(path)
    if path.suffix.lower() not in CONTAINERS:
        raise OutputError(f"--record {name}: unsupported extension {shown(path.suffix) or '(none)'}; use one of "
                          f"{', '.join(sorted(CONTAINERS))} (.mp4 recommended)")
    if path.is_dir():
        raise OutputError(f"--record {name} is a folder; pass a file name such as {shown(path / 'out.mp4')}")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder for --record {name}: {e.strerror}; choose a writable path") from e
    existed = path.exists()
    try:  # prove it: permissions alone do not tell (root, read-only mounts, /proc)
        with open(path, "ab"):
            pass
    except OSError as e:
        raise OutputError(f"--record {name} is not writable ({e.strerror}); choose a writable path") from e
    finally:
        if not existed:
            _unlink_quietly(path)


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """Yield ``(type, payload_start, box_end)`` for the whole ISO-BMFF boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        head = 8
        if size == 1 and pos + 16 <= end:
            size, head = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _fragment_samples(moof: bytes) -> int:
    """Frames in one ``moof`` box: the sum of its track runs' sample counts."""
    total = 0
    for kind, a, b in _boxes(moof, 8):
        if kind == b"traf":
            for sub, sa, _ in _boxes(moof, a, b):
                if sub == b"trun":
                    total += struct.unpack(">I", moof[sa + 4:sa + 8])[0]
    return total


def trim_to_whole_fragments(path: Path) -> int:
    """Cut a fragmented MP4/MOV after its last complete ``moof`` + ``mdat`` pair; returns the frames it keeps.

    Why: a write that failed half-way (disk full) leaves a partial fragment whose sample table points past the end
    of the file; decoders then print errors and some players refuse the file. Reads only box headers and ``moof``
    boxes (small), so it is cheap on big files, and truncation frees space, so it works on a full disk.
    """
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        pos = keep = frames = pending = 0
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            n, kind = struct.unpack(">I4s", head[:8])
            if n == 1 and len(head) == 16:
                n = struct.unpack(">Q", head[8:16])[0]
            if n < 8 or pos + n > size:
                break
            if kind == b"moof":
                f.seek(pos)
                pending = _fragment_samples(f.read(n))
            elif kind == b"mdat":
                frames += pending
                pending = 0
                keep = pos + n
            elif pending == 0:  # ftyp, moov, free, mfra: whole boxes outside a fragment
                keep = pos + n
            pos += n
        if keep < size:
            f.truncate(keep)
    return frames


class _OutputFile(io.RawIOBase):
    """The recording as FFmpeg sees it: a seekable binary file whose writes either complete or raise.

    Why not the plain file object: a short write (the last bytes that fit on a full disk) returns a count that
    FFmpeg's I/O layer does not check, so the rest would be silently dropped; here it is retried until the OS raises
    (ENOSPC), and after a failure every later write raises at once, so nothing lands after the damaged part.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._f = open(path, "wb", buffering=0)  # noqa: SIM115 (closed in close())
        self.failure: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.failure is not None:
            raise self.failure
        view = memoryview(b).cast("B")
        done = 0
        try:
            while done < len(view):
                n = self._f.write(view[done:])
                if not n:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as e:
            self.failure = e
            raise
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
        super().close()


def _cause_of(e: OSError) -> str:
    return "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else f"write error: {e.strerror or e}"


def _even(n: int) -> int:
    return max(2, n + (n & 1))


def _rate(fps: float) -> Fraction:
    """The frame rate as the exact fraction FFmpeg wants (29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)


class VideoRecorder:
    """Writes BGR frames to a video file on a named writer :class:`~app.stages.Stage` ("recorder").

    Args:
        path: output file (.mp4/.m4v/.mov/.mkv/.avi).
        fps: frame rate written into the file (the source rate).
        size: (width, height) of every frame; odd sizes are padded by one pixel (H.264 in 4:2:0 needs even ones).
        block: wait for queue space (files/headless: no frame lost) instead of dropping the new frame, counted in
            ``frames_dropped`` (live: never stall).
        timed: live mode: place frames by their capture time, repeating/skipping to keep real-time duration.
        min_free_bytes: stop cleanly when the disk has less than this free (at most 5% of the filesystem, so small
            volumes are still usable), leaving room for the other outputs and the rest of the system.
        disk_free: injectable free-space probe (tests simulate a full disk with it).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], block: bool = True, timed: bool = False,
                 queue_size: int = 32, min_free_bytes: int = 32 << 20,
                 disk_free: Callable[[Path], int] | None = None) -> None:
        import av  # heavy (bundled FFmpeg); only runs that record pay for it

        self.path = Path(path)
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.block = block
        self.timed = timed
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        container = CONTAINERS.get(self.path.suffix.lower(), CONTAINERS[".mp4"])
        check_record_path(self.path)
        folder = self.path.parent if str(self.path.parent) else Path(".")
        try:
            self.min_free_bytes = min(min_free_bytes, shutil.disk_usage(folder).total // 20)
        except OSError:
            self.min_free_bytes = min_free_bytes
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            av.logging.set_level(av.logging.PANIC)  # FFmpeg's chatter (x264 stats, warnings) only with --debug
        self.codec = container.codec
        self.fragmented = container.fragmented
        self.frame_size = (_even(self.size[0]), _even(self.size[1]))
        try:
            self._file = _OutputFile(self.path)
        except OSError as e:
            raise OutputError(f"cannot create {shown(self.path)} ({e.strerror}); choose a writable --record "
                              "path") from e
        try:
            options = {"movflags": FRAGMENT_FLAGS} if container.fragmented else {}
            self._out = av.open(self._file, "w", format=container.muxer, options=options)
            rate = _rate(self.fps)
            self._stream = self._out.add_stream(self.codec, rate=rate,
                                                options=X264_OPTIONS if self.codec == "libx264" else {"qscale": "4"})
            ctx = self._stream.codec_context
            ctx.width, ctx.height = self.frame_size
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = 1 / rate
            ctx.gop_size = max(1, round(float(rate)))  # one keyframe, hence one fragment, per second
            ctx.thread_count = 1  # the writer thread is one of several; a fixed cost per frame keeps it predictable
            ctx.open()
        except Exception as e:
            self._file.close()
            _unlink_quietly(self.path)
            raise OutputError(f"cannot encode a {self.size[0]}x{self.size[1]} video at {self.fps:g} FPS with "
                              f"{self.codec} into {shown(self.path)}: {e}") from e
        self.frames_written = 0
        self.frames_kept: int | None = None  # set when a failure cut the file back
        self.encode_ms = 0.0  # last frame
        self.stopped_reason = ""
        self.error: OutputError | None = None  # set when frames that were asked for did not make it into the file
        self._cause = ""
        self._av = av
        self._t0: float | None = None
        self._q: Handoff[RecordFrame] = Handoff(queue_size, "lossless")
        self._closed = threading.Event()
        self._stage = Stage("recorder", self._run, on_exit=self._finish).start()
        log.info("recording to %s (%s, %.2f fps, %dx%d)", shown(self.path), self.codec, self.fps, *self.size)

    @property
    def active(self) -> bool:
        return not self._closed.is_set() and not self.stopped_reason

    @property
    def frames_dropped(self) -> int:
        """Frames refused because the writer was behind (``block=False`` only)."""
        return self._q.dropped

    def write(self, frame: np.ndarray, t: float | None = None) -> bool:
        """Queue a frame (``t``: capture time, used when ``timed``). Returns False if it was not accepted."""
        if not self.active:
            return False
        item = RecordFrame(frame, t)
        if self.block:
            return self._q.put(item, until=lambda: not self.active)
        return self._q.offer(item)

    def _stop(self, cause: str) -> None:
        """Stop writing; ``cause`` ("disk full", ...) opens the message that :meth:`_report` completes at the end."""
        if not self._cause:
            self._cause = cause
            self.stopped_reason = self._message("writing stops")  # provisional: marks the recorder inactive

    def _message(self, tail: str) -> str:
        where = shown(self.path)
        if self._cause.startswith("disk"):
            return f"{self._cause} while recording {where}: {tail}"
        return f"recording failed ({self._cause}) for {where}: {tail}"

    def _report(self, kept: int) -> None:
        n = self.frames_written
        if kept == 0:
            tail = "nothing playable was left, so the file was removed"
        elif kept == n:
            tail = f"stopped after {n} frames (kept, playable)"
        else:
            tail = f"the first {kept} of {n} frames are kept (playable)"
        self.stopped_reason = self._message(tail)
        self.error = OutputError(self.stopped_reason)
        log.warning(self.stopped_reason)

    def _check_disk(self) -> bool:
        try:
            free = self._disk_free(self.path.parent if str(self.path.parent) else Path("."))
        except OSError:
            return True
        if free < self.min_free_bytes:
            self._stop(f"disk almost full ({free / 2**20:.1f} MiB free)")
            return False
        return True

    def _emit(self, frame: np.ndarray) -> None:
        w, h = self.size
        if frame.shape[1] != w or frame.shape[0] != h:
            frame = cv2.resize(frame, self.size)
        if self.frame_size != self.size:  # odd width/height: repeat the last column/row
            frame = cv2.copyMakeBorder(frame, 0, self.frame_size[1] - h, 0, self.frame_size[0] - w,
                                       cv2.BORDER_REPLICATE)
        yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # OpenCV's conversion: faster than swscale's here
        vf = self._av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        vf.pts = self.frames_written
        for packet in self._stream.encode(vf):
            self._out.mux(packet)
        self.frames_written += 1

    def _run(self) -> None:
        """Writer stage: encode until the hand-off is closed and drained (``_finish`` runs on exit)."""
        last: np.ndarray | None = None
        try:
            while True:
                try:
                    item = self._q.get(timeout=0.5)
                except TimeoutError:
                    continue
                if item is None:  # closed and drained
                    break
                if self.stopped_reason:
                    continue  # drain without writing
                frame, t = item.image, item.t
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
        except OSError as e:
            self._stop(_cause_of(e))
        except Exception as e:
            self._stop(f"encoder error: {e}")

    def _finish(self) -> None:
        """Flush the encoder and write the last fragment; after a failure, cut the file back to its whole part."""
        failed = self._file.failure is not None
        try:
            if not failed:
                for packet in self._stream.encode():
                    self._out.mux(packet)
        except OSError as e:
            failed = True
            self._stop(_cause_of(e))
        except Exception as e:
            log.debug("flushing the encoder failed: %s", e)
        try:
            self._out.close()
        except Exception as e:  # the trailer after a failed write: nothing more can be saved
            failed = True
            self._stop(_cause_of(e) if isinstance(e, OSError) else f"muxer error: {e}")
        self._file.close()
        kept = self.frames_written
        if failed:
            kept = self._salvage()
            self.frames_kept = kept
        if self._cause:
            self._report(kept)

    def _salvage(self) -> int:
        """Cut the file back to its whole fragments (MP4/MOV); remove it when nothing playable is left."""
        kept = self.frames_written
        if self.fragmented:
            try:
                kept = trim_to_whole_fragments(self.path)
            except OSError as e:
                log.debug("could not trim %s: %s", shown(self.path), e)
        if kept == 0:
            _unlink_quietly(self.path)
        return kept

    def close(self, timeout: float = 10.0) -> Path:
        """Flush queued frames, finalise the file and return its path. Safe to call more than once."""
        if not self._closed.is_set():
            self._closed.set()
            self._q.close()  # the writer drains what is queued, then finalises
            if not self._stage.join(timeout, warn=False):
                log.warning("recorder did not finish within %.0f s; %s may be incomplete", timeout, shown(self.path))
            log.info("recording finished: %s (%d frames)", shown(self.path),
                     self.frames_written if self.frames_kept is None else self.frames_kept)
        return self.path
