"""Which cameras open, found on a background thread so the menu never blocks the window.

Opening a camera can take a second or more per index (USB negotiation, drivers that time out), so the probe runs on
its own thread and the menu is filled when it reports. On Linux only indices with a ``/dev/videoN`` node are
tried: opening a missing index is slow on some drivers and makes OpenCV print a warning per index.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from PyQt5 import QtCore

CAMERA_INDICES = range(10)


def _opens(index: int) -> bool:
    import cv2

    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    cap = cv2.VideoCapture(index, api)
    try:
        return bool(cap.isOpened() and cap.read()[0])
    finally:
        cap.release()


def probe_cameras(indices: Iterable[int] = CAMERA_INDICES, skip: int | None = None,
                  opens: Callable[[int], bool] = _opens) -> list[int]:
    """Indices that open and deliver a frame. ``skip`` (the camera in use, which cannot be opened twice) is listed
    without being probed."""
    found = []
    for i in indices:
        if i == skip:
            found.append(i)
            continue
        if sys.platform.startswith("linux") and opens is _opens and not Path(f"/dev/video{i}").exists():
            continue
        try:
            if opens(i):
                found.append(i)
        except Exception:  # a broken driver must not take the menu down
            continue
    return found


class CameraProbe(QtCore.QObject):
    """Runs ``probe(indices, skip)`` on a thread; ``found`` carries the list on the GUI thread."""

    found = QtCore.pyqtSignal(list)

    def __init__(self, probe: Callable[[range, int | None], list[int]], parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.probe = probe
        self._thread: threading.Thread | None = None
        self.result: list[int] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, skip: int | None) -> bool:
        if self.running:
            return False
        self._thread = threading.Thread(target=self._run, args=(skip,), name="camera-probe", daemon=True)
        self._thread.start()
        return True

    def _run(self, skip: int | None) -> None:
        try:
            found = list(self.probe(CAMERA_INDICES, skip))
        except Exception:
            found = []
        self.result = found
        self.found.emit(found)
