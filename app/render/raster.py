"""Which face is visible at each pixel, for all triangles of all people in one vectorised pass.

Why not one ``cv2.fillConvexPoly`` call per face: that costs ~3 us of Python and call overhead per face, so a
crowd (47 people x ~800 faces) spent ~100 ms drawing triangles most of which cover a pixel or two. Here every
small triangle is expanded into the pixel centres of its bounding box with numpy, tested against its three edge
functions, and the nearest face wins per pixel through ``np.minimum.at`` on a (depth, face) key: no per-face
Python, no global sort. The few large triangles (near people) would expand to many candidate pixels, so they are
still filled by OpenCV, far to near, into a face-index buffer; the two buffers are merged by the same key. Cost
grows with covered pixels, not with faces, so a crowd of small people costs little more than a few near ones.

Coverage rule: a pixel is covered when its centre (integer coordinates, as OpenCV's) lies inside the triangle or
within ``dilate`` pixels of its edge lines, and within its bounding box grown by ``dilate`` (which cuts the spikes
offset edge lines make at sharp corners). With the default half pixel this matches the look of OpenCV's polygon fill,
which also draws the outline's pixels: a centre-only rule made small people's limbs visibly thinner. Neighbouring
faces of a closed mesh leave no gaps either way. Visibility is per face (depth of the face's vertex sum), as the
painter's algorithm this replaces.
"""

from __future__ import annotations

import cv2
import numpy as np

_FACE_BITS = 22  # faces per frame up to ~4M
_NONE = np.iinfo(np.int64).max
_SUBPIXEL_BITS = 3
BIG_FACE_PX = 96  # bounding boxes larger than this go to OpenCV (about where a ~3 us call beats numpy)
_TEMPLATE_SIDES = (2, 3, 4, 6, 8, 12)  # bounding-box sides of the pixel templates; larger faces go to OpenCV


def depth_keys(depth: np.ndarray) -> np.ndarray:
    """[M] non-negative float depths -> int64 keys ordering near-first, then by face index (unique per face)."""
    bits = np.maximum(depth, 0).astype(np.float32).view(np.int32).astype(np.int64)  # monotonic for floats >= 0
    return (bits << _FACE_BITS) | np.arange(len(depth), dtype=np.int64)


