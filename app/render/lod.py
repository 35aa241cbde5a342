"""Lower-resolution face lists for live overlays: quadric-error edge collapses on the rest pose.

Live rendering cost grows with the drawn faces, while a person 100 px tall on screen covers only ~1000 pixels: most
of a full body's faces then cover a pixel or two each. Each level here is a face list that still indexes the
ORIGINAL vertices (a collapse moves a vertex onto a neighbour, it never makes a new one), so the body model runs
unchanged, the level is computed once, and exports always use the full mesh.

Why edge collapses and not vertex clustering (what this module did before): clustering on a grid merges vertices
that are close in space but not along the surface (the inner thighs, an arm and the torso), which left legs broken
apart below ~800 faces. A collapse merges two neighbours on the surface only, the one that moves the surface least
first (the quadric error of Garland and Heckbert, 1997: the summed squared distances to the planes of the faces
around both vertices, plus a small edge-length term so flat regions keep even triangles), and is refused when it
would fold a face over or make the mesh non-manifold. On the street clip a 400-face level drawn this way differs
from the full mesh's silhouette about as much as the 800-face clustered level did.

The collapse order of a mesh is computed once per process (cached per mesh: ~0.2-0.5 s for Anny's 2,454 faces,
~1.5 s for SMPL's 13,776 on one core) and every budget is a prefix of it, so levels are nested and any new budget
(the live-faces setting) costs one replay.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.body import BodyModel

log = logging.getLogger(__name__)

TINY_FACES = 400  # the smallest level (people under ~120 px): same silhouette error as the old 800-face level
_LENGTH_WEIGHT = 0.05  # edge-length term, relative to the mean face area (keeps flat regions' triangles even)
_MIN_COS = 0.2  # a collapse may turn a neighbouring face by at most ~78 degrees
_ORDERS: dict[str, np.ndarray] = {}  # mesh digest -> collapse order
_MAX_CACHED = 8


def simplify_faces(rest_verts: np.ndarray, faces: np.ndarray, max_faces: int) -> np.ndarray:
    """Faces [F', 3] int32 (F' <= max_faces, indices into ``rest_verts``); the input faces if already small enough.

    Closed meshes lose two faces per collapse, so F' is ``max_faces`` or one less; a mesh that cannot be reduced
    that far (every remaining collapse refused) stops at its smallest valid level.
    """
    faces = np.asarray(faces, np.int32)
    if len(faces) <= max_faces:
        return faces
    order = collapse_order(rest_verts, faces)
    out = replay_collapses(faces, order, max_faces)
    log.info("live mesh: %d -> %d faces", len(faces), len(out))
    return out


def replay_collapses(faces: np.ndarray, order: np.ndarray, max_faces: int) -> np.ndarray:
    """The faces left after the first collapses of ``order`` that bring a closed mesh to ``max_faces``."""
    faces = np.asarray(faces, np.int64)
    k = min(max(0, -(-(len(faces) - max_faces) // 2)), len(order))
    rep = np.arange(int(faces.max()) + 1 if len(faces) else 0)
    for u, v in order[:k][::-1]:  # last collapse first, so a chain u -> v -> w sends u to w
        rep[u] = rep[v]
    f = rep[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return f[ok].astype(np.int32)


def collapse_order(rest_verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[K, 2] int64 half-edge collapses (vertex u moves onto v), cheapest first; cached per mesh."""
    verts = np.ascontiguousarray(rest_verts, np.float64)
    faces = np.ascontiguousarray(faces, np.int64)
    key = hashlib.sha1(verts.tobytes() + b"|" + faces.tobytes()).hexdigest()
    order = _ORDERS.get(key)
    if order is None:
        order = _compute_order(verts, faces)
        if len(_ORDERS) >= _MAX_CACHED:
            _ORDERS.pop(next(iter(_ORDERS)))
        _ORDERS[key] = order
    return order


