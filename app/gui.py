"""The windowed app: build the session, show the window, route stop signals to a clean close.

This is the composition root (it may import the engine); ``app.ui`` itself stays free of torch and backends.
Qt's C++ event loop does not run Python signal handlers by itself, so a short no-op timer lets the interpreter
see SIGINT/SIGTERM/SIGHUP/SIGQUIT (the headless set); the handler closes the window, whose ``closeEvent`` finalises
recording and npz, and the exit code is 128 + the signal number.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from .config import AppCfg
from .headless import STOP_SIGNALS
from .session import build_session
from .stats import format_summary

log = logging.getLogger(__name__)


def runtime_dir() -> str:
    """A private runtime directory for Qt where the session has none: one per user, reused by every run (a new
    temporary one per run piled up in /tmp), and a fresh one if that path is not this user's alone (mode 0700, as
    Qt requires)."""
    path = Path(tempfile.gettempdir()) / f"instancehmr-xdg-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if path.is_dir() and not path.is_symlink() and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0:
            return str(path)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="instancehmr-xdg-")


def open_window(cfg: AppCfg, out_dir: Path | None = None):
    """Create the QApplication (if needed), the session and the window; nothing is started yet.

    ``out_dir`` (default ``cfg.outputs.out_dir``) is where the window's R and S write (``recordings/``,
    ``screenshots/``).
    """
    from PyQt5 import QtWidgets

    from .ui.bridge import FrameBridge
    from .ui.main_window import MainWindow
    from .window_services import AppServices

    if not os.environ.get("XDG_RUNTIME_DIR"):  # Qt and Mesa complain loudly without one (containers, CI)
        os.environ["XDG_RUNTIME_DIR"] = runtime_dir()
    sys.setswitchinterval(0.002)  # let the GUI thread take the GIL back quickly from busy workers
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    bridge = FrameBridge()
    gen, on_output, on_end = bridge.callbacks()
    bridge.activate(gen)
    session = build_session(cfg, render=True, on_output=on_output, on_end=on_end)
    win = MainWindow(session, bridge, AppServices(cfg), show_3d=cfg.render.show_3d,
                     out_dir=cfg.outputs.out_dir if out_dir is None else out_dir)
    return app, session, win


def run_gui(cfg: AppCfg) -> int:
    from PyQt5 import QtCore

    app, session, win = open_window(cfg)
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        log.warning("signal %d: closing the window and finishing outputs", signum)
        QtCore.QTimer.singleShot(0, win.close)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    wake = QtCore.QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(100)
    if cfg.quit_at_end:
        win.input_ended.connect(lambda: QtCore.QTimer.singleShot(200, win.close))
    try:
        win.show()
        session.pipeline.start()
        app.exec_()
    finally:
        wake.stop()
        if not win.finished:
            win.close()
        for s, h in previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]
    session = win.session  # the window may have switched to another input or model
    sys.stdout.write(format_summary(session.pipeline.stats.summary()) + "\n")
    sys.stdout.write(f"GUI thread busy: max {win.busy.max_ms:.1f} ms, p99 {win.busy.percentile(99):.1f} ms\n")
    for n in win.output_notes:  # every session the window ran, in order
        sys.stdout.write(n + "\n")
    if session.pipeline.error is not None:
        raise session.pipeline.error
    err = session.source_error() or session.output_error()  # a run that lost output is not a success
    if err is not None:
        raise err
    return 128 + received[0] if received else 0