def visible_pixels(tri: np.ndarray, depth: np.ndarray, h: int, w: int, big_px: int = BIG_FACE_PX,
                   dilate: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The covered pixels and the face visible at each.

    Args:
        tri: [M, 3, 2] screen triangles (pixels; x right, y down), either winding.
        depth: [M] per-face depth, larger = farther.
        h, w: raster size; triangles may extend outside it.
        big_px: faces whose pixel bounding box is larger are filled by OpenCV.
        dilate: pixels within this distance of a small face's edges are covered too (see the module docstring).

    Returns:
        flat pixel indices (``y * w + x``) [K] int64 and the visible face of each [K] int64.
    """
    m = len(tri)
    if m >= 1 << _FACE_BITS:
        raise ValueError(f"too many faces for one raster: {m}")
    keys = depth_keys(depth)
    best = np.full(h * w, _NONE, np.int64)
    x, y = tri[..., 0].astype(np.float64), tri[..., 1].astype(np.float64)
    x0 = np.maximum(np.ceil(x.min(1) - dilate), 0).astype(np.int64)
    y0 = np.maximum(np.ceil(y.min(1) - dilate), 0).astype(np.int64)
    bw = np.minimum(np.floor(x.max(1) + dilate), w - 1).astype(np.int64) - x0 + 1
    bh = np.minimum(np.floor(y.max(1) + dilate), h - 1).astype(np.int64) - y0 + 1
    area = np.where((bw > 0) & (bh > 0), bw * bh, 0)
    side = np.maximum(bw, bh)
    small = np.flatnonzero((area > 0) & (area <= big_px) & (side <= _TEMPLATE_SIDES[-1]))
    if len(small):
        coef = _edge_coefficients(x[small] - x0[small, None], y[small] - y0[small, None], dilate)
        lo = 0
        for hi in _TEMPLATE_SIDES:  # faces of similar size together: a fixed pixel template, no per-pixel gathers
            sel = np.flatnonzero((side[small] > lo) & (side[small] <= hi))
            if len(sel):
                f = small[sel]
                _fill_template(best, keys[f], coef[sel], x0[f], y0[f], bw[f], bh[f], hi, w)
            lo = hi
    big = np.flatnonzero((area > big_px) | ((area > 0) & (side > _TEMPLATE_SIDES[-1])))
    if len(big):
        _fill_big(best, keys, tri[big], depth[big], big, h, w)
    pix = np.flatnonzero(best != _NONE)
    return pix, best[pix] & ((1 << _FACE_BITS) - 1)


def visible_faces(tri: np.ndarray, depth: np.ndarray, h: int, w: int, big_px: int = BIG_FACE_PX,
                  dilate: float = 0.5) -> np.ndarray:
    """:func:`visible_pixels` as an [h, w] int64 image of face indices, -1 where no face covers the pixel."""
    pix, face = visible_pixels(tri, depth, h, w, big_px, dilate)
    ids = np.full(h * w, -1, np.int64)
    ids[pix] = face
    return ids.reshape(h, w)


def _edge_coefficients(lx: np.ndarray, ly: np.ndarray, dilate: float) -> np.ndarray:
    """[F, 3] vertex coordinates in each face's own bounding-box frame -> [F, 9] float32 (a, b, c per edge) with
    ``a * px + b * py + c`` = signed distance to the edge line plus ``dilate``, >= 0 inside, either winding."""
    nx, ny = lx[:, [1, 2, 0]], ly[:, [1, 2, 0]]
    ea, eb = ly - ny, nx - lx
    norm = np.maximum(np.hypot(ea, eb), 1e-9)
    sign = np.sign((lx[:, 1] - lx[:, 0]) * (ly[:, 2] - ly[:, 0]) - (ly[:, 1] - ly[:, 0]) * (lx[:, 2] - lx[:, 0]))
    scale = sign[:, None] / norm
    ea, eb = ea * scale, eb * scale
    return np.concatenate([ea, eb, dilate - (ea * lx + eb * ly)], axis=1).astype(np.float32)


def _fill_template(best: np.ndarray, keys: np.ndarray, coef: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                   bw: np.ndarray, bh: np.ndarray, side: int, w: int) -> None:
    """Faces whose bounding box fits ``side`` x ``side``: every template pixel against every face at once."""
    tx = np.tile(np.arange(side, dtype=np.float32), side)  # [T] template pixel offsets
    ty = np.repeat(np.arange(side, dtype=np.float32), side)
    inside = (tx < bw[:, None]) & (ty < bh[:, None])  # [F, T]
    for k in range(3):
        inside &= coef[:, k, None] * tx + coef[:, 3 + k, None] * ty + coef[:, 6 + k, None] >= 0
    f, t = np.nonzero(inside)
    pix = (y0[f] + ty[t].astype(np.int64)) * w + x0[f] + tx[t].astype(np.int64)
    np.minimum.at(best, pix, keys[f])


def _fill_big(best: np.ndarray, keys: np.ndarray, tri: np.ndarray, depth: np.ndarray, face: np.ndarray, h: int,
              w: int) -> None:
    order = np.argsort(-depth, kind="stable")  # far to near: the last face drawn at a pixel is the nearest
    # draw into a buffer covering only these faces' box (a near person rarely spans the whole frame)
    bx0, by0 = (max(int(np.floor(v)), 0) for v in tri.reshape(-1, 2).min(0))
    bx1, by1 = (int(np.ceil(v)) + 1 for v in tri.reshape(-1, 2).max(0))
    bx1, by1 = min(bx1, w), min(by1, h)
    if bx1 <= bx0 or by1 <= by0:
        return
    buf = np.full((by1 - by0, bx1 - bx0), -1, np.int32)
    pts = np.round((tri[order] - np.array([bx0, by0], np.float32)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    fill = cv2.fillConvexPoly
    for i, p in enumerate(pts):
        fill(buf, p, i, cv2.LINE_8, _SUBPIXEL_BITS)
    ys, xs = np.nonzero(buf >= 0)
    hit = (ys + by0).astype(np.int64) * w + xs + bx0
    best[hit] = np.minimum(best[hit], keys[face[order[buf[ys, xs]]]])  # one big face per pixel: no repeats
