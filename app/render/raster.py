"""Which face is visible at each pixel, for all triangles of all people in one vectorised pass.

Why not one ``cv2.fillConvexPoly`` call per face: that costs ~1.3-3 us of Python and call overhead per face, so a
crowd (47 people x ~800 faces) spent ~100 ms drawing triangles most of which cover a pixel or two. Here every
small triangle is expanded into the pixel centres of its bounding box with numpy, tested against its three edge
functions, and the nearest face wins per pixel through ``np.minimum.at`` on a (depth, face) key: no per-face
Python, no global sort. The few large triangles (near people) would expand to many candidate pixels, so they are
still filled by OpenCV, far to near, into a face-index buffer; the two buffers are merged by the same key. Cost
grows with the candidate pixels (the faces' bounding boxes) more than with faces, so it pays off for many small
faces; :mod:`.mesh` picks it above a face count. Arrays are laid out with faces on the long last axis: numpy
loops over a short last axis (3 corners, a 6-pixel template row) cost ~10x the arithmetic.

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
BIG_FACE_PX = 160  # bounding boxes larger than this go to OpenCV (about where a ~2 us call beats numpy)
_TEMPLATE_SIDES = (2, 3, 4, 6, 8, 12, 16)  # bounding-box sides of the pixel templates; larger faces go to OpenCV


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
    x0 = np.maximum(np.ceil(_min3(x) - dilate), 0).astype(np.int64)
    y0 = np.maximum(np.ceil(_min3(y) - dilate), 0).astype(np.int64)
    bw = np.minimum(np.floor(_max3(x) + dilate), w - 1).astype(np.int64) - x0 + 1
    bh = np.minimum(np.floor(_max3(y) + dilate), h - 1).astype(np.int64) - y0 + 1
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
                _fill_template(best, keys[f], coef[:, sel], x0[f], y0[f], bw[f], bh[f], hi, w)
            lo = hi
    big = np.flatnonzero((area > big_px) | ((area > 0) & (side > _TEMPLATE_SIDES[-1])))
    if len(big):
        _fill_big(best, keys, tri[big], depth[big], big, h, w)
    pix = np.flatnonzero(best != _NONE)
    return pix, best[pix] & ((1 << _FACE_BITS) - 1)


def small_face_count(tri: np.ndarray, big_px: int = BIG_FACE_PX) -> int:
    """How many of [M, 3, 2] screen triangles :func:`visible_pixels` would rasterise itself (a small bounding box);
    the others it fills with one OpenCV call each, as the painter does, so only these make it the faster way."""
    x, y = tri[..., 0], tri[..., 1]
    bw, bh = _max3(x) - _min3(x) + 1.0, _max3(y) - _min3(y) + 1.0
    return int(np.count_nonzero((bw * bh <= big_px) & (np.maximum(bw, bh) <= _TEMPLATE_SIDES[-1])))


def _min3(a: np.ndarray) -> np.ndarray:
    """Row minimum of [M, 3] as two column operations (``a.min(1)`` over a length-3 axis is ~10x slower)."""
    return np.minimum(np.minimum(a[:, 0], a[:, 1]), a[:, 2])


def _max3(a: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(a[:, 0], a[:, 1]), a[:, 2])


def visible_faces(tri: np.ndarray, depth: np.ndarray, h: int, w: int, big_px: int = BIG_FACE_PX,
                  dilate: float = 0.5) -> np.ndarray:
    """:func:`visible_pixels` as an [h, w] int64 image of face indices, -1 where no face covers the pixel."""
    pix, face = visible_pixels(tri, depth, h, w, big_px, dilate)
    ids = np.full(h * w, -1, np.int64)
    ids[pix] = face
    return ids.reshape(h, w)


def _edge_coefficients(lx: np.ndarray, ly: np.ndarray, dilate: float) -> np.ndarray:
    """[F, 3] vertex coordinates in each face's own bounding-box frame -> [9, F] float32 (a, b, c per edge) with
    ``a * px + b * py + c`` = signed distance to the edge line plus ``dilate``, >= 0 inside, either winding.

    Faces are the last axis and every step works on [F] columns: numpy loops over a short last axis cost ~10x
    the arithmetic."""
    x, y = (lx[:, 0], lx[:, 1], lx[:, 2]), (ly[:, 0], ly[:, 1], ly[:, 2])
    sign = np.sign((x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0]))
    out = np.empty((9, len(lx)), np.float32)
    for k in range(3):
        n = (k + 1) % 3
        ea, eb = y[k] - y[n], x[n] - x[k]
        scale = sign / np.maximum(np.hypot(ea, eb), 1e-9)
        ea, eb = ea * scale, eb * scale
        out[k], out[3 + k], out[6 + k] = ea, eb, dilate - (ea * x[k] + eb * y[k])
    return out


def _fill_template(best: np.ndarray, keys: np.ndarray, coef: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                   bw: np.ndarray, bh: np.ndarray, side: int, w: int) -> None:
    """Faces whose bounding box fits ``side`` x ``side``: every template pixel against every face at once.

    Faces are the last (long) axis of [side, side, F]. Each edge function ``a x + b y + c`` is a row term ``a x``
    plus a column term ``b y + c`` ([side, F] each), so the full-size work per edge is one broadcast add; pixels
    outside a face's box get -inf in its first edge's terms, which folds the box test into the same comparison."""
    n = coef.shape[1]
    r = np.arange(side, dtype=np.float32)[:, None]  # [side, 1]
    ax = np.where(r < bw, coef[0] * r, -np.inf).astype(np.float32)  # [side, F]
    by = np.where(r < bh, coef[3] * r + coef[6], -np.inf).astype(np.float32)
    dist = by[:, None, :] + ax[None, :, :]  # [side (y), side (x), F]
    tmp = np.empty_like(dist)
    for k in (1, 2):
        np.add((coef[3 + k] * r + coef[6 + k])[:, None, :], (coef[k] * r)[None, :, :], out=tmp)
        np.minimum(dist, tmp, out=dist)
    t, f = np.divmod(np.flatnonzero(dist >= 0), n)
    ty, tx = np.divmod(np.arange(side * side, dtype=np.int64), side)
    np.minimum.at(best, (y0 * w + x0)[f] + (ty * w + tx)[t], keys[f])


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
