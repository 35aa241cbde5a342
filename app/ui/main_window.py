"""The main window: overlay view, 3D view, HUD, seek bar, settings dock, menus and shortcuts. It only paints and
forwards commands.

The pipeline and the 3D renderer run on their own threads; this module never imports torch or a backend (the
composition root hands in :class:`~app.ui.services.Services`). Anything slower than a paint (opening an input,
loading a model, finishing outputs, exports, writing a screenshot) runs on a worker thread and reports back through
queued signals, so the window stays responsive. Closing the window (button, shortcut, window manager, a stop
signal) finalises the recording and the results before exiting.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets

from ..render.colors import colors_for
from ..types import FrameOutput, RecordRequest
from .bridge import FrameBridge, bgr_to_qimage
from .cameras import CameraProbe
from .history import ClipHistory
from .hud import HudState, hud_lines
from .jobs import Job
from .seekbar import SeekBar
from .services import InputChoice, ModelChoice, Services
from .settings_panel import SettingsPanel
from .switcher import SessionSwitcher, SwitchResult, camera_index
from .view3d import View3D
from .widgets import BusyMonitor, ImageView

if TYPE_CHECKING:
    from ..session import Session

log = logging.getLogger(__name__)

SEEK_STEP_S = 5.0
VIDEO_FILTER = "videos and images (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv *.jpg *.jpeg *.png *.bmp " \
               "*.webp *.tif *.tiff);;all files (*)"

SHORTCUTS = (  # key, description (the help overlay is generated from this table)
    ("Space", "pause / resume"),
    ("N", "step one frame (paused)"),
    ("Left/Right", "seek -5 s / +5 s (or click the bar)"),
    ("Ctrl+R", "replay from the start"),
    ("Ctrl+O", "open a file (or drop one here)"),
    ("R", "record the view (recordings/)"),
    ("S", "save the frame (screenshots/)"),
    ("M K C", "meshes / skeletons / centres"),
    ("3", "3D view (drag, wheel, double-click)"),
    ("T", "smoothing on / off"),
    ("I", "stage timings in the HUD"),
    ("F2", "settings panel"),
    ("+ - ] [", "opacity, detection threshold"),
    ("H F1", "this help"),
    ("Q Esc", "quit (finishes recordings)"),
)

# LiveSettings field <-> the toolbar action that mirrors it
_TOGGLES = {"show_mesh": "mesh", "show_skeleton": "skeleton", "show_centers": "centers", "smooth": "smooth"}


class MainWindow(QtWidgets.QMainWindow):
    """Args:
    session: the first session (built, not started: the caller starts it after ``show()``).
    bridge: the frame bridge, with ``generation`` = the session's callbacks' generation.
    services: what the window asks of the rest of the app (opening inputs and models, exports).
    show_3d: start with the 3D view on.
    out_dir: where R and S write (``<out_dir>/recordings``, ``<out_dir>/screenshots``).
    """

    input_ended = QtCore.pyqtSignal()

    def __init__(self, session: Session, bridge: FrameBridge, services: Services, show_3d: bool = True,
                 out_dir: Path = Path()) -> None:
        super().__init__()
        self.services = services
        self.bridge = bridge
        self.out_dir = out_dir.absolute()
        self.paused = False
        self.ended = False
        self.finished = False
        self.details = False
        self.last_output: FrameOutput | None = None
        self.frames_shown = 0
        self.slot_ms_max = 0.0
        self.output_notes: list[str] = []  # what every finished session wrote (printed at exit)
        self.jobs: list[Job] = []
        self.last_saved: Path | None = None
        self._last_frame_t = time.perf_counter()
        self._seekbar_t = 0.0
        self._note = ""  # a one-off HUD note (load errors)
        self.overlay = ImageView("waiting for the first frame...")
        self.view3d_widget = ImageView("3D view")
        self.overlay.help_text = "\n".join([*(f"{k:>10}  {d}" for k, d in SHORTCUTS), "",
                                             f"R and S write into {self.out_dir}"])
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(self.overlay)
        split.addWidget(self.view3d_widget)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.seekbar = SeekBar()
        self.seekbar.seek_requested.connect(self.seek)
        self.seekbar.replay_requested.connect(self.replay)
        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(split, 1)
        lay.addWidget(self.seekbar)
        self.setCentralWidget(central)
        self.actions: dict[str, QtWidgets.QAction] = {}
        self.session = session
        self.pipeline = session.pipeline
        self.settings = session.settings
        self.dock = SettingsPanel(session.settings, services.model_choice(session), services.backends,
                                  services.live_faces, self)
        self.dock.setting_changed.connect(self._set)
        self.dock.model_requested.connect(self.change_model)
        self.dock.live_faces_requested.connect(self.set_live_faces)
        self.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.dock)
        self.opacity, self.threshold, self.smoothness = (self.dock.opacity, self.dock.threshold,
                                                         self.dock.smooth_strength)
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self.status = self.statusBar()
        self.model_label = QtWidgets.QLabel()
        self.loading_bar = QtWidgets.QProgressBar()
        self.loading_bar.setRange(0, 0)
        self.loading_bar.setMaximumWidth(120)
        self.loading_bar.setMaximumHeight(12)
        self.loading_bar.hide()
        self.status.addPermanentWidget(self.loading_bar)
        self.status.addPermanentWidget(self.model_label)
        self.busy = BusyMonitor(parent=self)
        self.view3d: View3D | None = None
        self.switcher = SessionSwitcher(services, bridge, self)
        self.switcher.done.connect(self._on_switched)
        self.cameras = CameraProbe(services.probe_cameras, self)
        self.cameras.found.connect(self._fill_camera_menu)
        bridge.frame_ready.connect(self._on_frame)
        bridge.view3d_ready.connect(self._on_image3d)
        bridge.ended.connect(self._on_ended)
        bridge.scene_hook = self._submit_3d
        self.view3d_widget.dragged.connect(lambda dx, dy: self.view3d and self.view3d.rotate(dx, dy))
        self.view3d_widget.wheeled.connect(lambda s: self.view3d and self.view3d.zoom(s))
        self.view3d_widget.double_clicked.connect(lambda: self.view3d and self.view3d.reset_view())
        self._hud_timer = QtCore.QTimer(self)
        self._hud_timer.timeout.connect(self._update_hud)
        self._hud_timer.start(250)
        self.actions["view3d"].setChecked(show_3d)
        self._toggle_3d(show_3d)
        self.setAcceptDrops(True)
        self._adopt(session)
        self.actions["record"].blockSignals(True)  # a --record recording is already requested by the session
        self.actions["record"].setChecked(session.record_request is not None)
        self.actions["record"].blockSignals(False)
        self.resize(1440, 640)

    # ------------------------------------------------------------------ building
    def _action(self, name: str, text: str, key: str, slot, checkable: bool = False,
                checked: bool = False) -> QtWidgets.QAction:
        a = QtWidgets.QAction(text, self)
        if key:
            a.setShortcut(QtGui.QKeySequence(key))
            a.setShortcutContext(QtCore.Qt.WindowShortcut)  # not while a file dialog is in front
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

    def _build_actions(self) -> None:
        st = self.settings
        act = self._action
        act("open", "Open video or image...", "Ctrl+O", lambda: self.open_dialog())
        act("open_folder", "Open folder of images...", "Ctrl+Shift+O", lambda: self.open_dialog(folder=True))
        act("replay", "Replay", "Ctrl+R", lambda: self.replay())
        act("back", "Back 5 s", "Left", lambda: self.seek_by(-SEEK_STEP_S))
        act("forward", "Forward 5 s", "Right", lambda: self.seek_by(SEEK_STEP_S))
        act("pause", "Pause", "Space", self._toggle_pause, checkable=True)
        act("step", "Step", "N", self._step)
        act("record", "Record", "R", self._toggle_record, checkable=True)
        act("screenshot", "Screenshot", "S", lambda: self.save_screenshot())
        act("mesh", "Mesh", "M", lambda v: self._set("show_mesh", v), True, st.show_mesh)
        act("skeleton", "Skeleton", "K", lambda v: self._set("show_skeleton", v), True, st.show_skeleton)
        act("centers", "Centers", "C", lambda v: self._set("show_centers", v), True, st.show_centers)
        act("view3d", "3D", "3", self._toggle_3d, True, True)
        act("smooth", "Smooth", "T", lambda v: self._set("smooth", v), True, st.smooth)
        act("details", "Stage timings", "I", self._toggle_details, True)
        act("opacity_up", "Opacity +", "+", lambda: self.opacity.setValue(self.opacity.value() + 10))
        act("opacity_down", "Opacity -", "-", lambda: self.opacity.setValue(self.opacity.value() - 10))
        act("threshold_up", "Threshold +", "]", lambda: self.threshold.setValue(self.threshold.value() + 5))
        act("threshold_down", "Threshold -", "[", lambda: self.threshold.setValue(self.threshold.value() - 5))
        act("help", "Help", "H", self._toggle_help, True)
        act("help_f1", "Help", "F1", lambda: self.actions["help"].toggle())
        act("quit", "Quit", "Q", self.close)
        act("quit_esc", "Quit", "Esc", self.close)
        act("export_npz", "Results (.npz)...", "", lambda: self.export_npz())
        for fmt in ("obj", "ply", "glb"):
            act(f"export_mesh_{fmt}", f"{fmt.upper()}...", "", lambda _=False, f=fmt: self.export_meshes(fmt=f))
        act("export_anim", "Animation (BVH + animated glb)...", "", lambda: self.export_animation())
        why = self.services.animation_unavailable()
        if why:
            self.actions["export_anim"].setEnabled(False)
            self.actions["export_anim"].setToolTip(why)
        settings = self.dock.toggleViewAction()
        settings.setShortcut(QtGui.QKeySequence("F2"))
        settings.setText("Settings panel")
        self.addAction(settings)
        self.actions["settings"] = settings

    def _build_menus(self) -> None:
        a = self.actions
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.addAction(a["open"])
        file.addAction(a["open_folder"])
        self.camera_menu = file.addMenu("Camera")
        self.camera_menu.aboutToShow.connect(self.probe_cameras)
        self.camera_menu.addAction("looking for cameras...").setEnabled(False)
        file.addSeparator()
        file.addAction(a["record"])
        file.addAction(a["screenshot"])
        file.addSeparator()
        file.addAction(a["quit"])
        play = bar.addMenu("&Playback")
        for name in ("pause", "step", "back", "forward", "replay"):
            play.addAction(a[name])
        view = bar.addMenu("&View")
        for name in ("mesh", "skeleton", "centers", "smooth", "view3d", "details", "settings", "help"):
            view.addAction(a[name])
        export = bar.addMenu("&Export")
        export.setToolTipsVisible(True)
        export.addAction(a["export_npz"])
        meshes = export.addMenu("Meshes of this frame")
        for fmt in ("obj", "ply", "glb"):
            meshes.addAction(a[f"export_mesh_{fmt}"])
        export.addAction(a["export_anim"])

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("controls")
        tb.setObjectName("controls")
        tb.setMovable(False)
        for name in ("open", "pause", "step", "record", "screenshot", None, "mesh", "skeleton", "centers", "view3d",
                     "smooth", None, "details", "help"):
            if name is None:
                tb.addSeparator()
            else:
                tb.addAction(self.actions[name])
        self.actions["open"].setIconText("Open")

    # ------------------------------------------------------------------ sessions
    def _adopt(self, session: Session) -> None:
        """Make ``session`` the one shown and controlled (not started here)."""
        self.session = session
        self.pipeline = session.pipeline
        self.settings = session.settings
        src = session.source
        images = not self.pipeline.cfg.temporal  # image lists: unrelated images, one result file each
        self.history = ClipHistory(src.name, src.fps, per_frame=images)
        self.pipeline.sinks.append(self.history)
        info = self.pipeline.model.info
        self.setWindowTitle(f"{src.name} - {info.title}")
        self._model_line = f"{info.label} · {info.backend}" + (" · SYNTHETIC DEMO MODEL" if info.synthetic_demo
                                                                else "")
        self.model_label.setText(f"{info.label} · {info.backend}")
        self.seekbar.configure(0 if src.live else src.frame_count, src.fps, images)
        self.ended = False
        self.last_output = None
        self._last_frame_t = time.perf_counter()
        self._sync_widgets()

    def _set_loading(self, text: str) -> None:
        loading = bool(text)
        self.loading_bar.setVisible(loading)
        self.dock.set_busy(loading)
        for name in ("open", "open_folder", "replay", "back", "forward", "step", "record"):
            self.actions[name].setEnabled(not loading)
        self.camera_menu.setEnabled(not loading)
        self.seekbar.setEnabled(not loading)
        if loading:
            self.status.showMessage(text)

    def _switch(self, source: InputChoice | None = None, model: ModelChoice | None = None, start_at: int = 0,
                reason: str = "open") -> bool:
        if self.finished or not self.switcher.request(self.session, source, model, start_at, reason):
            self.status.showMessage("still loading the previous request...", 3000)
            return False
        label = source.label if source is not None else ""
        what = {"open": f"opening {label}", "camera": f"opening {label}", "model": "loading the model",
                "replay": "starting again", "seek": "seeking"}[reason]
        self._set_loading(what + "...")
        return True

    def open_input(self, path: str | Path) -> bool:
        """Switch to a video, image or folder (File > Open, drag and drop)."""
        return self._switch(InputChoice(path=str(path)), reason="open")

    def open_camera(self, index: int) -> bool:
        return self._switch(InputChoice(camera=index), reason="camera")

    def change_model(self, choice: ModelChoice) -> bool:
        """Another model or backend: a new session at the same position (files)."""
        start = self._resume_index()
        return self._switch(model=choice, start_at=start, reason="model")

    def _resume_index(self) -> int:
        if self.session.source.live or self.last_output is None:
            return 0
        return self.last_output.frame.index

    def _on_switched(self, result: SwitchResult) -> None:
        self._set_loading("")
        if result.notes:
            self.output_notes.extend(result.notes)
            for n in result.notes:
                log.info(n)
        if self.finished:  # closed while loading: closeEvent handled the result
            return
        new = result.session
        if new is None:
            self._note = f"could not switch: {result.error}"
            self.status.showMessage(self._note + ("" if result.replaced else " (still showing the previous input)"))
            log.error(self._note)
            return
        old_settings, model_changed = self.settings, result.reason == "model"
        for f in dataclasses.fields(old_settings):
            if f.name == "threshold" and model_changed:
                continue  # each model has its own tuned threshold
            setattr(new.settings, f.name, getattr(old_settings, f.name))
        self.bridge.activate(result.generation)
        self._adopt(new)
        if model_changed:
            self.dock.set_choice(self.services.model_choice(new))
        if result.start_at:
            new.pipeline.seek(result.start_at)
        self.actions["record"].blockSignals(True)
        self.actions["record"].setChecked(False)
        self.actions["record"].blockSignals(False)
        if self.paused:
            new.pipeline.set_paused(True)
            new.pipeline.step()
        new.pipeline.start()
        saved = "; ".join(result.notes)
        if result.error:
            self._note = f"could not switch: {result.error}"
            self.status.showMessage(f"{self._note}; reopened {new.source.name}")
        else:
            self._note = ""
            self.status.showMessage(f"now playing {new.source.name}" + (f" (saved: {saved})" if saved else ""),
                                    8000)

    def _discard(self, session: Session) -> None:
        """A built session that never started: only its source is open."""
        try:
            session.source.release()
        except Exception as e:
            log.debug("release failed: %s", e)

    # ------------------------------------------------------------------ File menu, drag and drop, cameras
    def open_dialog(self, folder: bool = False) -> None:
        current = self.session.cfg.capture.input
        start = str(Path(current).parent) if current else str(Path.cwd())
        if folder:
            path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        else:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a video or image", start, VIDEO_FILTER)
        if path:
            self.open_input(path)

    @staticmethod
    def _dropped_path(mime: QtCore.QMimeData) -> str | None:
        for url in mime.urls() if mime.hasUrls() else []:
            if url.isLocalFile():
                return url.toLocalFile()
        return None

    def dragEnterEvent(self, e: QtGui.QDragEnterEvent) -> None:
        if self._dropped_path(e.mimeData()) is not None:
            e.acceptProposedAction()
        else:
            e.ignore()

    def dragMoveEvent(self, e: QtGui.QDragMoveEvent) -> None:
        self.dragEnterEvent(e)

    def dropEvent(self, e: QtGui.QDropEvent) -> None:
        path = self._dropped_path(e.mimeData())
        if path is None:
            e.ignore()
            return
        e.acceptProposedAction()
        self.open_input(path)

    def probe_cameras(self) -> None:
        """List the cameras that open (on a thread; the menu fills in when it reports)."""
        if self.cameras.start(camera_index(self.session)):
            self.camera_menu.clear()
            self.camera_menu.addAction("looking for cameras...").setEnabled(False)

    def _fill_camera_menu(self, found: list) -> None:
        self.camera_menu.clear()
        current = camera_index(self.session)
        if not found:
            self.camera_menu.addAction("no camera found").setEnabled(False)
        for i in found:
            a = self.camera_menu.addAction(f"Camera {i}" + (" (in use)" if i == current else ""))
            a.setCheckable(True)
            a.setChecked(i == current)
            a.triggered.connect(lambda _=False, i=i: self.open_camera(i) if i != camera_index(self.session)
                                else None)

    # ------------------------------------------------------------------ seeking
    @property
    def is_file(self) -> bool:
        return not self.session.source.live and self.session.source.frame_count > 0

    def seek(self, index: int) -> bool:
        """Show the input from frame ``index`` on (files): tracking and smoothing restart there."""
        if not self.is_file or self.switcher.busy or self.finished:
            return False
        index = int(np.clip(index, 0, max(self.session.source.frame_count - 1, 0)))
        self.seekbar.set_position(index)
        if self.ended or self.pipeline.finished.is_set():  # the input's threads are done: start it again there
            return self._switch(start_at=index, reason="seek" if index else "replay")
        self.pipeline.seek(index)
        self._last_frame_t = time.perf_counter()
        return True

    def seek_by(self, seconds: float) -> bool:
        pos = self.seekbar.position + round(seconds * self.session.source.fps)
        return self.seek(pos)

    def replay(self) -> bool:
        """Play the input again from the start."""
        return self.seek(0)

    # ------------------------------------------------------------------ settings
    def _set(self, name: str, value: object) -> None:
        setattr(self.settings, name, value)
        self._sync_widgets()
        if self.paused or self.ended:
            self.pipeline.rerender()

    def _sync_widgets(self) -> None:
        """Toolbar, menu and settings panel show the settings in force (they can change from either side)."""
        for field, action in _TOGGLES.items():
            a = self.actions[action]
            a.blockSignals(True)
            a.setChecked(bool(getattr(self.settings, field)))
            a.blockSignals(False)
        self.dock.show_settings(self.settings)

    def set_live_faces(self, budget: int) -> Job:
        """Another face budget for the overlay mesh, computed off the GUI thread and swapped in."""
        session = self.session

        def work(_progress) -> int:
            self.services.set_live_faces(session, budget)
            return budget

        job = self._job("live-faces", work)
        job.succeeded.connect(lambda _: (self.status.showMessage(f"live mesh: {budget} faces", 3000),
                                         self.pipeline.rerender() if self.paused or self.ended else None))
        return job

    # ------------------------------------------------------------------ frames
    def _on_frame(self) -> None:
        t = time.perf_counter()
        item = self.bridge.take_frame()
        if item is None:
            return
        img, out = item
        self.last_output = out
        self.overlay.set_image(img)
        self.frames_shown += 1
        self._last_frame_t = t
        if self.frames_shown == 1:
            self.busy.reset()  # start-up (window mapping, first layout) is not steady-state responsiveness
        if t - self._seekbar_t > 0.1:
            self._seekbar_t = t
            self.seekbar.set_position(out.frame.index)
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

    def _toggle_details(self, on: bool) -> None:
        self.details = on
        self._update_hud()

    def _toggle_help(self, on: bool) -> None:
        self.overlay.show_help = on
        self.overlay.update()

    def _on_ended(self, gen: int) -> None:
        if gen != self.bridge.generation:
            return
        self.ended = True
        err = self.pipeline.error or self.session.source_error()
        if err:
            self.status.showMessage(f"stopped: {err}")
        elif self.is_file:
            self.status.showMessage("end of input: Replay (Ctrl+R) or seek to play again, Q to quit")
        else:
            self.status.showMessage("end of input (Q to quit)")
        self.input_ended.emit()

    # ------------------------------------------------------------------ HUD
    def stalled_seconds(self) -> float:
        """How long the source has not delivered a frame while playing. The capture thread knows best (it tells
        a dead source from a slow model, which is back-pressure, not a stall); without that, the time since the
        last frame reached the window."""
        stalled = getattr(self.pipeline.capture, "stalled_s", None)
        if isinstance(stalled, (int, float)):
            return float(stalled)
        return time.perf_counter() - self._last_frame_t

    def hud_state(self) -> HudState:
        if self.switcher.busy:
            mode = "loading"
        elif self.ended:
            mode = "ended"
        elif self.paused:
            mode = "paused"
        else:
            mode = "playing"
        ui = (f"ui: paint {self.overlay.paint_ms:.1f} ms, busy p99 {self.busy.percentile(99):.0f} ms, "
              f"max {self.busy.max_ms:.0f} ms" + (f", 3D {self.view3d.render_ms:.0f} ms" if self.view3d else ""))
        notes = [n for n in (self._note, self.view3d.error if self.view3d else "") if n]
        return HudState(mode, self.stalled_seconds() if mode == "playing" else None, self.details, ui, tuple(notes))

    def _update_hud(self) -> None:
        snap = self.pipeline.snapshot()
        self.overlay.hud_lines = hud_lines(self._model_line, snap, self.hud_state())
        self.overlay.update()
        rec = self.pipeline.recorder
        if self.actions["record"].isChecked() and rec is None and self.pipeline.record_note.startswith(
                ("disk", "recording failed")):
            self.actions["record"].blockSignals(True)
            self.actions["record"].setChecked(False)
            self.actions["record"].blockSignals(False)
            self.status.showMessage(self.pipeline.record_note)

    # ------------------------------------------------------------------ outputs
    def _toggle_record(self, on: bool) -> None:
        if on:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = self.out_dir / "recordings" / f"{self.session.source.name}-{stamp}.mp4"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                self.status.showMessage(f"cannot record into {path.parent}: {e.strerror}; start with --out-dir DIR")
                self.actions["record"].blockSignals(True)
                self.actions["record"].setChecked(False)
                self.actions["record"].blockSignals(False)
                return
            req = RecordRequest(path, self.session.source.fps, block=not self.pipeline.cfg.live,
                                timed=self.session.source.live)
            self.pipeline.set_recording(req)
            self.last_saved = path
            self.status.showMessage(f"recording to {path}")
        else:
            rec = self.pipeline.recorder
            self.pipeline.set_recording(None)
            if rec is not None:
                self.status.showMessage(f"recording saved to {rec.path}", 8000)

    def save_screenshot(self, path: Path | None = None, wait: bool = False) -> Path | None:
        """Save the last frame as drawn (video and overlays, at source size, without the HUD) as PNG to ``path``
        or ``<out_dir>/screenshots/<source>-<time>.png``; the status bar shows where. Written on a thread."""
        out = self.last_output
        if out is None or out.overlay is None:
            self.status.showMessage("no frame to save yet", 3000)
            return None
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = self.out_dir / "screenshots" / f"{self.session.source.name}-{stamp}-f{out.frame.index}.png"
        path = Path(path).absolute()
        overlay = out.overlay

        def work(_progress) -> Path:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not bgr_to_qimage(overlay).save(str(path), "PNG"):
                raise OSError(f"cannot write {path} (check the folder and free space)")
            return path

        job = self._job("screenshot", work)
        job.succeeded.connect(lambda p: self._saved(f"screenshot saved to {p}", p))
        if wait:
            job.wait(30)
        return path

    def _saved(self, msg: str, path: Path | None = None) -> None:
        if path is not None:
            self.last_saved = path
        self.status.showMessage(msg, 10000)
        log.info(msg)

    def _job(self, name: str, fn, progress_label: str = "") -> Job:
        """Run ``fn`` off the GUI thread; failures go to the status bar; ``progress_label`` shows a progress
        dialog for long work."""
        job = Job(name, fn, self)
        self.jobs.append(job)
        job.failed.connect(lambda msg: self._saved(f"{name} failed: {msg}"))
        if progress_label:
            dlg = QtWidgets.QProgressDialog(progress_label, "", 0, 0, self)
            dlg.setCancelButton(None)
            dlg.setWindowTitle("Export")
            dlg.setMinimumDuration(400)
            dlg.setAutoClose(False)

            def progressed(done: int, total: int) -> None:
                dlg.setMaximum(max(total, 0))
                dlg.setValue(done)

            job.progressed.connect(progressed)
            job.succeeded.connect(lambda _: dlg.close())
            job.failed.connect(lambda _: dlg.close())
            job.progress_dialog = dlg  # type: ignore[attr-defined]
        return job.start()

    def _ask_folder(self, title: str) -> Path | None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, title, str(self.out_dir))
        return Path(folder) if folder else None

    def export_npz(self, folder: Path | None = None) -> Job | None:
        """Export the results of every frame processed so far (``<folder>/<input>.npz``, images: one per image)."""
        folder = folder or self._ask_folder("Export results (.npz) into")
        if folder is None:
            return None
        history = self.history
        if not len(history):
            self.status.showMessage("nothing processed yet", 3000)
            return None
        job = self._job("npz export", lambda p: self.services.export_npz(history, Path(folder), p),
                        f"writing results of {len(history)} frames...")
        job.succeeded.connect(lambda files: self._saved(f"results: {self._describe(files)}"))
        return job

    def export_meshes(self, folder: Path | None = None, fmt: str = "obj") -> Job | None:
        """Export the meshes of the frame on screen (full resolution)."""
        out = self.last_output
        if out is None or out.meshes is None or not len(out.people):
            self.status.showMessage("no people in the frame on screen", 3000)
            return None
        folder = folder or self._ask_folder(f"Export this frame's meshes (.{fmt}) into")
        if folder is None:
            return None
        job = self._job("mesh export", lambda _p: self.services.export_meshes(out, Path(folder), fmt))
        job.succeeded.connect(lambda files: self._saved(f"meshes: {self._describe(files)}"))
        return job

    def export_animation(self, folder: Path | None = None) -> Job | None:
        """Export every tracked person of the clip so far as BVH files and one animated glb."""
        why = self.services.animation_unavailable()
        if why:
            self.status.showMessage(why, 5000)
            return None
        folder = folder or self._ask_folder("Export animation (BVH + glb) into")
        if folder is None:
            return None
        session, history = self.session, self.history
        job = self._job("animation export",
                        lambda p: self.services.export_animation(session, history, Path(folder), p),
                        f"writing the animation of {len(history)} frames...")
        job.succeeded.connect(lambda files: self._saved(f"animation: {self._describe(files)}"))
        return job

    @staticmethod
    def _describe(files: list[Path]) -> str:
        if not files:
            return "nothing written"
        if len(files) == 1:
            return str(files[0])
        return f"{len(files)} files in {Path(files[0]).parent}"

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
            self.switcher.wait()  # a switch in flight ends first
            last = self.switcher.last
            finish_current = True
            if last is not None and last.generation != self.bridge.generation:  # its result was never shown
                finish_current = not last.replaced  # a replacing switch already finished the current session
                if last.session is not None:
                    self._discard(last.session)
            for job in self.jobs:
                job.wait(30)  # exports and screenshots complete
            if self.view3d is not None:
                self.view3d.stop()
                self.view3d = None
            notes = self.session.finish() if finish_current else []
            self.output_notes.extend(notes)
            for n in notes:
                log.info(n)
        e.accept()
