"""Atomic file writes for the animation export, with the one-line error every output uses."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from engine.errors import OutputError

from ..paths import shown

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes) -> Path:
    """Write via a hidden temp file + rename, so an interrupted or failed export never leaves a truncated file.

    Raises:
        OutputError: the write failed (temp file removed), e.g. on a full disk.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        with contextlib.suppress(OSError):  # a read-only or vanished folder: the write error is what matters
            tmp.unlink(missing_ok=True)
        why = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
        raise OutputError(f"cannot write {shown(path)} ({why}); free some space or choose another --export-anim "
                          "folder") from e
    return path
