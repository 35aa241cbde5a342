"""A CPU mesh overlay: per-face visibility with Lambert shading, drawn straight into the frame.

Why not OpenGL: it needs no GL context (works in threads, headless, under Xvfb and in CI) and is deterministic for
pixel tests. Faces of ALL people are drawn together, nearest last, so people occlude each other correctly. Two
ways to draw, picked by the number of front faces: a painter's loop with one OpenCV fill per face (a few people:
~2-3 us per face, nothing to set up), or one vectorised raster of all faces (:mod:`.raster`, crowds: no Python per
face). Back faces are culled (outward winding, camera looking down +z with y down).
"""

from __future__ import annotations

import cv2
import numpy as np

from .annotators import Annotator, Scene
from .colors import colors_for
from .projection import project_points
from .raster import visible_pixels

_LIGHT = np.array([0.25, -0.45, -1.0])  # towards the light: from the camera, a little above and to the right
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)
_SUBPIXEL_BITS = 3
# Up to this many front faces per frame, one OpenCV call per face (~2-3 us each) beats the vectorised raster's
# fixed cost; above it (crowds) the raster wins. Measured on 2 cores with benchmarks/render_cost.py.
PAINTER_MAX_FACES = 1000


def shade_faces(tri3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[M, 3, 3] triangles -> (facing-camera mask [M], Lambert intensity [M] in 0..1)."""
    n = np.cross(tri3d[:, 1] - tri3d[:, 0], tri3d[:, 2] - tri3d[:, 0])
    norm = np.linalg.norm(n, axis=1)
    n = n / np.maximum(norm, 1e-12)[:, None]
    facing = (n[:, 2] < 0) & (norm > 0)
    return facing, np.clip(n @ _LIGHT, 0.0, 1.0)


class MeshAnnotator(Annotator):
    """Draws every person's mesh in their track colour.

    Args:
        opacity: 0..1 blend of the mesh over the video.
        faces: optional lower-resolution face list for live use (indices into the full vertex array).
        coarse_faces: an even coarser list for people shorter than ``coarse_below_px`` on screen.
        ambient: shading floor, so faces at grazing angles keep their colour.
        cull: drop back faces (halves the work for closed meshes).
    """

    def __init__(self, opacity: float = 0.8, faces: np.ndarray | None = None, ambient: float = 0.35,
                 cull: bool = True, coarse_faces: np.ndarray | None = None, coarse_below_px: float = 220.0) -> None:
        self.opacity = opacity
        self.faces = faces
        self.coarse_faces = coarse_faces
        self.coarse_below_px = coarse_below_px
        self.ambient = ambient
        self.cull = cull
        self.last_faces_drawn = 0

    def _faces_for(self, height_px: float, full: np.ndarray) -> np.ndarray:
        """Level of detail by on-screen size: detail a small person cannot show costs as much as any other."""
        if self.coarse_faces is not None and height_px < self.coarse_below_px:
            return self.coarse_faces
        return self.faces if self.faces is not None else full

    def annotate(self, frame: np.ndarray, scene: Scene) -> np.ndarray:
        m = scene.meshes
        self.last_faces_drawn = 0
        if m is None or len(m) == 0 or self.opacity <= 0:
            return frame
        px, depth = project_points(m.vertices, scene.people.cam, scene.box)  # [N, V, 2], [N, V]
        h, w = frame.shape[:2]
        lo, hi = px.min(axis=1), px.max(axis=1)
        on_screen = (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] < w) & (lo[:, 1] < h)
        # one gather per level of detail (at most two), not per person
        groups: dict[int, tuple[np.ndarray, list[int]]] = {}
        for i in np.flatnonzero(on_screen):
            faces = self._faces_for(float(hi[i, 1] - lo[i, 1]), m.faces)
            groups.setdefault(id(faces), (faces, []))[1].append(int(i))
        tris, zs, verts3, people = [], [], [], []
        for faces, rows in groups.values():
            idx = np.asarray(rows)
            t2 = px[idx][:, faces].reshape(-1, 3, 2)  # [n * F, 3, 2]
            # cull in screen space first (cheap), so shading and rasterising only see front faces
            e1, e2 = t2[:, 1] - t2[:, 0], t2[:, 2] - t2[:, 0]
            area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
            keep = area < 0 if self.cull else area != 0
            tris.append(t2[keep])
            zs.append(depth[idx][:, faces].sum(axis=2).reshape(-1)[keep])
            verts3.append(m.vertices[idx][:, faces].reshape(-1, 3, 3)[keep])
            people.append(np.repeat(idx, len(faces))[keep])
        if not sum(len(t) for t in tris):
            return frame
        tri2d, zf, person = np.concatenate(tris), np.concatenate(zs), np.concatenate(people)
        _, light = shade_faces(np.concatenate(verts3))
        if not self.cull:
            light = np.abs(light)
        intensity = self.ambient + (1.0 - self.ambient) * light
        colors = colors_for(scene.people.track_ids)[person] * intensity[:, None]
        vis = px[on_screen].reshape(-1, 2)
        x0 = int(max(np.floor(vis[:, 0].min()), 0))
        y0 = int(max(np.floor(vis[:, 1].min()), 0))
        x1 = int(min(np.ceil(vis[:, 0].max()) + 1, w))
        y1 = int(min(np.ceil(vis[:, 1].max()) + 1, h))
        if x1 <= x0 or y1 <= y0:
            return frame
        roi = frame[y0:y1, x0:x1]
        col = np.clip(colors, 0, 255).astype(np.uint8)
        if len(tri2d) <= PAINTER_MAX_FACES:
            self._paint(roi, tri2d - np.array([x0, y0], np.float32), zf, col)
        else:
            self._raster(roi, tri2d - np.array([x0, y0], np.float32), zf, col)
        self.last_faces_drawn = len(tri2d)
        return frame

    def _paint(self, roi: np.ndarray, tri2d: np.ndarray, zf: np.ndarray, col: np.ndarray) -> None:
        """Painter's algorithm, one OpenCV fill per face far to near (fastest for a few thousand faces)."""
        layer = roi if self.opacity >= 1.0 else roi.copy()
        order = np.argsort(-zf, kind="stable")
        pts = np.round(tri2d[order] * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        fill = cv2.fillConvexPoly
        for p, c in zip(pts, col[order].astype(np.int32).tolist()):
            fill(layer, p, c, cv2.LINE_8, _SUBPIXEL_BITS)
        if layer is not roi:
            cv2.addWeighted(layer, self.opacity, roi, 1.0 - self.opacity, 0.0, dst=roi)

    def _raster(self, roi: np.ndarray, tri2d: np.ndarray, zf: np.ndarray, col: np.ndarray) -> None:
        """All faces in one vectorised pass (:mod:`.raster`); blends only the covered pixels."""
        pix, face = visible_pixels(tri2d, zf, roi.shape[0], roi.shape[1])
        if not len(pix):
            return
        c = col[face]  # [K, 3]
        rows, cols = np.divmod(pix, roi.shape[1])
        if self.opacity >= 1.0:
            roi[rows, cols] = c
            return
        under = roi[rows, cols].astype(np.float32)  # blended as addWeighted does: rounded, saturated
        mixed = c * np.float32(self.opacity) + under * np.float32(1.0 - self.opacity)
        roi[rows, cols] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def render_overlay(frame: np.ndarray, scene: Scene, annotators: list[Annotator]) -> np.ndarray:
    """Copy the frame once and run the annotators in order."""
    out = frame.copy()
    for a in annotators:
        out = a.annotate(out, scene)
    return out
