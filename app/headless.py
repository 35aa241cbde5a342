"""``--headless``: process the input to the outputs with a progress line and a summary, no window.

SIGINT, SIGTERM, SIGHUP (terminal closed) and SIGQUIT (Ctrl+\\) only set a flag here; the main thread then stops the
pipeline and finalises the recording and the npz exactly as at the end of the input, so an interrupted run leaves
playable, loadable files. The exit code is then 128 + the signal number, as a shell reports a signal death.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import TextIO

from .session import Session
from .stats import format_summary

log = logging.getLogger(__name__)


class Progress:
    """A one-line progress bar on a terminal, a log line every few seconds otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 0.25) -> None:
        self.total = total
        self.stream = stream = stream or sys.stderr
        self.tty = stream.isatty()
        self.interval = interval if self.tty else 5.0
        self._last = 0.0

    def update(self, done: int, fps: float, people: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            line = f"[{bar:<30}] {done}/{self.total} frames  {fps:5.1f} FPS  people {people}"
        else:
            line = f"{done} frames  {fps:5.1f} FPS  people {people}"
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        else:
            log.info(line)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def install_stop_signals(stop: threading.Event, received: list[int]) -> dict[int, object]:
    """Route :data:`STOP_SIGNALS` to ``stop`` (main thread only); returns the previous handlers.

    SIGHUP and SIGQUIT are here too because their default actions (terminate, core dump) skip the finalisation:
    closing the terminal or pressing Ctrl+\\ left an unplayable mp4 and no npz.
    """
    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {}
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    return previous


def run_headless(session: Session) -> int:
    """Run to the end of the input (or a signal). Returns the exit code; outputs are always finalised."""
    pipe = session.pipeline
    total = session.source.frame_count
    max_frames = session.cfg.capture.max_frames
    if max_frames:
        total = min(total, max_frames) if total else max_frames
    info = pipe.model.info
    if info.synthetic_demo:
        log.warning("model: %s", info.title)
    else:
        log.info("model: %s", info.title)
    progress = Progress(total)
    stop = threading.Event()
    received: list[int] = []
    previous = install_stop_signals(stop, received)
    try:
        pipe.start()
        while not pipe.wait(0.1):
            if stop.is_set():
                log.warning("interrupted: finishing outputs")
                break
            snap = pipe.stats.snapshot()
            progress.update(snap.frames_out, snap.fps, snap.people)
        snap = pipe.stats.snapshot()
        progress.update(snap.frames_out, snap.fps, snap.people, force=True)
    finally:
        progress.close()
        notes = session.finish()
        for sig, h in previous.items():
            signal.signal(sig, h)  # type: ignore[arg-type]
    summary = pipe.stats.summary()
    sys.stdout.write(format_summary(summary) + "\n")
    for n in notes:
        sys.stdout.write(n + "\n")
    if pipe.error is not None:
        raise pipe.error
    lost = session.output_error()  # a run that kept only part of an output is not a success
    if lost is not None:
        raise lost
    err = session.source_error()
    if err is not None:
        raise err
    if received:
        return 128 + received[0]
    return 0


