"""The seek bar under the video: position and length as time (``m:ss / m:ss``, image lists ``k / n``), click or
drag to seek, and a replay button.

Seeking is requested when the mouse is released (or a key moves the slider), not on every pixel of a drag: each
seek repositions the decoder and resets tracking, so a drag would otherwise queue dozens of seeks.
"""

from __future__ import annotations

from PyQt5 import QtCore, QtWidgets


def format_time(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    s = max(int(seconds), 0)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _JumpSlider(QtWidgets.QSlider):
    """A slider that jumps to where it is clicked (the platform default pages by a step instead)."""

    def mousePressEvent(self, e) -> None:
        if e.button() == QtCore.Qt.LeftButton:
            opt = QtWidgets.QStyleOptionSlider()
            self.initStyleOption(opt)
            groove = self.style().subControlRect(QtWidgets.QStyle.CC_Slider, opt, QtWidgets.QStyle.SC_SliderGroove,
                                                 self)
            handle = self.style().subControlRect(QtWidgets.QStyle.CC_Slider, opt, QtWidgets.QStyle.SC_SliderHandle,
                                                 self)
            if not handle.contains(e.pos()):
                span = max(groove.width() - handle.width(), 1)
                value = QtWidgets.QStyle.sliderValueFromPosition(self.minimum(), self.maximum(),
                                                                  e.pos().x() - groove.x() - handle.width() // 2,
                                                                  span)
                self.setSliderPosition(value)
        super().mousePressEvent(e)


class SeekBar(QtWidgets.QWidget):
    seek_requested = QtCore.pyqtSignal(int)  # frame index
    replay_requested = QtCore.pyqtSignal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.frame_count = 0
        self.fps = 30.0
        self.images = False
        self.position = 0
        self.slider = _JumpSlider(QtCore.Qt.Horizontal)
        self.slider.setFocusPolicy(QtCore.Qt.NoFocus)
        self.slider.setTracking(False)
        self.label = QtWidgets.QLabel("0:00 / 0:00")
        self.label.setMinimumWidth(110)
        self.label.setAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        self.replay = QtWidgets.QPushButton("Replay")
        self.replay.setFocusPolicy(QtCore.Qt.NoFocus)
        self.replay.setToolTip("play the input again from the start (Ctrl+R)")
        self.replay.clicked.connect(self.replay_requested)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(6, 0, 6, 2)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        lay.addWidget(self.replay)
        self.slider.valueChanged.connect(self._on_value)  # with tracking off: on release, clicks and keys
        self.slider.sliderMoved.connect(self._show)

    def configure(self, frame_count: int, fps: float, images: bool) -> None:
        """A new input: hidden for live sources (``frame_count`` 0)."""
        self.frame_count, self.fps, self.images = frame_count, fps or 30.0, images
        self.setVisible(frame_count > 1)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(frame_count - 1, 0))
        self.slider.setPageStep(max(round(self.fps * 5), 1) if not images else 1)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.position = 0
        self._show(0)

    def set_position(self, index: int) -> None:
        """The frame on screen (ignored while the user holds the handle)."""
        self.position = index
        if self.slider.isSliderDown():
            return
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self._show(index)

    def text(self, index: int) -> str:
        if self.images:
            return f"{index + 1} / {self.frame_count}"
        return f"{format_time(index / self.fps)} / {format_time(self.frame_count / self.fps)}"

    def _show(self, index: int) -> None:
        self.label.setText(self.text(index))

    def _on_value(self, value: int) -> None:
        self._show(value)
        self.seek_requested.emit(value)
