"""Small widgets: an aspect-fit image view with HUD and help overlays, and a GUI-thread busy monitor.

Painting is the only per-frame work on the GUI thread: the image arrives as a ready ``QImage`` (built on the render
thread) and is drawn scaled without smoothing, which costs about a millisecond.
"""

from __future__ import annotations

import time
from collections import deque

from PyQt5 import QtCore, QtGui, QtWidgets


class ImageView(QtWidgets.QWidget):
    """Shows the latest QImage letterboxed into the widget, plus optional HUD lines and a help panel."""

    dragged = QtCore.pyqtSignal(float, float)
    wheeled = QtCore.pyqtSignal(float)
    double_clicked = QtCore.pyqtSignal()

    def __init__(self, placeholder: str = "", parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QtGui.QImage | None = None
        self.placeholder = placeholder
        self.hud_lines: list[str] = []
        self.help_text = ""
        self.show_help = False
        self.paint_ms = 0.0
        self._drag: QtCore.QPoint | None = None
        self.setMinimumSize(200, 150)
        self.setAttribute(QtCore.Qt.WA_OpaquePaintEvent)
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Expanding)

    def set_image(self, image: QtGui.QImage) -> None:
        self.image = image
        self.update()

    def image_rect(self) -> QtCore.QRect:
        if self.image is None or self.image.isNull():
            return self.rect()
        iw, ih = self.image.width(), self.image.height()
        s = min(self.width() / iw, self.height() / ih)
        w, h = int(iw * s), int(ih * s)
        return QtCore.QRect((self.width() - w) // 2, (self.height() - h) // 2, w, h)

    def paintEvent(self, _e: QtGui.QPaintEvent) -> None:
        t = time.perf_counter()
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor(24, 24, 28))
        if self.image is not None and not self.image.isNull():
            p.drawImage(self.image_rect(), self.image)
        elif self.placeholder:
            p.setPen(QtGui.QColor(200, 200, 200))
            p.drawText(self.rect(), QtCore.Qt.AlignCenter, self.placeholder)
        if self.hud_lines:
            self._draw_panel(p, self.hud_lines, QtCore.QPoint(8, 8))
        if self.show_help and self.help_text:
            self._draw_panel(p, self.help_text.splitlines(), None)
        p.end()
        self.paint_ms = (time.perf_counter() - t) * 1e3

    def _draw_panel(self, p: QtGui.QPainter, lines: list[str], at: QtCore.QPoint | None) -> None:
        font = QtGui.QFont("monospace", 9)
        font.setStyleHint(QtGui.QFont.Monospace)
        p.setFont(font)
        fm = QtGui.QFontMetrics(font)
        w = max(fm.horizontalAdvance(s) for s in lines) + 16
        h = fm.height() * len(lines) + 12
        if at is None:
            at = QtCore.QPoint((self.width() - w) // 2, (self.height() - h) // 2)
        p.fillRect(QtCore.QRect(at, QtCore.QSize(w, h)), QtGui.QColor(0, 0, 0, 170))
        p.setPen(QtGui.QColor(235, 235, 235))
        for i, s in enumerate(lines):
            p.drawText(at.x() + 8, at.y() + 6 + fm.ascent() + i * fm.height(), s)

    def mousePressEvent(self, e: QtGui.QMouseEvent) -> None:
        self._drag = e.pos()

    def mouseMoveEvent(self, e: QtGui.QMouseEvent) -> None:
        if self._drag is not None:
            d = e.pos() - self._drag
            self._drag = e.pos()
            self.dragged.emit(float(d.x()), float(d.y()))

    def mouseReleaseEvent(self, _e: QtGui.QMouseEvent) -> None:
        self._drag = None

    def mouseDoubleClickEvent(self, _e: QtGui.QMouseEvent) -> None:
        self.double_clicked.emit()

    def wheelEvent(self, e: QtGui.QWheelEvent) -> None:
        self.wheeled.emit(e.angleDelta().y() / 120.0)


class BusyMonitor(QtCore.QObject):
    """Measures how long the GUI thread is unavailable: a 5 ms precise timer whose late firings are busy time.

    This catches every blocking on the GUI thread (our slots, painting, Qt internals, GIL waits), not just the
    code we remembered to time.
    """

    def __init__(self, period_ms: int = 5, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.period = period_ms / 1e3
        self.gaps: deque[float] = deque(maxlen=2000)
        self.max_ms = 0.0
        self._last = time.perf_counter()
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._timer.start(period_ms)

    def _tick(self) -> None:
        now = time.perf_counter()
        busy = max(now - self._last - self.period, 0.0) * 1e3
        self._last = now
        self.gaps.append(busy)
        self.max_ms = max(self.max_ms, busy)

    def stop(self) -> None:
        """Stop measuring (shutdown joins threads on purpose; that is not a UI stall)."""
        self._timer.stop()

    def reset(self) -> None:
        self.gaps.clear()
        self.max_ms = 0.0

    def percentile(self, q: float) -> float:
        if not self.gaps:
            return 0.0
        g = sorted(self.gaps)
        return g[min(int(q / 100 * len(g)), len(g) - 1)]
