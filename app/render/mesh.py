"""A CPU mesh overlay: depth-sorted painter's algorithm with Lambert shading, drawn straight into the frame.

Why a painter and not OpenGL: it needs no GL context (works in threads, headless, under Xvfb and in CI), is
deterministic for pixel tests, and for body meshes of ~1-3k visible faces it costs a few milliseconds
(``cv2.fillConvexPoly`` is about 2 us per face; ``cv2.fillPoly`` with many polygons XOR-fills overlaps, so faces
are drawn one by one). Faces of ALL people are sorted together far-to-near, so people occlude each other
correctly. Back faces are culled (outward winding, camera looking down +z with y down). Opacity blends only the
bounding box of what was drawn.
"""

from __future__ import annotations

import cv2
import numpy as np

from .annotators import Annotator, Scene
from .colors import colors_for
from .projection import project_points

_LIGHT = np.array([0.25, -0.45, -1.0])  # towards the light: from the camera, a little above and to the right
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)
_SUBPIXEL_BITS = 3


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
        tris, zs, verts3, people = [], [], [], []
        for i in np.flatnonzero(on_screen):  # a handful of people: per-person gathers keep the LOD choice simple
            faces = self._faces_for(float(hi[i, 1] - lo[i, 1]), m.faces)
            t2 = px[i][faces]  # [F, 3, 2]
            # cull in screen space first (cheap), so shading and sorting only see front faces; OpenCV clips the rest
            e1, e2 = t2[:, 1] - t2[:, 0], t2[:, 2] - t2[:, 0]
            area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
            keep = area < 0 if self.cull else area != 0
            fk = faces[keep]
            tris.append(t2[keep])
            zs.append(depth[i][fk].sum(axis=1))
            verts3.append(m.vertices[i][fk])
            people.append(np.full(len(fk), i))
        if not tris or not sum(len(t) for t in tris):
            return frame
        tri2d, zf, person = np.concatenate(tris), np.concatenate(zs), np.concatenate(people)
        _, light = shade_faces(np.concatenate(verts3))
        if not self.cull:
            light = np.abs(light)
        intensity = self.ambient + (1.0 - self.ambient) * light
        colors = colors_for(scene.people.track_ids)[person] * intensity[:, None]
        order = np.argsort(-zf, kind="stable")  # far to near
        vis = px[on_screen].reshape(-1, 2)
        x0 = int(max(np.floor(vis[:, 0].min()), 0))
        y0 = int(max(np.floor(vis[:, 1].min()), 0))
        x1 = int(min(np.ceil(vis[:, 0].max()) + 1, w))
        y1 = int(min(np.ceil(vis[:, 1].max()) + 1, h))
        if x1 <= x0 or y1 <= y0:
            return frame
        roi = frame[y0:y1, x0:x1]
        layer = roi if self.opacity >= 1.0 else roi.copy()
        pts = np.round((tri2d[order] - (x0, y0)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cols = np.clip(colors[order], 0, 255).astype(np.int32).tolist()
        fill = cv2.fillConvexPoly
        for p, c in zip(pts, cols):
            fill(layer, p, c, cv2.LINE_8, _SUBPIXEL_BITS)
        if layer is not roi:
            cv2.addWeighted(layer, self.opacity, roi, 1.0 - self.opacity, 0.0, dst=roi)
        self.last_faces_drawn = len(pts)
        return frame


def render_overlay(frame: np.ndarray, scene: Scene, annotators: list[Annotator]) -> np.ndarray:
    """Copy the frame once and run the annotators in order."""
    out = frame.copy()
    for a in annotators:
        out = a.annotate(out, scene)
    return out
