"""A CPU mesh overlay: per-face visibility with Lambert shading, drawn straight into the frame.

Why not OpenGL: it needs no GL context (works in threads, headless, under Xvfb and in CI) and is deterministic for
pixel tests. Faces of ALL people are drawn together, nearest last, so people occlude each other correctly. Two
ways to draw, picked by the number of front faces: a painter's loop with one OpenCV fill per face (~1.3 us per
face, nothing to set up), or one vectorised raster of all faces (:mod:`.raster`, large crowds). Back faces are culled
(outward winding, camera looking down +z with y down).

Cost is per drawn face, so each person gets the level of detail their size on screen can show (:mod:`.lod`: the
live level, a coarse one below ``coarse_below_px`` and a tiny one below ``tiny_below_px``), and only the vertices
of that level are projected and gathered. Everything here changes the overlay only; the meshes handed to exports
are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .annotators import Annotator, Scene
from .colors import colors_for
from .projection import project_points
from .raster import small_face_count, visible_pixels

_LIGHT = np.array([0.25, -0.45, -1.0])  # towards the light: from the camera, a little above and to the right
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)
_SUBPIXEL_BITS = 3
# Up to this many SMALL front faces per frame (the ones the raster vectorises; it fills larger ones with one OpenCV
# call each, as the painter does), one OpenCV call per face (~1.3 us each with the sort and the loop) is as fast as
# the vectorised raster or faster: with the tiny level for small people the painter still won at ~8000 faces, while
# crowds drawn with the 800-face level (smaller triangles, cheaper for the raster) were faster rastered. Counted
# over all faces, five people close to a 640x480 camera (~4100 faces, ~1600 of them small) went to the raster and
# took 13.9 ms a frame against 5.8 painted. Measured on 2 cores with benchmarks/render_cost.py's scenes.
PAINTER_MAX_FACES = 4000


def shade_faces(tri3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[M, 3, 3] triangles -> (facing-camera mask [M], Lambert intensity [M] in 0..1).

    Written per coordinate on [M] columns: numpy reductions and cross products over a length-3 last axis cost
    ~50 ns per row, 10x the arithmetic."""
    a, b, c = tri3d[:, 0], tri3d[:, 1], tri3d[:, 2]
    ux, uy, uz = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1], b[:, 2] - a[:, 2]
    vx, vy, vz = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1], c[:, 2] - a[:, 2]
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    facing = (nz < 0) & (norm > 0)
    lit = (nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2]) / np.maximum(norm, 1e-12)
    return facing, np.clip(lit, 0.0, 1.0)


@dataclass(frozen=True)
class _Level:
    """One face list prepared for drawing: the vertices it uses and its corners as indices into those."""

    faces: np.ndarray  # the list as given (its identity is the cache key)
    used: np.ndarray  # [U] int64 vertex indices
    corners: np.ndarray  # [F * 3] int64 indices into ``used``
    num_faces: int


