#!/usr/bin/env python3
"""Real-time multi-person 3D human mesh app. See README.md; ``.venv/bin/python run_app.py --help``."""

import os
import signal
import sys

# OpenCV's own warnings (e.g. probing a missing camera) would bury the app's one-line errors
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _stop_during_startup(signum: int, _frame: object) -> None:
    """Until the run installs its own handlers (which finalise outputs), nothing has been written: leave now.

    A KeyboardInterrupt raised inside the seconds of heavy imports (torch, scipy) unwinds through half-initialised
    extension modules and ended in unrelated tracebacks (a RecursionError from numpy, measured); exiting at once
    cannot.
    """
    name = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    os.write(2, f"{name}\n".encode())
    os._exit(128 + signum)


if __name__ == "__main__":
    for _sig in STOP_SIGNALS:
        signal.signal(_sig, _stop_during_startup)
    from app.cli import main

    sys.exit(main())
