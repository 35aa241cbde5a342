"""The settings dock: what the user may change while the app runs.

Two kinds of setting, and the panel makes the difference visible: display and detection settings (threshold,
smoothing, opacity, what is drawn) are plain fields of :class:`~app.types.LiveSettings` that the pipeline reads on
every frame, so they apply at once; the model, its backend and the live-mesh detail need new objects built off the
GUI thread, so they apply with a button (model/backend: a new session at the same position) and show a busy bar
while that runs.
"""

from __future__ import annotations

from PyQt5 import QtCore, QtWidgets

from .services import ModelChoice

MODEL_ITEMS = (  # combo text, ModelChoice.model, landmarks
    ("real footage (BlazePose full finds people, lite follows them)", "realfootage", "mixed"),
    ("real footage (BlazePose full)", "realfootage", "full"),
    ("real footage (BlazePose lite)", "realfootage", "lite"),
    ("demo (synthetic-trained InstanceHMR)", "demo", "mixed"),
    ("Checkpoint file (InstanceHMR, 3DCrowdNet, JOTR)...", "instancehmr", "mixed"),
)


class SettingsPanel(QtWidgets.QDockWidget):
    """Args: settings (the session's LiveSettings, read for initial values), choice (the running model),
    backends (names offered for InstanceHMR models), live_faces (current face budget)."""

    setting_changed = QtCore.pyqtSignal(str, object)
    model_requested = QtCore.pyqtSignal(object)  # ModelChoice
    live_faces_requested = QtCore.pyqtSignal(int)

    def __init__(self, settings, choice: ModelChoice, backends: tuple[str, ...], live_faces: int,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self._labels: dict[QtWidgets.QSlider, tuple] = {}
        self.setObjectName("settings")
        self.setFeatures(QtWidgets.QDockWidget.DockWidgetClosable | QtWidgets.QDockWidget.DockWidgetMovable)
        body = QtWidgets.QWidget()
        form = QtWidgets.QFormLayout(body)
        form.setFieldGrowthPolicy(QtWidgets.QFormLayout.AllNonFixedFieldsGrow)

        # ---- model (applies with a button: a new session)
        self.model = QtWidgets.QComboBox()
        for text, _, _ in MODEL_ITEMS:
            self.model.addItem(text)
        self.checkpoint = QtWidgets.QLineEdit(choice.checkpoint or "")
        self.checkpoint.setPlaceholderText("weights file (.pt/.pth/.pkl/.onnx/.engine)")
        browse = QtWidgets.QToolButton()
        browse.setText("...")
        browse.clicked.connect(self._browse)
        ck_row = QtWidgets.QHBoxLayout()
        ck_row.addWidget(self.checkpoint, 1)
        ck_row.addWidget(browse)
        self.backend = QtWidgets.QComboBox()
        self.backend.addItems(list(backends))
        self.apply_model = QtWidgets.QPushButton("Apply model")
        self.apply_model.clicked.connect(self._request_model)
        self.busy = QtWidgets.QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate
        self.busy.setMaximumHeight(10)
        self.busy.setTextVisible(False)
        self.busy.hide()
        form.addRow("model", self.model)
        form.addRow("checkpoint", ck_row)
        form.addRow("backend", self.backend)
        form.addRow(self.apply_model)
        form.addRow(self.busy)
        self.model.currentIndexChanged.connect(self._model_widgets)

        # ---- live settings (apply at once)
        self.threshold = self._slider(form, "threshold", 1, 95, round(settings.threshold * 100), "threshold",
                                      lambda v: v / 100, "{:.2f}")
        self.smooth = QtWidgets.QCheckBox("smoothing (One-Euro)")
        self.smooth.setChecked(settings.smooth)
        self.smooth.toggled.connect(lambda v: self.setting_changed.emit("smooth", v))
        form.addRow(self.smooth)
        self.smooth_strength = self._slider(form, "strength", 1, 40, round(settings.smooth_strength * 10),
                                            "smooth_strength", lambda v: v / 10, "{:.1f}")
        self.opacity = self._slider(form, "opacity", 0, 100, round(settings.opacity * 100), "opacity",
                                    lambda v: v / 100, "{:.2f}")
        self.show = {}
        for name, text in (("show_mesh", "meshes"), ("show_skeleton", "2D skeletons"),
                           ("show_centers", "centres and track IDs")):
            box = QtWidgets.QCheckBox(text)
            box.setChecked(bool(getattr(settings, name)))
            box.toggled.connect(lambda v, n=name: self.setting_changed.emit(n, v))
            form.addRow(box)
            self.show[name] = box
        self.live_faces = QtWidgets.QSpinBox()
        self.live_faces.setRange(100, 50000)
        self.live_faces.setSingleStep(200)
        self.live_faces.setValue(live_faces)
        self.live_faces.setToolTip("faces of the overlay mesh (fewer = faster; exports keep the full mesh)")
        self.live_faces.setKeyboardTracking(False)  # one request per finished edit, not per digit
        self.live_faces.valueChanged.connect(self.live_faces_requested)
        form.addRow("live-mesh faces", self.live_faces)
        body.setMinimumWidth(260)
        self.setWidget(body)
        self.set_choice(choice)

    def _slider(self, form: QtWidgets.QFormLayout, label: str, lo: int, hi: int, value: int, name: str,
                scale, fmt: str) -> QtWidgets.QSlider:
        s = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        s.setRange(lo, hi)
        s.setValue(value)
        s.setFocusPolicy(QtCore.Qt.NoFocus)
        shown = QtWidgets.QLabel(fmt.format(scale(value)))
        shown.setMinimumWidth(34)
        self._labels[s] = (shown, scale, fmt)

        def changed(v: int) -> None:
            shown.setText(fmt.format(scale(v)))
            self.setting_changed.emit(name, scale(v))

        s.valueChanged.connect(changed)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(s, 1)
        row.addWidget(shown)
        form.addRow(label, row)
        return s

    def show_settings(self, settings) -> None:
        """Show ``settings`` (changed elsewhere: keys, toolbar, a new session) without emitting changes."""
        boxes = ((self.smooth, settings.smooth), *((self.show[k], getattr(settings, k)) for k in self.show))
        for box, value in boxes:
            box.blockSignals(True)
            box.setChecked(bool(value))
            box.blockSignals(False)
        for s, value in ((self.threshold, settings.threshold * 100), (self.opacity, settings.opacity * 100),
                         (self.smooth_strength, settings.smooth_strength * 10)):
            s.blockSignals(True)
            s.setValue(round(value))
            s.blockSignals(False)
            shown, scale, fmt = self._labels[s]
            shown.setText(fmt.format(scale(s.value())))

    # ------------------------------------------------------------------ model
    def set_choice(self, choice: ModelChoice) -> None:
        """Show the model that runs (after start-up and after every successful switch)."""
        idx = next(i for i, (_, m, lm) in enumerate(MODEL_ITEMS)
                   if m == choice.model and (m != "realfootage" or lm == choice.landmarks))
        self.model.blockSignals(True)
        self.model.setCurrentIndex(idx)
        self.model.blockSignals(False)
        if choice.checkpoint:
            self.checkpoint.setText(choice.checkpoint)
        i = self.backend.findText(choice.backend)
        self.backend.setCurrentIndex(max(i, 0))
        self._model_widgets()

    def choice(self) -> ModelChoice:
        _, model, landmarks = MODEL_ITEMS[self.model.currentIndex()]
        ck = (self.checkpoint.text().strip() or None) if model == "instancehmr" else None
        backend = "auto" if model == "realfootage" else self.backend.currentText()
        return ModelChoice(model, ck, backend, landmarks)

    def _model_widgets(self) -> None:
        model = MODEL_ITEMS[self.model.currentIndex()][1]
        self.checkpoint.setEnabled(model == "instancehmr")
        self.backend.setEnabled(model != "realfootage")  # the real-footage model runs on ONNX Runtime only
        self.backend.setToolTip("" if model != "realfootage" else "the real-footage model runs on ONNX Runtime")

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "InstanceHMR, 3DCrowdNet or JOTR weights", self.checkpoint.text(),
            "weights (*.pt *.pth *.pkl *.tar *.onnx *.engine);;all files (*)")
        if path:
            self.checkpoint.setText(path)
            self.model.setCurrentIndex(len(MODEL_ITEMS) - 1)

    def _request_model(self) -> None:
        self.model_requested.emit(self.choice())

    def set_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)
        self.apply_model.setEnabled(not busy)
