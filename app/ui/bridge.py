"""The only place where worker threads meet Qt: callbacks from the render thread become queued signals.

Images are converted to ``QImage`` on the render thread, so the GUI thread only paints. A one-slot latest-frame
buffer with a "pending" flag keeps signals from piling up when painting falls behind: the GUI always shows the
newest frame and never works through a backlog.
"""

from __future__ import annotations

import threading

import numpy as np
from PyQt5 import QtCore, QtGui

from ..types import FrameOutput


def bgr_to_qimage(bgr: np.ndarray) -> QtGui.QImage:
    """A QImage that owns a copy of the pixels (safe to hand across threads)."""
    h, w = bgr.shape[:2]
    arr = np.ascontiguousarray(bgr)
    return QtGui.QImage(arr.data, w, h, arr.strides[0], QtGui.QImage.Format_BGR888).copy()


def rgb_to_qimage(rgb: np.ndarray) -> QtGui.QImage:
    h, w = rgb.shape[:2]
    arr = np.ascontiguousarray(rgb)
    return QtGui.QImage(arr.data, w, h, arr.strides[0], QtGui.QImage.Format_RGB888).copy()


class FrameBridge(QtCore.QObject):
    frame_ready = QtCore.pyqtSignal()
    view3d_ready = QtCore.pyqtSignal()
    ended = QtCore.pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._frame: tuple[QtGui.QImage, FrameOutput] | None = None
        self._frame_pending = False
        self._img3d: QtGui.QImage | None = None
        self._img3d_pending = False
        self.frames_delivered = 0
        self.scene_hook = None  # set by the window: called on the render thread with each FrameOutput

    # ---- render thread side
    def on_output(self, out: FrameOutput) -> None:
        if self.scene_hook is not None:
            self.scene_hook(out)
        if out.overlay is None:
            return
        img = bgr_to_qimage(out.overlay)
        with self._lock:
            self._frame = (img, out)
            emit = not self._frame_pending
            self._frame_pending = True
        if emit:
            self.frame_ready.emit()

    def on_image3d(self, rgb: np.ndarray) -> None:
        img = rgb_to_qimage(rgb)
        with self._lock:
            self._img3d = img
            emit = not self._img3d_pending
            self._img3d_pending = True
        if emit:
            self.view3d_ready.emit()

    def on_end(self) -> None:
        self.ended.emit()

    # ---- GUI thread side
    def take_frame(self) -> tuple[QtGui.QImage, FrameOutput] | None:
        with self._lock:
            item, self._frame = self._frame, None
            self._frame_pending = False
        if item is not None:
            self.frames_delivered += 1
        return item

    def take_image3d(self) -> QtGui.QImage | None:
        with self._lock:
            img, self._img3d = self._img3d, None
            self._img3d_pending = False
        return img
