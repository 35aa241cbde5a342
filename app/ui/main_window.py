"""The main window: overlay view, 3D view, HUD, controls and shortcuts. It only paints and forwards commands.

The pipeline and the 3D renderer run on their own threads; this module never imports torch or a backend. Closing
the window (button, shortcut, window manager, SIGINT/SIGTERM) finalises the recording and the npz before exiting.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from ..render.colors import colors_for
from ..types import FrameOutput, RecordRequest
from .bridge import FrameBridge
from .view3d import View3D
from .widgets import BusyMonitor, ImageView

if TYPE_CHECKING:
    from ..session import Session

log = logging.getLogger(__name__)

SHORTCUTS = (  # key, action name, description (the help overlay is generated from this table)
    ("Space", "pause", "pause / resume"),
    ("N", "step", "step one frame (while paused)"),
    ("R", "record", "start / stop recording"),
    ("S", "screenshot", "save a screenshot of the overlay"),
    ("M", "mesh", "meshes on / off"),
    ("K", "skeleton", "2D skeletons on / off"),
    ("C", "centers", "centres and track IDs on / off"),
    ("3", "view3d", "3D view on / off"),
    ("T", "smooth", "smoothing on / off"),
    ("+", "opacity_up", "mesh opacity +"),
    ("-", "opacity_down", "mesh opacity -"),
    ("]", "threshold_up", "detection threshold +"),
    ("[", "threshold_down", "detection threshold -"),
    ("H", "help", "this help (also F1)"),
    ("Q", "quit", "quit (also Esc); finishes recordings"),
)


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, session: Session, bridge: FrameBridge, show_3d: bool = True,
                 screenshot_dir: Path = Path("screenshots")) -> None:
        super().__init__()
        self.session = session
        self.pipeline = session.pipeline
        self.settings = session.settings
        self.bridge = bridge
        self.screenshot_dir = screenshot_dir
        self.paused = False
        self.ended = False
        self.finished = False
        self.last_output: FrameOutput | None = None
        self.frames_shown = 0
        self.slot_ms_max = 0.0
        self.setWindowTitle(f"{session.source.name} - {session.pipeline.model.info.title}")
        info = session.pipeline.model.info
        self._model_line = f"{info.label} · {info.backend}" + (" · SYNTHETIC DEMO MODEL" if info.synthetic_demo
                                                                else "")
        self.overlay = ImageView("waiting for the first frame...")
        self.view3d_widget = ImageView("3D view")
        self.overlay.help_text = "\n".join(f"{k:>6}  {d}" for k, _, d in SHORTCUTS)
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(self.overlay)
        split.addWidget(self.view3d_widget)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.setCentralWidget(split)
        self.actions: dict[str, QtWidgets.QAction] = {}
        self._build_toolbar()
        self.status = self.statusBar()
        self.busy = BusyMonitor(parent=self)
        self.view3d: View3D | None = None
        bridge.frame_ready.connect(self._on_frame)
        bridge.view3d_ready.connect(self._on_image3d)
        bridge.ended.connect(self._on_ended)
        bridge.scene_hook = self._submit_3d
        self.view3d_widget.dragged.connect(lambda dx, dy: self.view3d and self.view3d.rotate(dx * 2, dy * 2))
        self.view3d_widget.wheeled.connect(lambda s: self.view3d and self.view3d.zoom(-s))
        self.view3d_widget.double_clicked.connect(lambda: self.view3d and self.view3d.reset_view())
        self._hud_timer = QtCore.QTimer(self)
        self._hud_timer.timeout.connect(self._update_hud)
        self._hud_timer.start(250)
        self.actions["view3d"].setChecked(show_3d)
        self._toggle_3d(show_3d)
        self.resize(1280, 600)

    # ------------------------------------------------------------------ building
    def _action(self, name: str, text: str, key: str, slot, checkable: bool = False,
                checked: bool = False) -> QtWidgets.QAction:
        a = QtWidgets.QAction(text, self)
        a.setShortcut(QtGui.QKeySequence(key))
        a.setShortcutContext(QtCore.Qt.ApplicationShortcut)
        a.setToolTip(f"{text} ({key})")
        a.setCheckable(checkable)
        if checkable:
            a.setChecked(checked)
            a.toggled.connect(slot)
        else:
            a.triggered.connect(slot)
        self.addAction(a)
        self.actions[name] = a
        return a

    def _build_toolbar(self) -> None:
        st = self.settings
        tb = self.addToolBar("controls")
        tb.setMovable(False)
        tb.addAction(self._action("pause", "Pause", "Space", self._toggle_pause, checkable=True))
        tb.addAction(self._action("step", "Step", "N", self._step))
        tb.addAction(self._action("record", "Record", "R", self._toggle_record, checkable=True,
                                  checked=self.session.record_request is not None))
        tb.addAction(self._action("screenshot", "Screenshot", "S", lambda: self.save_screenshot()))
        tb.addSeparator()
        tb.addAction(self._action("mesh", "Mesh", "M", lambda v: self._set("show_mesh", v), True, st.show_mesh))
        tb.addAction(self._action("skeleton", "Skeleton", "K", lambda v: self._set("show_skeleton", v), True,
                                  st.show_skeleton))
        tb.addAction(self._action("centers", "Centers", "C", lambda v: self._set("show_centers", v), True,
                                  st.show_centers))
        tb.addAction(self._action("view3d", "3D", "3", self._toggle_3d, True, True))
        tb.addAction(self._action("smooth", "Smooth", "T", lambda v: self._set("smooth", v), True, st.smooth))
        tb.addSeparator()
        self.opacity = self._slider(tb, "opacity", 0, 100, int(st.opacity * 100),
                                    lambda v: self._set("opacity", v / 100))
        self.threshold = self._slider(tb, "threshold", 1, 95, int(st.threshold * 100),
                                      lambda v: self._set("threshold", v / 100))
        self.smoothness = self._slider(tb, "smoothing", 1, 40, round(st.smooth_strength * 10),
                                       lambda v: self._set("smooth_strength", v / 10))
        self._action("opacity_up", "Opacity +", "+", lambda: self.opacity.setValue(self.opacity.value() + 10))
        self._action("opacity_down", "Opacity -", "-", lambda: self.opacity.setValue(self.opacity.value() - 10))
        self._action("threshold_up", "Threshold +", "]", lambda: self.threshold.setValue(self.threshold.value() + 5))
        self._action("threshold_down", "Threshold -", "[",
                     lambda: self.threshold.setValue(self.threshold.value() - 5))
        tb.addSeparator()
        tb.addAction(self._action("help", "Help", "H", self._toggle_help, True))
        self._action("help_f1", "Help", "F1", lambda: self.actions["help"].toggle())
        self._action("quit", "Quit", "Q", self.close)
        self._action("quit_esc", "Quit", "Esc", self.close)

    def _slider(self, tb: QtWidgets.QToolBar, label: str, lo: int, hi: int, value: int,
                slot) -> QtWidgets.QSlider:
        tb.addWidget(QtWidgets.QLabel(f" {label} "))
        s = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        s.setRange(lo, hi)
        s.setValue(value)
        s.setFixedWidth(110)
        s.setFocusPolicy(QtCore.Qt.NoFocus)
        s.valueChanged.connect(slot)
        tb.addWidget(s)
        return s

    # ------------------------------------------------------------------ slots (GUI thread, all short)
    def _set(self, name: str, value: object) -> None:
        setattr(self.settings, name, value)
        if self.paused:
            self.pipeline.rerender()

    def _on_frame(self) -> None:
        t = time.perf_counter()
        item = self.bridge.take_frame()
        if item is None:
            return
        img, out = item
        self.last_output = out
        self.overlay.set_image(img)
        self.frames_shown += 1
        if self.frames_shown == 1:
            self.busy.reset()  # start-up (window mapping, first layout) is not steady-state responsiveness
        self.slot_ms_max = max(self.slot_ms_max, (time.perf_counter() - t) * 1e3)

    def _on_image3d(self) -> None:
        img = self.bridge.take_image3d()
        if img is not None:
            self.view3d_widget.set_image(img)

    def _submit_3d(self, out: FrameOutput) -> None:
        """Render thread: hand the scene to the 3D worker (latest wins)."""
        v3d = self.view3d
        if v3d is None or out.meshes is None:
            return
        verts = out.meshes.vertices + out.people.cam_trans[:, None, :]
        v3d.submit(verts, out.meshes.faces, colors_for(out.people.track_ids))

    def _toggle_3d(self, on: bool) -> None:
        if on and self.view3d is None:
            self.view3d = View3D(self.bridge.on_image3d).start()
        elif not on and self.view3d is not None:
            v, self.view3d = self.view3d, None
            v.stop()
        self.view3d_widget.setVisible(on)

    def _toggle_pause(self, on: bool) -> None:
        self.paused = on
        self.pipeline.set_paused(on)

    def _step(self) -> None:
        if not self.paused:
            self.actions["pause"].setChecked(True)
        self.pipeline.step()

    def _toggle_record(self, on: bool) -> None:
        if on:
            req = self.session.record_request
            if req is None:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                path = Path("recordings") / f"{self.session.source.name}-{stamp}.mp4"
                req = RecordRequest(path, self.session.source.fps, block=False, timed=True)
            self.pipeline.set_recording(req)
            self.status.showMessage(f"recording to {req.path}", 4000)
        else:
            self.pipeline.set_recording(None)

    def _toggle_help(self, on: bool) -> None:
        self.overlay.show_help = on
        self.overlay.update()

    def _on_ended(self) -> None:
        self.ended = True
        err = self.pipeline.error or self.session.source_error()
        self.status.showMessage(f"stopped: {err}" if err else "end of input (Q to quit)")

    def _update_hud(self) -> None:
        snap = self.pipeline.snapshot()
        lines = [self._model_line, *snap.hud_lines()]
        lines.append(f"ui: paint {self.overlay.paint_ms:.1f} ms, busy max {self.busy.max_ms:.0f} ms"
                     + (f", 3D {self.view3d.render_ms:.0f} ms" if self.view3d else ""))
        if self.paused:
            lines.append("PAUSED (N = step)")
        if self.view3d is not None and self.view3d.error:
            lines.append(self.view3d.error)
        self.overlay.hud_lines = lines
        self.overlay.update()
        rec = self.pipeline.recorder
        if self.actions["record"].isChecked() and rec is None and self.pipeline.record_note.startswith(
                ("disk", "recording failed")):
            self.actions["record"].blockSignals(True)
            self.actions["record"].setChecked(False)
            self.actions["record"].blockSignals(False)
            self.status.showMessage(self.pipeline.record_note)

    # ------------------------------------------------------------------ outputs
    def save_screenshot(self, path: Path | None = None) -> Path:
        """Save the overlay as shown (video, meshes and HUD) to ``path`` or screenshots/<source>-<time>.png."""
        if path is None:
            self.screenshot_dir.mkdir(parents=True, exist_ok=True)
            path = self.screenshot_dir / f"{self.session.source.name}-{time.strftime('%Y%m%d-%H%M%S')}.png"
        ok = self.overlay.grab(self.overlay.image_rect()).save(str(path))
        self.status.showMessage(f"screenshot {'saved to' if ok else 'FAILED:'} {path}", 4000)
        log.info("screenshot %s: %s", "saved" if ok else "failed", path)
        return path

    def overlay_array(self) -> np.ndarray | None:
        """The last overlay frame as BGR (for tests and the screenshot check)."""
        out = self.last_output
        return None if out is None else out.overlay

    def closeEvent(self, e: QtGui.QCloseEvent) -> None:
        if not self.finished:
            self.finished = True
            self.busy.stop()
            self.status.showMessage("finishing outputs...")
            self._hud_timer.stop()
            if self.view3d is not None:
                self.view3d.stop()
                self.view3d = None
            notes = self.session.finish()
            for n in notes:
                log.info(n)
        e.accept()
