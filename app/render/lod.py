"""A lower-resolution face list for live overlays (vertex clustering on the rest pose).

Live rendering cost is linear in drawn faces; an SMPL body (13,776 faces) costs about 4x an Anny body. Clustering
the rest-pose vertices on a grid and keeping one representative per cell gives a face list that still indexes the
ORIGINAL vertices, so the body model runs unchanged and the simplification is computed once. Exports always use
the full mesh.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def _cluster(verts: np.ndarray, faces: np.ndarray, cell: float) -> np.ndarray:
    keys = np.floor((verts - verts.min(0)) / cell).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rep = first[inverse.ravel()]  # vertex -> representative vertex of its cell
    f = rep[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[ok]
    _, idx = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    return f[np.sort(idx)].astype(np.int32)


def simplify_faces(rest_verts: np.ndarray, faces: np.ndarray, max_faces: int) -> np.ndarray:
    """Faces [F', 3] (F' <= max_faces, indices into ``rest_verts``); the input faces if already small enough."""
    faces = np.asarray(faces, np.int32)
    if len(faces) <= max_faces:
        return faces
    extent = float(np.ptp(rest_verts, axis=0).max())
    lo, hi = extent / 400.0, extent / 8.0
    best = _cluster(rest_verts, faces, hi)
    for _ in range(12):  # bisect the cell size for the largest face count under the budget
        mid = (lo + hi) / 2
        f = _cluster(rest_verts, faces, mid)
        if len(f) <= max_faces:
            best, hi = f, mid
        else:
            lo = mid
    log.info("live mesh: %d -> %d faces", len(faces), len(best))
    return best
