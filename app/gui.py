"""The windowed app: build the session, show the window, route SIGINT/SIGTERM to a clean close.

This is the composition root (it may import the engine); ``app.ui`` itself stays free of torch and backends.
Qt's C++ event loop does not run Python signal handlers by itself, so a short no-op timer lets the interpreter
see SIGINT/SIGTERM; the handler closes the window, whose ``closeEvent`` finalises recording and npz.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from .config import AppCfg
from .session import build_session
from .stats import format_summary

log = logging.getLogger(__name__)


def open_window(cfg: AppCfg, screenshot_dir: Path = Path("screenshots")):
    """Create the QApplication (if needed), the session and the window; nothing is started yet."""
    from PyQt5 import QtWidgets

    from .ui.bridge import FrameBridge
    from .ui.main_window import MainWindow

    if not os.environ.get("XDG_RUNTIME_DIR"):  # Qt and Mesa complain loudly without one (containers, CI)
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="instancehmr-xdg-")
    sys.setswitchinterval(0.002)  # let the GUI thread take the GIL back quickly from busy workers
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    bridge = FrameBridge()
    session = build_session(cfg, render=True, on_output=bridge.on_output, on_end=bridge.on_end)
    win = MainWindow(session, bridge, show_3d=cfg.show_3d, screenshot_dir=screenshot_dir)
    # Start-up objects (torch, Qt, the model) never die; freezing them keeps later full GC passes, which stop every
    # thread including this one, short (an unfrozen gen-2 pass took ~200 ms here).
    gc.collect()
    gc.freeze()
    return app, session, win


def run_gui(cfg: AppCfg, quit_at_end: bool = False) -> int:
    from PyQt5 import QtCore

    app, session, win = open_window(cfg)
    bridge = win.bridge
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        log.warning("signal %d: closing the window and finishing outputs", signum)
        QtCore.QTimer.singleShot(0, win.close)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    wake = QtCore.QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(100)
    if quit_at_end:
        bridge.ended.connect(lambda: QtCore.QTimer.singleShot(200, win.close))
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
    sys.stdout.write(format_summary(session.pipeline.stats.summary()) + "\n")
    sys.stdout.write(f"GUI thread busy: max {win.busy.max_ms:.1f} ms, p99 {win.busy.percentile(99):.1f} ms\n")
    for n in session.finished_outputs:
        sys.stdout.write(n + "\n")
    if session.pipeline.error is not None:
        raise session.pipeline.error
    err = session.source_error()
    if err is not None:
        raise err
    return 128 + received[0] if received else 0
