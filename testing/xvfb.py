"""A private Xvfb server for window tests and the UI benchmark (each gets its own display, nothing shared)."""

from __future__ import annotations

import os
import subprocess
import time

__all__ = ["start_xvfb"]


def start_xvfb(size: str = "1280x800x24", timeout: float = 20.0) -> tuple[subprocess.Popen, str | None]:
    """Start Xvfb on a free display number (``-displayfd``: the server picks and reports it, so parallel runs never
    collide). Returns (process, ":N"), or (process already killed, None) when it did not start in ``timeout``."""
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    num = b""
    deadline = time.time() + timeout
    while not num.endswith(b"\n") and time.time() < deadline:
        chunk = os.read(r, 16)
        if not chunk:
            break
        num += chunk
    os.close(r)
    if not num.strip():
        proc.kill()
        return proc, None
    return proc, f":{num.decode().strip()}"
