"""The only place where worker threads meet Qt: callbacks from the render thread become queued signals.

Images are converted to ``QImage`` on the render thread, so the GUI thread only paints; they are handed over as
32-bit RGB, the format Qt paints without converting (a 768x576 frame: 0.2 ms per paint instead of 1 ms from 24-bit
BGR, and the overlay repaints with every HUD update, not only with every frame). A one-slot latest-frame
buffer with a "pending" flag keeps signals from piling up when painting falls behind: the GUI always shows the
newest frame and never works through a backlog.

The window can replace its session (another input, another model); every session gets callbacks stamped with a
new generation, and only the active generation's frames and end-of-input reach the window, so a late frame of the
session being shut down can never be shown as the new input's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

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


def for_display(img: QtGui.QImage) -> QtGui.QImage:
    """The image in the format the raster paint engine draws directly."""
    return img.convertToFormat(QtGui.QImage.Format_RGB32)


class FrameBridge(QtCore.QObject):
    frame_ready = QtCore.pyqtSignal()
    view3d_ready = QtCore.pyqtSignal()
    ended = QtCore.pyqtSignal(int)  # the generation whose input ended

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._frame: tuple[QtGui.QImage, FrameOutput] | None = None
        self._frame_pending = False
        self._img3d: QtGui.QImage | None = None
        self._img3d_pending = False
        self.frames_delivered = 0
        self.generation = 0
        self._issued = 0
        self.scene_hook = None  # set by the window: called on the render thread with each FrameOutput

    # ---- sessions
    def callbacks(self) -> tuple[int, Callable[[FrameOutput], None], Callable[[], None]]:
        """``(generation, on_output, on_end)`` for a new session; they stay silent until :meth:`activate`."""
        with self._lock:
            self._issued += 1
            gen = self._issued

        def on_output(out: FrameOutput) -> None:
            if self.generation == gen:
                self._deliver(gen, out)

        def on_end() -> None:
            if self.generation == gen:
                self.ended.emit(gen)

        return gen, on_output, on_end

    def activate(self, gen: int) -> None:
        """From now on only ``gen``'s frames are delivered; a frame of the previous session still waiting is dropped."""
        with self._lock:
            self.generation = gen
            self._frame = None
            self._frame_pending = False

    # ---- render thread side
    def _deliver(self, gen: int, out: FrameOutput) -> None:
        if self.scene_hook is not None:
            self.scene_hook(out)
        if out.overlay is None:
            return
        img = for_display(bgr_to_qimage(out.overlay))
        with self._lock:
            if gen != self.generation:
                return
            self._frame = (img, out)
            emit = not self._frame_pending
            self._frame_pending = True
        if emit:
            self.frame_ready.emit()

    def on_image3d(self, rgb: np.ndarray) -> None:
        img = for_display(rgb_to_qimage(rgb))
        with self._lock:
            self._img3d = img
            emit = not self._img3d_pending
            self._img3d_pending = True
        if emit:
            self.view3d_ready.emit()

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