def _compute_order(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    nv = len(verts)
    a, b, c = (verts[faces[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    area = np.linalg.norm(n, axis=1)
    unit = n / np.maximum(area, 1e-30)[:, None]
    plane = np.concatenate([unit, -(unit * a).sum(1, keepdims=True)], axis=1)  # [F, 4]: (n, d), n.x + d = 0
    iu = np.triu_indices(4)
    face_q = (area[:, None, None] * plane[:, :, None] * plane[:, None, :])[:, iu[0], iu[1]]  # [F, 10] upper 4x4
    q_arr = np.zeros((nv, 10))
    for k in range(3):
        np.add.at(q_arr, faces[:, k], face_q)
    length_w = _LENGTH_WEIGHT * float(area.mean()) if len(area) else 0.0
    quad = q_arr.tolist()
    pos = verts.tolist()
    tri = faces.tolist()
    vfaces: list[set[int]] = [set() for _ in range(nv)]
    nbr: list[set[int]] = [set() for _ in range(nv)]
    edge_faces: dict[tuple[int, int], int] = {}
    for i, (x, y, z) in enumerate(tri):
        for p, q in ((x, y), (y, z), (z, x)):
            vfaces[p].add(i)
            nbr[p].add(q)
            nbr[q].add(p)
            e = (p, q) if p < q else (q, p)
            edge_faces[e] = edge_faces.get(e, 0) + 1
    fixed = [False] * nv  # vertices on a boundary or a non-manifold edge never move: the outline stays
    for (p, q), count in edge_faces.items():
        if count != 2:
            fixed[p] = fixed[q] = True

    def cost(u: int, v: int) -> float:
        qu, qv = quad[u], quad[v]
        x, y, z = pos[v]
        pu = pos[u]
        return ((qu[0] + qv[0]) * x * x + (qu[4] + qv[4]) * y * y + (qu[7] + qv[7]) * z * z + qu[9] + qv[9]
                + 2.0 * ((qu[1] + qv[1]) * x * y + (qu[2] + qv[2]) * x * z + (qu[3] + qv[3]) * x
                         + (qu[5] + qv[5]) * y * z + (qu[6] + qv[6]) * y + (qu[8] + qv[8]) * z)
                + length_w * ((pu[0] - x) ** 2 + (pu[1] - y) ** 2 + (pu[2] - z) ** 2))

    stamp = [0] * nv
    alive = [True] * nv
    heap = [(cost(u, v), u, v, 0, 0) for u in range(nv) if not fixed[u] for v in sorted(nbr[u])]
    heapq.heapify(heap)
    order: list[tuple[int, int]] = []
    while heap:
        _, u, v, su, sv = heapq.heappop(heap)
        if not (alive[u] and alive[v]) or su != stamp[u] or sv != stamp[v] or v not in nbr[u]:
            continue  # stale: one end moved or was removed since this entry was pushed
        shared = vfaces[u] & vfaces[v]
        common = nbr[u] & nbr[v]
        if (len(shared) != 2 or len(common) != 2 or len(nbr[u]) + len(nbr[v]) < 7
                or any(len(nbr[w]) <= 3 for w in common)):
            continue  # the link condition (stays a manifold) and no vertex left with fewer than 3 neighbours
        if not _keeps_orientation(pos, tri, vfaces[u] - shared, u, pos[v]):
            continue
        for fi in shared:
            for x in tri[fi]:
                vfaces[x].discard(fi)
        for fi in vfaces[u]:
            f = tri[fi]
            f[f.index(u)] = v
            vfaces[v].add(fi)
        vfaces[u] = set()
        for w in nbr[u]:
            nbr[w].discard(u)
            if w != v:
                nbr[w].add(v)
                nbr[v].add(w)
        nbr[u] = set()
        alive[u] = False
        quad[v] = [x + y for x, y in zip(quad[v], quad[u])]
        stamp[v] += 1
        order.append((u, v))
        for w in sorted(nbr[v]):
            if not fixed[v]:
                heapq.heappush(heap, (cost(v, w), v, w, stamp[v], stamp[w]))
            if not fixed[w]:
                heapq.heappush(heap, (cost(w, v), w, v, stamp[w], stamp[v]))
    return np.array(order, np.int64).reshape(-1, 2)


def _keeps_orientation(pos: list, tri: list, moved: set[int], u: int, target: list) -> bool:
    """True when moving vertex ``u`` to ``target`` turns none of the faces ``moved`` by more than ~78 degrees."""
    for fi in moved:
        pts = [pos[i] for i in tri[fi]]
        n0 = _normal(*pts)
        n1 = _normal(*(target if i == u else pos[i] for i in tri[fi]))
        l0 = (n0[0] ** 2 + n0[1] ** 2 + n0[2] ** 2) ** 0.5
        l1 = (n1[0] ** 2 + n1[1] ** 2 + n1[2] ** 2) ** 0.5
        if l1 <= 1e-15 or n0[0] * n1[0] + n0[1] * n1[1] + n0[2] * n1[2] < _MIN_COS * l0 * l1:
            return False
    return True


def _normal(a: list, b: list, c: list) -> tuple[float, float, float]:
    ux, uy, uz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    vx, vy, vz = c[0] - a[0], c[1] - a[1], c[2] - a[2]
    return (uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx)


def rest_vertices(body: BodyModel) -> np.ndarray:
    """[V, 3] float32 vertices of the body at zero pose and default shape (where levels are computed)."""
    import torch

    with torch.inference_mode():
        return body(torch.zeros(1, 3), torch.zeros(1, 69)).vertices[0].numpy().astype(np.float32)


def tiny_faces(body: BodyModel, max_faces: int = TINY_FACES) -> np.ndarray:
    """The smallest overlay level of ``body``: for people a hundred-odd pixels tall, who cannot show more."""
    return simplify_faces(rest_vertices(body), np.asarray(body.faces), max_faces)
