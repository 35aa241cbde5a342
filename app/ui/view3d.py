"""The 3D view, app side: feeds the renderer process (:mod:`app.ui.view3d_worker`) and hands back its images.

Open3D holds the GIL while rendering, so it runs in its own process (see the worker's docstring). This side keeps
two small threads: a sender with a latest-wins slot that sends a scene only when the previous image has come back
(one frame in flight, at most ``max_fps``), and a reader that turns images into ``on_image`` calls. Camera commands
(drag, wheel, double-click) are forwarded immediately. If the worker cannot start or dies, ``error`` says why and
the rest of the app carries on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .view3d_worker import read_msg, write_msg

log = logging.getLogger(__name__)
_ROOT = Path(__file__).resolve().parent.parent.parent


class View3D:
    """Args:
    on_image: called (on the reader thread) with each RGB uint8 [H, W, 3] image.
    size: (width, height) of the rendered image.
    max_fps: render rate cap.
    """

    def __init__(self, on_image: Callable[[np.ndarray], None], size: tuple[int, int] = (480, 360),
                 max_fps: float = 12.0) -> None:
        self.on_image = on_image
        self.size = size
        self.min_interval = 1.0 / max_fps
        self.render_ms = 0.0
        self.images = 0
        self.error = ""
        self._slot: tuple | None = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()  # no frame in flight
        self._idle.set()
        self._stop = threading.Event()
        self._faces_sent: np.ndarray | None = None
        self._proc: subprocess.Popen | None = None
        self._threads = [threading.Thread(target=self._send_loop, name="view3d-send", daemon=True),
                         threading.Thread(target=self._read_loop, name="view3d-read", daemon=True)]

    def start(self) -> View3D:
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}  # EGL, not GLX
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH", "")]))
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "app.ui.view3d_worker", str(self.size[0]),
                                           str(self.size[1])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          env=env, cwd=_ROOT)
        except OSError as e:
            self.error = f"3D view unavailable: {e}"
            log.warning(self.error)
            return self
        for t in self._threads:
            t.start()
        return self

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def submit(self, verts: np.ndarray, faces: np.ndarray, colors_bgr: np.ndarray) -> None:
        """Latest scene: camera-space vertices [N, V, 3], faces [F, 3], colours [N, 3] BGR 0..255."""
        with self._lock:
            self._slot = (verts, faces, colors_bgr)
        self._wake.set()

    def _command(self, kind: str, a: float = 0.0, b: float = 0.0) -> None:
        if not self.alive:
            return
        self._idle.clear()
        self._send({"kind": kind, "a": a, "b": b})

    def rotate(self, dx: float, dy: float) -> None:
        self._command("rotate", dx, dy)

    def zoom(self, steps: float) -> None:
        self._command("zoom", steps)

    def reset_view(self) -> None:
        self._command("reset")

    def _send(self, header: dict, payload: bytes = b"") -> None:
        try:
            with self._send_lock:
                write_msg(self._proc.stdin, header, payload)  # type: ignore[union-attr, arg-type]
        except (OSError, ValueError) as e:
            if not self._stop.is_set():
                self.error = f"3D view stopped: {e}"

    def _send_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            if not self._wake.wait(0.5) or not self._idle.wait(0.5):
                continue
            wait = self.min_interval - (time.perf_counter() - last)
            if wait > 0 and self._stop.wait(wait):
                break
            with self._lock:
                scene, self._slot = self._slot, None
                self._wake.clear()
            if scene is None:
                continue
            verts, faces, colors = scene
            verts = np.ascontiguousarray(verts, np.float32)
            send_faces = self._faces_sent is None or not np.array_equal(faces, self._faces_sent)
            fb = np.ascontiguousarray(faces, np.int32).tobytes() if send_faces else b""
            rgb = (np.asarray(colors, np.float32)[:, ::-1] / 255.0).astype(np.float32)
            n, v = verts.shape[:2]
            self._idle.clear()
            self._send({"kind": "scene", "n": n, "v": v, "f": len(faces) if send_faces else 0},
                       verts.tobytes() + fb + rgb.tobytes())
            if send_faces:
                self._faces_sent = np.asarray(faces).copy()
            last = time.perf_counter()

    def _read_loop(self) -> None:
        stream = self._proc.stdout  # type: ignore[union-attr]
        while True:
            msg = read_msg(stream)  # type: ignore[arg-type]
            if msg is None:
                if not self._stop.is_set() and not self.error:
                    self.error = "3D view stopped (renderer process exited)"
                    log.warning(self.error)
                break
            h, payload = msg
            if h["kind"] == "error":
                self.error = h["message"]
                log.warning(self.error)
                continue
            self.render_ms = h["ms"]
            self.images += 1
            self._idle.set()
            self.on_image(np.frombuffer(payload, np.uint8).reshape(h["h"], h["w"], 3))
        self._idle.set()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._proc is not None and self._proc.poll() is None:
            self._send({"kind": "quit"})
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("3D renderer did not exit within %.1f s; killing it", timeout)
                self._proc.kill()
                self._proc.wait(timeout)
        for t in self._threads:
            if t.is_alive():
                t.join(timeout)