def _bounds(px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, K, 2] points -> per-person (min, max) [N, 2] each, one coordinate at a time: a reduction over the
    short last axis of [N, K, 2] costs ~20x this."""
    x, y = px[:, :, 0], px[:, :, 1]
    return (np.stack([x.min(axis=1), y.min(axis=1)], axis=1), np.stack([x.max(axis=1), y.max(axis=1)], axis=1))


class MeshAnnotator(Annotator):
    """Draws every person's mesh in their track colour.

    Args:
        opacity: 0..1 blend of the mesh over the video.
        faces: optional lower-resolution face list for live use (indices into the full vertex array).
        coarse_faces: an even coarser list for people smaller than ``coarse_below_px`` on screen.
        ambient: shading floor, so faces at grazing angles keep their colour.
        cull: drop back faces (halves the work for closed meshes).
        tiny_faces: the coarsest list, for people smaller than ``tiny_below_px`` (see :mod:`.lod`).

    A person's on-screen size is the longer side of their projected box, so a person lying down counts as large.
    """

    def __init__(self, opacity: float = 0.8, faces: np.ndarray | None = None, ambient: float = 0.35,
                 cull: bool = True, coarse_faces: np.ndarray | None = None, coarse_below_px: float = 220.0,
                 tiny_faces: np.ndarray | None = None, tiny_below_px: float = 120.0) -> None:
        self.opacity = opacity
        self.faces = faces
        self.coarse_faces = coarse_faces
        self.coarse_below_px = coarse_below_px
        self.tiny_faces = tiny_faces
        self.tiny_below_px = tiny_below_px
        self.ambient = ambient
        self.cull = cull
        self.last_faces_drawn = 0
        self._levels: dict[int, _Level] = {}

    def _ladder(self, full: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fine, coarse, tiny) face lists; a level that is not coarser than the one above it is that one (a small
        live budget may make the coarse level smaller than the tiny one)."""
        fine = self.faces if self.faces is not None else full
        coarse = self.coarse_faces if self.coarse_faces is not None and len(self.coarse_faces) < len(fine) else fine
        tiny = self.tiny_faces if self.tiny_faces is not None and len(self.tiny_faces) < len(coarse) else coarse
        return fine, coarse, tiny

    def _faces_for(self, size_px: float, full: np.ndarray) -> np.ndarray:
        """Level of detail by on-screen size: detail a small person cannot show costs as much as any other."""
        fine, coarse, tiny = self._ladder(full)
        if size_px < self.tiny_below_px:
            return tiny
        return coarse if size_px < self.coarse_below_px else fine

    def _level(self, faces: np.ndarray) -> _Level:
        """The vertices a face list uses and its corners re-indexed into them (cached per list)."""
        cache = self._levels
        lv = cache.get(id(faces))
        if lv is None or lv.faces is not faces:
            used, corners = np.unique(np.asarray(faces), return_inverse=True)
            lv = _Level(faces, used.astype(np.int64), corners.reshape(-1).astype(np.int64), len(faces))
            if len(cache) >= 8:
                cache.clear()
            cache[id(faces)] = lv
        return lv

    def annotate(self, frame: np.ndarray, scene: Scene) -> np.ndarray:
        m = scene.meshes
        self.last_faces_drawn = 0
        if m is None or len(m) == 0 or self.opacity <= 0:
            return frame
        cam, box, verts = scene.people.cam, scene.box, m.vertices
        h, w = frame.shape[:2]
        # Screen size and visibility from the coarsest level's vertices (a sixth of the mesh's): each person's
        # level is known before anything else is projected, and then only the vertices it draws are.
        probe = self._level(self._ladder(m.faces)[2])
        probe_px, probe_depth = project_points(verts[:, probe.used], cam, box)
        lo, hi = _bounds(probe_px)
        size = np.maximum(hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1])
        margin = 0.05 * size + 2.0  # the probe's hull lies a little inside the full mesh's
        on_screen = ((hi[:, 0] >= -margin) & (hi[:, 1] >= -margin) & (lo[:, 0] < w + margin)
                     & (lo[:, 1] < h + margin))
        # one gather per level of detail (at most three), not per person
        groups: dict[int, tuple[np.ndarray, list[int]]] = {}
        for i in np.flatnonzero(on_screen):
            faces = self._faces_for(float(size[i]), m.faces)
            groups.setdefault(id(faces), (faces, []))[1].append(int(i))
        tris, people, boxes = [], [], []
        for faces, rows in groups.values():
            lv, idx = self._level(faces), np.asarray(rows, np.int64)
            if lv is probe:
                px, depth = probe_px[idx], probe_depth[idx]
            else:
                px, depth = project_points(verts[idx[:, None], lv.used], cam[idx], box)
            boxes.append(np.concatenate(_bounds(px), axis=1))
            # screen x, y, depth and the 3D position side by side: one row gather per face corner gets them all
            attrs = np.concatenate([px, depth[..., None], verts[idx[:, None], lv.used].astype(np.float32, copy=False)],
                                   axis=2).reshape(-1, 6)
            corners = (np.arange(len(idx))[:, None] * len(lv.used) + lv.corners).reshape(-1)  # [n * F * 3]
            t = attrs[corners].reshape(-1, 3, 6)
            # cull in screen space first (cheap), so shading and rasterising only see front faces
            ax, ay = t[:, 0, 0], t[:, 0, 1]
            area = (t[:, 1, 0] - ax) * (t[:, 2, 1] - ay) - (t[:, 1, 1] - ay) * (t[:, 2, 0] - ax)
            keep = np.flatnonzero(area < 0 if self.cull else area != 0)
            tris.append(t[keep])
            people.append(idx[keep // lv.num_faces])
        if not tris or not sum(len(t) for t in tris):
            return frame
        t = np.concatenate(tris) if len(tris) > 1 else tris[0]
        person = np.concatenate(people) if len(people) > 1 else people[0]
        tri2d, zf = t[:, :, :2], t[:, 0, 2] + t[:, 1, 2] + t[:, 2, 2]
        _, light = shade_faces(t[:, :, 3:])
        if not self.cull:
            light = np.abs(light)
        intensity = self.ambient + (1.0 - self.ambient) * light
        colors = colors_for(scene.people.track_ids)[person] * intensity[:, None]
        bounds = np.concatenate(boxes)  # [people, 4]: x_lo, y_lo, x_hi, y_hi
        x0 = int(max(np.floor(bounds[:, 0].min()), 0))
        y0 = int(max(np.floor(bounds[:, 1].min()), 0))
        x1 = int(min(np.ceil(bounds[:, 2].max()) + 1, w))
        y1 = int(min(np.ceil(bounds[:, 3].max()) + 1, h))
        if x1 <= x0 or y1 <= y0:
            return frame
        roi = frame[y0:y1, x0:x1]
        col = np.clip(colors, 0, 255).astype(np.uint8)
        shifted = tri2d - np.array([x0, y0], np.float32)
        if len(t) <= PAINTER_MAX_FACES or small_face_count(shifted) <= PAINTER_MAX_FACES:
            self._paint(roi, shifted, zf, col)
        else:
            self._raster(roi, shifted, zf, col)
        self.last_faces_drawn = len(t)
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
        """All faces in one vectorised pass (:mod:`.raster`), written into a copy of the region and blended back
        with one ``addWeighted`` (uncovered pixels blend with themselves and stay exact)."""
        pix, face = visible_pixels(tri2d, zf, roi.shape[0], roi.shape[1])
        if not len(pix):
            return
        layer = roi.copy()
        layer.reshape(-1, 3)[pix] = col[face]
        if self.opacity >= 1.0:
            roi[...] = layer
        else:
            cv2.addWeighted(layer, self.opacity, roi, 1.0 - self.opacity, 0.0, dst=roi)


def render_overlay(frame: np.ndarray, scene: Scene, annotators: list[Annotator]) -> np.ndarray:
    """Copy the frame once and run the annotators in order."""
    out = frame.copy()
    for a in annotators:
        out = a.annotate(out, scene)
    return out
