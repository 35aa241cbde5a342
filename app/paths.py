"""File names and image files as OpenCV can safely take them.

Why this module exists: on Linux a file name is bytes, and Python turns bytes that are not UTF-8 (``caf\\xe9.png``)
into a str with lone surrogates. OpenCV 5.0's Python binding does not check the UTF-8 conversion of such a str and
``cv2.imread`` / ``cv2.VideoCapture`` / ``cv2.VideoWriter`` crash the process (SIGSEGV, no message). So no str path
goes to OpenCV except through here:

* images are read as bytes by Python and decoded with ``cv2.imdecode`` (:func:`read_image`), and written with
  ``cv2.imencode`` + Python (:func:`write_image`); OpenCV never sees the name.
* videos (which OpenCV/FFmpeg must open by name) get a stand-in name: a symbolic link with an ASCII name in a
  private temporary folder that points at the real file (:class:`Cv2Path`). A link also works for writing (the
  writer creates the file it points to), so a recording goes straight to its real place.

:func:`read_image` also caps the decoded size: a tiny PNG can declare 30000x30000 pixels and take gigabytes once
decoded, so the width and height are read from the file header first and anything over :data:`MAX_IMAGE_PIXELS`
is refused before decoding.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from engine.errors import AppError, CaptureError, OutputError

_quiet = False


def set_native_logging(debug: bool) -> None:
    """Silence OpenCV's, FFmpeg's and the image codecs' own messages unless ``debug``.

    They write straight to stderr ("moov atom not found", "PNG input buffer is incomplete", "Corrupt JPEG data:
    ...", "Unexpected element. Expected: LIST") next to the app's one ``error:`` line, and say nothing the app's
    message does not. FFmpeg reads its level once, when OpenCV first uses it, so this must run before the first
    ``VideoCapture``; a level the user set in ``OPENCV_FFMPEG_LOGLEVEL`` is kept. Codec messages printed with
    plain C ``fprintf`` are muted per call by :func:`native_stderr_muted`.
    """
    global _quiet
    _quiet = not debug
    levels = cv2.utils.logging
    if debug:
        levels.setLogLevel(levels.LOG_LEVEL_WARNING)  # OpenCV's default
    else:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        levels.setLogLevel(levels.LOG_LEVEL_SILENT)


@contextlib.contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a short native call (an image decode, opening a video file) when
    :func:`set_native_logging` asked for quiet; a no-op otherwise.

    The descriptor is process-wide, so the logging handlers' locks are held meanwhile: another thread that logs
    waits the few milliseconds instead of losing its line. Never wrap anything that can block for long.
    """
    if not _quiet:
        yield
        return
    handlers = logging.getLogger().handlers
    for h in handlers:
        h.acquire()
    try:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr at all: nothing to mute
            yield
            return
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    finally:
        for h in handlers:
            h.release()


# 120 megapixels: above every current camera sensor (phones 50-200 MP binned to <= 50 MP output, full frame
# 45-61 MP, medium format 100-102 MP), while one BGR copy stays under ~360 MB. The models work on 256-640 px inputs,
# so a bigger image adds nothing but memory.
MAX_IMAGE_PIXELS = 120_000_000


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` for messages: bytes that are not UTF-8 appear as ``\\xe9`` escapes instead of lone surrogates."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def cv2_safe(path: str | os.PathLike[str]) -> bool:
    """True when OpenCV may be handed ``path`` as a str: it is exactly the file's bytes in strict UTF-8."""
    s = os.fspath(path)
    try:
        return s.encode("utf-8") == os.fsencode(s)
    except UnicodeEncodeError:
        return False


class Cv2Path:
    """A name for ``path`` that OpenCV can open: the path itself when it is safe, else an ASCII-named symbolic link
    to it in a private temporary folder, removed by :meth:`close`.

    Use as a context manager or keep it next to the capture/writer and close it on release. ``error`` is the
    :class:`~engine.errors.AppError` subclass raised when no stand-in can be made (a writer passes ``OutputError``).
    The link keeps the file's extension when that is ASCII, because writers pick the container from it.
    """

    def __init__(self, path: str | os.PathLike[str], error: type[AppError] = CaptureError) -> None:
        self.original = os.fspath(path)
        self._tmpdir: str | None = None
        if cv2_safe(self.original):
            self.name = self.original
            return
        suffix = Path(self.original).suffix
        if not suffix.isascii() or not suffix[1:].isalnum():
            suffix = ""
        target = os.path.abspath(os.fsencode(self.original))
        try:
            tmpdir = tempfile.mkdtemp(prefix="instancehmr-name-")
        except OSError as e:
            raise error(f"cannot make a temporary stand-in name for {shown(self.original)} ({e.strerror}); rename the "
                        "file to a UTF-8 name") from e
        self._tmpdir = tmpdir
        link = os.path.join(tmpdir, "file" + suffix)
        if not cv2_safe(link):
            self.close()
            raise error(f"{shown(self.original)} is not a UTF-8 file name and the temporary folder {tmpdir} is not "
                        "either; rename the file to a UTF-8 name")
        try:
            os.symlink(target, os.fsencode(link))
        except OSError as e:
            self.close()
            raise error(f"{shown(self.original)} is not a UTF-8 file name and no stand-in link could be made "
                        f"({e.strerror}); rename the file to a UTF-8 name") from e
        self.name = link

    @property
    def is_link(self) -> bool:
        return self._tmpdir is not None

    def close(self) -> None:
        """Remove the stand-in link (the real file is untouched). Idempotent."""
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown modules may already be half gone
            self.close()


def _be(data: bytes, off: int, n: int) -> int:
    return int.from_bytes(data[off:off + n], "big")


def _le(data: bytes, off: int, n: int) -> int:
    return int.from_bytes(data[off:off + n], "little")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD9)):  # standalone markers
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return _be(data, i + 7, 2), _be(data, i + 5, 2)
        i += 2 + _be(data, i + 2, 2)
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8 or struct.unpack(order + "H", data[2:4])[0] != 42:
        return None  # BigTIFF and others: not parsed
    ifd = struct.unpack(order + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return None
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    found: dict[int, int] = {}
    for k in range(count):
        e = ifd + 2 + 12 * k
        if e + 12 > len(data):
            break
        tag, typ = struct.unpack(order + "HH", data[e:e + 4])
        if tag in (256, 257):
            fmt = order + ("H" if typ == 3 else "I")
            found[tag] = struct.unpack(fmt, data[e + 8:e + 8 + struct.calcsize(fmt)])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    fields: list[int] = []
    for line in data[2:512].split(b"\n"):
        for tok in line.split(b"#", 1)[0].split():
            if not tok.isdigit():
                return None
            fields.append(int(tok))
            if len(fields) == 2:
                return fields[0], fields[1]
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG, BMP, WebP, TIFF or PNM file; ``None`` if unknown."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return _be(data, 16, 4), _be(data, 20, 4)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM":
            if _le(data, 14, 4) == 12:
                return _le(data, 18, 2), _le(data, 20, 2)
            return abs(struct.unpack("<i", data[18:22])[0]), abs(struct.unpack("<i", data[22:26])[0])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8 ":
                return _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF
            if chunk == b"VP8L":
                bits = _le(data, 21, 4)
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
            return None
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        if data[:1] == b"P" and data[1:2] in b"123456":
            return _pnm_size(data)
    except (struct.error, IndexError):
        return None
    return None


def check_pixels(width: int, height: int, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Raise :class:`CaptureError` when ``width x height`` exceeds ``max_pixels``."""
    if width * height > max_pixels:
        raise CaptureError(f"{what} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), over the "
                           f"{max_pixels / 1e6:.0f}-megapixel limit; downscale it first")


def read_image(path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image file to BGR uint8, with any file name, refusing more than ``max_pixels`` before decoding.

    Raises :class:`CaptureError` with a one-line reason (unreadable, too big, not decodable).
    """
    name = shown(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CaptureError(f"cannot read image {name}: {e.strerror}; check the file") from e
    size = image_size(data)
    if size is not None:
        check_pixels(*size, f"image {name}", max_pixels)
    img = None
    if data:
        with native_stderr_muted():
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise CaptureError(f"cannot decode image {name} (empty, corrupt or unsupported format); remove or fix it")
    check_pixels(img.shape[1], img.shape[0], f"image {name}", max_pixels)
    return img


def write_image(path: str | os.PathLike[str], image: np.ndarray, params: list[int] | None = None) -> None:
    """Encode ``image`` by the file's extension and write it with Python (any file name).

    Raises ``ValueError`` for an extension OpenCV cannot encode and ``OSError`` when writing fails; callers turn
    these into their own one-line error.
    """
    suffix = Path(os.fspath(path)).suffix.lower()
    if not suffix.isascii():
        raise ValueError(f"unsupported image extension {suffix!r}")
    try:
        ok, buf = cv2.imencode(suffix, image, params or [])
    except cv2.error as e:
        raise ValueError(f"unsupported image extension {suffix or '(none)'!r}") from e
    if not ok:
        raise ValueError(f"cannot encode a {suffix} image")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def write_atomic(path: Path, write, tmp_suffix: str = ".tmp") -> Path:
    """Run ``write(file)`` on a hidden temporary sibling and rename it over ``path``, so a crash or a full disk never
    leaves a half-written result under the final name. On failure the temporary file is removed and
    :class:`OutputError` names the cause (``tmp_suffix`` keeps writers that check the extension, such as
    ``np.savez``, happy)."""
    tmp = path.with_name(f".{path.name}{tmp_suffix}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        tmp.replace(path)
    except OSError as e:
        with contextlib.suppress(OSError):  # a read-only or vanished folder: the write error is what matters
            tmp.unlink(missing_ok=True)
        why = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
        raise OutputError(f"cannot write {shown(path)} ({why})") from e
    return path
