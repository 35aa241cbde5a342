"""One-off background work for the window (exports, screenshots, mesh-detail changes) with progress and a result
delivered on the GUI thread.

Writing a PNG at source size or an npz of a long clip takes tens to hundreds of milliseconds; on the GUI thread that
is a visible stall, so such work runs here and reports back through queued signals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from PyQt5 import QtCore

log = logging.getLogger(__name__)


class Job(QtCore.QObject):
    """Runs ``fn(progress)`` on a daemon thread. ``progress(done, total)`` may be called from ``fn``; ``succeeded``
    carries the return value, ``failed`` a one-line message."""

    progressed = QtCore.pyqtSignal(int, int)
    succeeded = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str)

    def __init__(self, name: str, fn: Callable[[Callable[[int, int], None]], object],
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.fn = fn
        self.result: object = None
        self.error = ""
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{name}", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def _run(self) -> None:
        try:
            self.result = self.fn(self.progressed.emit)
        except Exception as e:
            log.debug("%s failed", self.name, exc_info=True)
            self.error = str(e) or type(e).__name__
            self.done.set()
            self.failed.emit(self.error)
            return
        self.done.set()
        self.succeeded.emit(self.result)
