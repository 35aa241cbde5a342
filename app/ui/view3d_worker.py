"""The 3D view's renderer process: Open3D's legacy ``Visualizer``, offscreen, driven over stdin/stdout.

Why a separate process: Open3D's Python bindings hold the GIL while they render (measured: a 2 ms sleep loop on
another thread stretched to 52 ms), so in-process rendering would freeze the Qt thread for the length of every 3D
frame. As its own process it also gets its own GL context without any thread-affinity rules, and EGL (Mesa) is
picked by starting it without ``DISPLAY`` (11 ms per frame vs 25 ms through GLX under Xvfb).

Protocol (both directions): ``<u32 header length><JSON header><payload bytes>``; the header says the payload
size. Parent -> worker: ``scene`` (float32 vertices [N, V, 3], optional int32 faces, float32 colours [N, 3] RGB
0..1), ``rotate``, ``zoom``, ``reset``, ``quit``. Worker -> parent: ``image`` (uint8 RGB [H, W, 3]) or
``error``. The worker exits on ``quit`` or when stdin closes (the app died). Imports only numpy and open3d.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from typing import BinaryIO

import numpy as np

_FLIP = np.array([1.0, -1.0, -1.0])  # camera space (y down, z forward) -> Open3D's view (y up, looking down -z)


def write_msg(stream: BinaryIO, header: dict, payload: bytes = b"") -> None:
    header = {**header, "size": len(payload)}
    raw = json.dumps(header).encode()
    stream.write(struct.pack("<I", len(raw)) + raw + payload)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_msg(stream: BinaryIO) -> tuple[dict, bytes] | None:
    """The next message, or None at end of stream."""
    raw = _read_exact(stream, 4)
    if raw is None:
        return None
    head = _read_exact(stream, struct.unpack("<I", raw)[0])
    if head is None:
        return None
    header = json.loads(head)
    payload = _read_exact(stream, header["size"]) if header["size"] else b""
    return (header, payload) if payload is not None else None


class Renderer:
    def __init__(self, width: int, height: int) -> None:
        import open3d as o3d

        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        self.o3d = o3d
        self.vis = o3d.visualization.Visualizer()
        if not self.vis.create_window(window_name="InstanceHMR 3D", width=width, height=height, visible=False):
            raise RuntimeError("Open3D could not create an offscreen GL context (Mesa EGL missing?)")
        opt = self.vis.get_render_option()
        opt.background_color = np.array([0.12, 0.12, 0.14])
        opt.mesh_show_back_face = True
        self.meshes: list = []
        self.added: list[bool] = []
        self.tri = None
        self.fitted = False

    def _add_ground(self, verts: np.ndarray) -> None:
        """A floor grid under the first people seen, so the free camera keeps a sense of up and distance."""
        o3d = self.o3d
        v = verts.reshape(-1, 3) * _FLIP
        y = float(v[:, 1].min())
        (x0, z0), (x1, z1) = v[:, [0, 2]].min(0) - 1.0, v[:, [0, 2]].max(0) + 1.0
        pts, lines = [], []
        for xv in np.linspace(x0, x1, 11):
            lines.append([len(pts), len(pts) + 1])
            pts += [[xv, y, z0], [xv, y, z1]]
        for zv in np.linspace(z0, z1, 11):
            lines.append([len(pts), len(pts) + 1])
            pts += [[x0, y, zv], [x1, y, zv]]
        grid = o3d.geometry.LineSet(o3d.utility.Vector3dVector(np.array(pts)), o3d.utility.Vector2iVector(lines))
        grid.paint_uniform_color([0.35, 0.35, 0.4])
        self.vis.add_geometry(grid, reset_bounding_box=False)

    def scene(self, verts: np.ndarray, faces: np.ndarray | None, colors: np.ndarray) -> None:
        o3d = self.o3d
        if faces is not None:
            self.tri = o3d.utility.Vector3iVector(faces)
        while len(self.meshes) < len(verts):
            self.meshes.append(o3d.geometry.TriangleMesh())
            self.added.append(False)
        for i, m in enumerate(self.meshes):
            if i < len(verts):
                m.vertices = o3d.utility.Vector3dVector((verts[i] * _FLIP).astype(np.float64))
                m.triangles = self.tri
                m.compute_vertex_normals()
                m.paint_uniform_color(colors[i].astype(np.float64))
            else:  # fewer people than meshes: keep the geometry, empty it
                m.vertices = o3d.utility.Vector3dVector(np.zeros((0, 3)))
                m.triangles = o3d.utility.Vector3iVector(np.zeros((0, 3), np.int32))
            if not self.added[i] and i < len(verts):
                self.vis.add_geometry(m, reset_bounding_box=False)
                self.added[i] = True
            elif self.added[i]:
                self.vis.update_geometry(m)
        if not self.fitted and len(verts):
            self._add_ground(verts)
            self.reset()
            self.fitted = True

    def reset(self) -> None:
        """Look from the video camera (origin, looking forward) at the people, like the overlay but free to move."""
        self.vis.reset_view_point(True)
        vc = self.vis.get_view_control()
        vc.set_front([0.0, 0.25, 1.0])
        vc.set_up([0.0, 1.0, 0.0])
        vc.set_zoom(0.7)

    def command(self, name: str, a: float, b: float) -> None:
        vc = self.vis.get_view_control()
        if name == "rotate":
            vc.rotate(a, b)
        elif name == "zoom":
            vc.scale(a)
        elif name == "reset":
            self.reset()

    def render(self) -> np.ndarray:
        self.vis.poll_events()
        self.vis.update_renderer()
        img = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    width, height = int(sys.argv[1]), int(sys.argv[2])
    try:
        r = Renderer(width, height)
    except Exception as e:  # reported to the app, which shows it in the HUD
        write_msg(stdout, {"kind": "error", "message": f"3D view unavailable: {e}"})
        return 1
    while True:
        msg = read_msg(stdin)
        if msg is None:
            break
        h, payload = msg
        kind = h["kind"]
        if kind == "quit":
            break
        t = time.perf_counter()
        if kind == "scene":
            n, v, f = h["n"], h["v"], h["f"]
            arr = np.frombuffer(payload, np.uint8)
            vb, fb = n * v * 12, f * 12
            verts = arr[:vb].view(np.float32).reshape(n, v, 3)
            faces = arr[vb:vb + fb].view(np.int32).reshape(f, 3).copy() if f else None  # Open3D wants writeable
            colors = arr[vb + fb:].view(np.float32).reshape(n, 3)
            r.scene(verts, faces, colors)
        else:
            r.command(kind, h.get("a", 0.0), h.get("b", 0.0))
        img = r.render()
        write_msg(stdout, {"kind": "image", "h": img.shape[0], "w": img.shape[1],
                           "ms": (time.perf_counter() - t) * 1e3}, img.tobytes())
    r.vis.destroy_window()
    return 0


if __name__ == "__main__":
    sys.exit(main())
