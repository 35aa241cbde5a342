"""The 3D view's renderer process: Open3D's legacy ``Visualizer``, offscreen, driven over stdin/stdout, with a
camera that frames the people by itself (:class:`OrbitCamera`) over a floor grid under their feet.

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


class OrbitCamera:
    """Frames the people by itself: the camera looks at the middle of everyone's extent from a distance that fits
    them all, over a floor under their feet. The view glides (exponentially, time constant ``tau`` seconds) so a
    person walking in or a jittery estimate does not make it jump every frame, with one exception: when someone
    would fall outside the view, the camera backs off at once, since a person missing from a "show everyone" view
    is worse than a sudden zoom (it comes back in slowly when people leave). The user orbits (yaw/pitch) and
    zooms around that moving target; a double-click resets both.

    The floor: a video camera is usually tilted (a street camera looks down), so "down" in camera space is not the
    ground's down. With three or more people whose feet span an area, the ground plane is fitted through their
    feet and its normal becomes "up" (if it is within 45 degrees of the camera's up and the feet lie close to
    it); otherwise up stays as it was, starting from the camera's. Estimated depths are noisy, so up follows
    slowly (``tau_up``). The floor is at the lowest foot along that up.

    Coordinates are Open3D's view of the scene: x right, y up, the video camera at the origin looking down -z.
    """

    PITCH0 = 0.3  # radians: a little from above, so the floor and the spacing between people read well
    MARGIN = 1.15  # the people fill at most 1/1.15 of the view's width or height
    MAX_TILT = np.radians(45.0)  # a fitted ground steeper than this is a bad fit, not a floor
    MIN_FEET = 4  # three feet always fit a plane exactly, so they say nothing about the ground
    MIN_FEET_SPREAD = 0.5  # metres: feet closer to a line than this do not define a plane
    MAX_FEET_OFF = 0.3  # metres (rms): feet further from the plane than this are not on one floor

    def __init__(self, tau: float = 0.6, fov_y_deg: float = 60.0, aspect: float = 4 / 3,
                 tau_up: float = 4.0) -> None:
        self.tau = tau
        self.tau_up = tau_up
        self.fov_y = np.radians(fov_y_deg)
        self.aspect = aspect
        self.yaw = 0.0
        self.pitch = self.PITCH0
        self.zoom = 1.0
        self.target: np.ndarray | None = None
        self.radius = 1.5
        self.up = np.array([0.0, 1.0, 0.0])
        self.floor = 0.0  # height of the floor along ``up``
        self.fit = 3.0  # the distance that shows everyone (before the user's zoom)
        self._t: float | None = None

    @staticmethod
    def feet(verts: np.ndarray, up: np.ndarray) -> np.ndarray:
        """Each person's lowest point along ``up`` [N, 3]."""
        low = np.argmin(verts @ up, axis=1)
        return verts[np.arange(len(verts)), low]

    @classmethod
    def ground_normal(cls, feet: np.ndarray) -> np.ndarray | None:
        """The normal of the plane through the feet (pointing up), or None when they do not define one."""
        if len(feet) < cls.MIN_FEET:
            return None
        centred = feet - feet.mean(axis=0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        rms = sv / np.sqrt(len(feet))
        if rms[1] < cls.MIN_FEET_SPREAD or rms[2] > cls.MAX_FEET_OFF:  # (nearly) on a line, or not on a plane
            return None
        normal = vt[2] if vt[2][1] >= 0 else -vt[2]
        if np.arccos(np.clip(normal[1], -1.0, 1.0)) > cls.MAX_TILT:
            return None
        return normal

    def measure(self, verts: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, float]:
        """People [N, V, 3] -> (middle of their extent, radius that holds them all, up, floor height).

        The middle is that of everyone's box on the floor (right, back, up), not the mean of their centres: a
        group of four on one side and one person on the other would otherwise sit off-centre, the lone person at
        the view's edge. The box's middle does not move as the user orbits around ``up``."""
        up = self.ground_normal(self.feet(verts, self.up))
        up = self.up if up is None else up
        axes = np.stack(self.basis(up))  # [3, 3] rows: right, back, up
        along = verts.reshape(-1, 3) @ axes.T
        middle = 0.5 * (along.min(axis=0) + along.max(axis=0)) @ axes
        centres = verts.mean(axis=1)
        half_extent = 0.5 * float((verts.max(axis=1) - verts.min(axis=1)).max())  # a person's half size
        spread = float(np.linalg.norm(centres - middle, axis=1).max()) if len(verts) > 1 else 0.0
        floor = float((self.feet(verts, up) @ up).min())
        return middle, spread + max(half_extent, 0.3), up, floor

    def fit_distance(self, verts: np.ndarray, target: np.ndarray) -> float:
        """The distance from ``target`` at which every person's bounding box is in view (with the margin) from the
        current orbit angle: tighter than a bounding sphere, since people spread along the floor, not in a ball."""
        lo, hi = verts.min(axis=1), verts.max(axis=1)  # [N, 3] per-person boxes
        corners = np.stack([np.where(np.array(m, bool), hi, lo) for m in np.ndindex(2, 2, 2)], axis=1).reshape(-1, 3)
        eye_dir = self._eye_dir()
        f = -eye_dir
        r = np.cross(f, self.up)
        r /= np.linalg.norm(r)
        u = np.cross(r, f)
        rel = corners - target
        toward = rel @ eye_dir  # how much nearer to the eye than the target
        ty = np.tan(self.fov_y / 2) / self.MARGIN  # the slopes that still fit, vertically and horizontally
        tx = ty * self.aspect
        need = np.maximum(np.abs(rel @ r) / tx, np.abs(rel @ u) / ty) + toward
        return float(max(need.max(), 1.0))

    def update(self, verts: np.ndarray, now: float) -> None:
        """Follow the people of one scene (no people: the view stays where it is)."""
        if len(verts) == 0:
            return
        verts = np.asarray(verts, np.float64)
        middle, radius, up, floor = self.measure(verts)
        if self.target is None:
            self.target, self.radius, self.up, self.floor = middle, radius, up, floor
            self.fit = self.fit_distance(verts, middle)
        else:
            dt = max(now - (self._t if self._t is not None else now), 0.0)
            a = 1.0 - float(np.exp(-dt / self.tau))
            self.target = self.target + a * (middle - self.target)
            self.radius += a * (radius - self.radius)
            blended = self.up + (1.0 - float(np.exp(-dt / self.tau_up))) * (up - self.up)
            self.up = blended / np.linalg.norm(blended)
            self.floor += a * (floor - self.floor)
            need = self.fit_distance(verts, self.target)
            self.fit = need if need > self.fit else self.fit + a * (need - self.fit)  # back off at once, in slowly
        self._t = now

    def basis(self, up: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, towards the video camera, up) on the floor (``up`` defaults to the view's own): the frame the
        orbit and the grid use."""
        up = self.up if up is None else up
        back = np.array([0.0, 0.0, 1.0]) - up[2] * up  # the video camera's side, along the floor
        back /= np.linalg.norm(back)
        return np.cross(up, back), back, up

    @property
    def distance(self) -> float:
        """Far enough for everyone to be in view (:meth:`fit_distance`, followed smoothly), times the user's zoom."""
        return self.fit * self.zoom

    def _target(self) -> np.ndarray:
        return self.target if self.target is not None else np.array([0.0, 0.0, -3.0])

    def _eye_dir(self) -> np.ndarray:
        """Unit vector from the target towards the eye."""
        right, back, up = self.basis()
        return np.cos(self.pitch) * (np.sin(self.yaw) * right + np.cos(self.yaw) * back) + np.sin(self.pitch) * up

    def eye(self) -> np.ndarray:
        return self._target() + self.distance * self._eye_dir()

    def extrinsic(self) -> np.ndarray:
        """World -> camera (OpenCV axes: x right, y down, z forward), as Open3D's pinhole parameters want it."""
        t, eye = self._target(), self.eye()
        f = (t - eye) / np.linalg.norm(t - eye)
        r = np.cross(f, self.up)
        r /= np.linalg.norm(r)
        down = np.cross(f, r)
        rot = np.stack([r, down, f])
        ext = np.eye(4)
        ext[:3, :3] = rot
        ext[:3, 3] = -rot @ eye
        return ext

    def rotate(self, dx_px: float, dy_px: float) -> None:
        self.yaw -= dx_px * 0.01
        self.pitch = float(np.clip(self.pitch + dy_px * 0.01, -0.2, 1.45))

    def zoom_by(self, steps: float) -> None:
        self.zoom = float(np.clip(self.zoom * 0.85 ** steps, 0.2, 5.0))

    def reset(self) -> None:
        self.yaw, self.pitch, self.zoom = 0.0, self.PITCH0, 1.0

    def floor_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid lines on the floor around the people (points [P, 3], line index pairs [L, 2]).

        Lines sit at fixed positions of the floor's own coordinates (multiples of the spacing) and only the extent
        follows the people, so walking people move over the floor instead of the floor moving with them.
        """
        right, back, up = self.basis()
        t = self._target()
        step = 0.5 if self.radius < 4 else 1.0
        half = self.radius * 1.5 + 1.0
        a0, a1 = np.floor((t @ right - half) / step) * step, np.ceil((t @ right + half) / step) * step
        b0, b1 = np.floor((t @ back - half) / step) * step, np.ceil((t @ back + half) / step) * step
        pts: list[np.ndarray] = []
        for a in np.arange(a0, a1 + step / 2, step):
            pts += [a * right + b0 * back, a * right + b1 * back]
        for b in np.arange(b0, b1 + step / 2, step):
            pts += [a0 * right + b * back, a1 * right + b * back]
        points = np.array(pts) + self.floor * up
        return points, np.arange(len(points)).reshape(-1, 2)


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
        vc = self.vis.get_view_control()
        vc.set_constant_z_near(0.05)  # the view is placed by hand, not fitted to a bounding box: fixed clip planes
        vc.set_constant_z_far(1000.0)
        params = vc.convert_to_pinhole_camera_parameters()
        fy = params.intrinsic.intrinsic_matrix[1, 1]
        self.cam = OrbitCamera(fov_y_deg=float(np.degrees(2 * np.arctan(height / 2 / fy))), aspect=width / height)
        self.meshes: list = []
        self.added: list[bool] = []
        self.tri = None
        self.grid = None

    def _update_grid(self) -> None:
        o3d = self.o3d
        pts, lines = self.cam.floor_grid()
        if self.grid is None:
            self.grid = o3d.geometry.LineSet()
        self.grid.points = o3d.utility.Vector3dVector(pts)
        self.grid.lines = o3d.utility.Vector2iVector(lines.astype(np.int32))
        self.grid.paint_uniform_color([0.35, 0.35, 0.4])
        if not getattr(self, "_grid_added", False):
            self.vis.add_geometry(self.grid, reset_bounding_box=False)
            self._grid_added = True
        else:
            self.vis.update_geometry(self.grid)

    def scene(self, verts: np.ndarray, faces: np.ndarray | None, colors: np.ndarray) -> None:
        o3d = self.o3d
        if faces is not None:
            self.tri = o3d.utility.Vector3iVector(faces)
        while len(self.meshes) < len(verts):
            self.meshes.append(o3d.geometry.TriangleMesh())
            self.added.append(False)
        flipped = np.asarray(verts, np.float64) * _FLIP
        for i, m in enumerate(self.meshes):
            if i < len(verts):
                m.vertices = o3d.utility.Vector3dVector(flipped[i])
                m.triangles = self.tri
                m.compute_vertex_normals()
                m.paint_uniform_color(colors[i].astype(np.float64))
            else:  # fewer people than meshes: keep the geometry, empty it
                m.vertices = o3d.utility.Vector3dVector(np.zeros((0, 3)))
                m.triangles = o3d.utility.Vector3iVector(np.zeros((0, 3), np.int32))
            if not self.added[i] and i < len(verts):
                # the first mesh gives the view control a valid bounding box (without one Open3D's camera
                # conversion yields NaN); the camera itself is placed by OrbitCamera
                self.vis.add_geometry(m, reset_bounding_box=i == 0 and not any(self.added))
                self.added[i] = True
            elif self.added[i]:
                self.vis.update_geometry(m)
        self.cam.update(flipped, time.perf_counter())
        if self.cam.target is not None:
            self._update_grid()

    def reset(self) -> None:
        """Back to the default orbit (from the video camera's side, a little above) around the people."""
        self.cam.reset()

    def command(self, name: str, a: float, b: float) -> None:
        if name == "rotate":
            self.cam.rotate(a, b)
        elif name == "zoom":
            self.cam.zoom_by(a)
        elif name == "reset":
            self.reset()

    def render(self) -> np.ndarray:
        vc = self.vis.get_view_control()
        params = vc.convert_to_pinhole_camera_parameters()
        params.extrinsic = self.cam.extrinsic()
        vc.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
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
