"""Replacing the running session (File > Open, a camera, another model, replay after the end) off the GUI thread.

Opening an input and loading a model take from a few hundred milliseconds to minutes (a first TensorRT build), and
stopping a session joins its threads and writes its outputs; none of that may block the window. The order keeps
the user's work safe:

1. Build the new session while the old one keeps running, so a file that does not open or a model that does not
   load changes nothing: the old input plays on and the status bar says what was wrong.
2. Only then finish the old session (its recording and results are finalised) and hand the new one over.

A camera cannot be opened twice, so when the old and the new input are the same camera (a model change on a
camera), the old session is finished first; if the new one then fails, the previous input and model are opened
again so the window is never left without a picture.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PyQt5 import QtCore

from .bridge import FrameBridge
from .services import InputChoice, ModelChoice, Services

if TYPE_CHECKING:
    from ..session import Session

log = logging.getLogger(__name__)


@dataclass
class SwitchResult:
    """Attributes:
    session: the session to show next (new, or the reopened previous one after a failure), not started; None
        when the old session keeps running (the switch failed before it was touched) or nothing could be opened.
    generation: the bridge generation the session's callbacks belong to.
    error: one line saying what failed ("" on success).
    notes: what the replaced session's outputs became (one line per output).
    start_at: the frame index to start at.
    reason: what was asked ("open", "camera", "model", "replay", "seek").
    replaced: the old session was stopped.
    """

    session: Session | None
    generation: int
    error: str = ""
    notes: list[str] = field(default_factory=list)
    start_at: int = 0
    reason: str = ""
    replaced: bool = False


def camera_index(session: Session) -> int | None:
    """The camera a session reads, or None for files and streams."""
    cap = session.cfg.capture
    if cap.input is not None:
        return None
    return cap.camera if cap.camera is not None else 0


class SessionSwitcher(QtCore.QObject):
    done = QtCore.pyqtSignal(object)  # SwitchResult, on the GUI thread

    def __init__(self, services: Services, bridge: FrameBridge, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.bridge = bridge
        self._thread: threading.Thread | None = None
        self.last: SwitchResult | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request(self, current: Session, source: InputChoice | None = None, model: ModelChoice | None = None,
                start_at: int = 0, reason: str = "open") -> bool:
        """Start a switch; False (nothing done) while another one runs."""
        if self.busy:
            return False
        self._thread = threading.Thread(target=self._run, args=(current, source, model, start_at, reason),
                                        name="session-switch", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _finish(self, session: Session) -> list[str]:
        try:
            return session.finish()
        except Exception as e:  # the new input still opens; the user is told what was lost
            log.error("finishing the previous input failed: %s", e)
            return [f"previous input: {e}"]

    def _run(self, current: Session, source: InputChoice | None, model: ModelChoice | None, start_at: int,
             reason: str) -> None:
        cam = camera_index(current)
        stop_first = cam is not None and (source is None or source.camera == cam)
        notes: list[str] = []
        replaced = False
        gen, on_out, on_end = self.bridge.callbacks()
        try:
            if stop_first:
                notes, replaced = self._finish(current), True
            new = self.services.build(current, (on_out, on_end), source, model)
            if not replaced:
                notes, replaced = self._finish(current), True
            result = SwitchResult(new, gen, "", notes, start_at, reason, replaced)
        except Exception as e:
            msg = str(e) or type(e).__name__
            log.debug("switch (%s) failed", reason, exc_info=True)
            fallback = None
            if replaced:  # the old session is gone: reopen what ran before so the window keeps a picture
                gen, on_out, on_end = self.bridge.callbacks()
                try:
                    fallback = self.services.build(current, (on_out, on_end))
                except Exception as e2:
                    msg += f"; reopening the previous input failed too: {e2}"
            result = SwitchResult(fallback, gen, msg, notes, 0, reason, replaced)
        self.last = result
        self.done.emit(result)
