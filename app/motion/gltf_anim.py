"""Animated glTF 2.0 (.glb): every track of a clip as a skinned, coloured body with its own skeleton.

Layout per track ``id<N>``:

* A root node ``id<N>`` holding the skeleton (importers such as Blender's make one armature per such node; with
  the joints at the scene root they merge every track into one armature).
* 24 joint nodes named after the SMPL joints, parented as SMPL's tree; their default transforms are the rest
  T-pose (translations = rest offsets, no rotation), and the inverse bind matrices undo the rest positions.
* A root-level mesh node ``id<N>_body`` with the skin (glTF ignores a skinned mesh node's own transform, so it
  has none): the rest mesh at the track's shape, JOINTS_0/WEIGHTS_0 = the 4 largest weights, renormalised.
  Tracks with the same shape share the vertex, normal, skin and index data; only the material differs.
* A material whose base colour is the track's overlay colour (converted from sRGB to glTF's linear factors).
* Channels in the one animation ``motion``: pelvis translation, a rotation per joint (LINEAR, one key per frame
  from the track's first to its last frame, interpolated samples where it was not seen, see
  :mod:`app.motion.tracks`) and, for tracks that do not span the whole clip, a scale: glTF has no
  visibility, so the ``id<N>`` node is scaled to 0 (STEP keys) before the track's first and after its last frame,
  which collapses the skinned mesh to a point.

Time 0 is the clip's first frame; one frame lasts ``1 / fps`` seconds. World frame: y up, metres, the camera at the
origin looking down -z.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import write_atomic
from .rig import Rig
from .tracks import TrackMotion

__all__ = ["AnimTrack", "anim_glb_bytes", "srgb_to_linear", "top4_weights", "write_anim_glb"]

_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass
class AnimTrack:
    """One animated person: motion, the rig at the person's shape and the overlay colour (sRGB, 0..1)."""

    motion: TrackMotion
    rig: Rig
    color_srgb: tuple[float, float, float]


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded 0..1 -> linear 0..1 (glTF colour factors are linear; overlay colours are display values)."""
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def top4_weights(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[V, J] weights -> ([V, 4] uint8 joint indices, [V, 4] float32 weights summing to 1 in float32).

    Unused slots get weight 0 and joint 0; the largest weight absorbs the float32 rounding so each row sums to 1
    as closely as float32 allows (validators check it).
    """
    w = np.asarray(weights, np.float64)
    idx = np.argsort(-w, axis=1, kind="stable")[:, :4]
    val = np.take_along_axis(w, idx, axis=1)
    val = np.where(val > 1e-6, val, 0.0)
    val /= np.maximum(val.sum(1, keepdims=True), 1e-12)
    idx = np.where(val > 0, idx, 0)
    out = val.astype(np.float32)
    out[:, 0] = np.float32(1.0) - out[:, 1:].sum(1, dtype=np.float32)
    return idx.astype(np.uint8), out


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted normals; a vertex in no (or only degenerate) triangles gets +y (NORMAL must be unit)."""
    v = verts.astype(np.float64)
    tri = v[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-12), np.array([0.0, 1.0, 0.0]))
    return n.astype(np.float32)


class _Buffer:
    """The binary chunk with its buffer views and accessors (every view 4-byte aligned)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        pad = -self.size % 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        v = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.parts.append(data)
        self.size += len(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, view: int, component: int, count: int, kind: str, offset: int = 0,
                 bounds: tuple[list, list] | None = None) -> int:
        a = {"bufferView": view, "componentType": component, "count": int(count), "type": kind}
        if offset:
            a["byteOffset"] = offset
        if bounds is not None:
            a["min"], a["max"] = bounds
        self.accessors.append(a)
        return len(self.accessors) - 1

    def add(self, arr: np.ndarray, component: int, kind: str, target: int | None = None,
            bounds: bool = False) -> int:
        arr = np.ascontiguousarray(arr)
        flat = arr.reshape(len(arr), -1)
        b = (flat.min(0).tolist(), flat.max(0).tolist()) if bounds else None
        return self.accessor(self.view(arr.tobytes(), target), component, len(arr), kind, bounds=b)

    def bytes(self) -> bytes:
        data = b"".join(self.parts)
        return data + b"\0" * (-len(data) % 4)


def _mesh_data(buf: _Buffer, rig: Rig) -> dict:
    """Accessors for one rig (shared by every track with that rig)."""
    verts = np.ascontiguousarray(rig.vertices, "<f4")
    joints, weights = top4_weights(rig.weights)
    index_type = (_USHORT, "<u2") if len(verts) < 65535 else (_UINT, "<u4")
    indices = np.ascontiguousarray(rig.faces.reshape(-1), index_type[1])
    ibm = np.tile(np.eye(4), (len(rig.rest_joints), 1, 1))
    ibm[:, :3, 3] = -rig.rest_joints
    ibm_cols = np.ascontiguousarray(np.transpose(ibm, (0, 2, 1)), "<f4")  # glTF matrices are column-major
    return {
        "attributes": {
            "POSITION": buf.add(verts, _FLOAT, "VEC3", _ARRAY_BUFFER, bounds=True),
            "NORMAL": buf.add(_vertex_normals(verts, rig.faces), _FLOAT, "VEC3", _ARRAY_BUFFER),
            "JOINTS_0": buf.add(joints, _UBYTE, "VEC4", _ARRAY_BUFFER),
            "WEIGHTS_0": buf.add(weights, _FLOAT, "VEC4", _ARRAY_BUFFER),
        },
        "indices": buf.add(indices, index_type[0], "SCALAR", _ELEMENT_ARRAY_BUFFER),
        "ibm": buf.add(ibm_cols, _FLOAT, "MAT4"),
    }


def anim_glb_bytes(tracks: list[AnimTrack], fps: float, first_frame: int, last_frame: int,
                   comment: str = "") -> bytes:
    """The .glb file for ``tracks`` over the clip ``first_frame..last_frame`` (source frame indices)."""
    buf = _Buffer()
    shared: dict[int, dict] = {}
    nodes: list[dict] = []
    meshes: list[dict] = []
    materials: list[dict] = []
    skins: list[dict] = []
    samplers: list[dict] = []
    channels: list[dict] = []
    roots: list[int] = []
    for tr in tracks:
        m, rig = tr.motion, tr.rig
        if id(rig) not in shared:
            shared[id(rig)] = _mesh_data(buf, rig)
        data = shared[id(rig)]
        name = f"id{m.track_id}"
        holder = len(nodes)
        nodes.append({"name": name, "children": [holder + 1], "extras": {"track_id": m.track_id}})
        base = len(nodes)
        offsets = rig.offsets
        for j, jname in enumerate(rig.joint_names):
            node: dict = {"name": jname, "translation": [float(x) for x in offsets[j]]}
            kids = [base + c for c, p in enumerate(rig.parents) if p == j]
            if kids:
                node["children"] = kids
            nodes.append(node)
        materials.append({"name": name, "pbrMetallicRoughness": {
            "baseColorFactor": [*(float(c) for c in srgb_to_linear(tr.color_srgb)), 1.0],
            "metallicFactor": 0.0, "roughnessFactor": 0.7}})
        meshes.append({"name": name, "primitives": [{"attributes": data["attributes"], "indices": data["indices"],
                                                     "material": len(materials) - 1, "mode": 4}]})
        skins.append({"name": name, "joints": list(range(base, base + len(rig.joint_names))),
                      "inverseBindMatrices": data["ibm"], "skeleton": holder})
        nodes.append({"name": f"{name}_body", "mesh": len(meshes) - 1, "skin": len(skins) - 1,
                      "extras": {"track_id": m.track_id, "first_frame": m.first_frame, "last_frame": m.last_frame,
                                 "observed_frames": int(m.observed.sum())}})
        roots += [holder, len(nodes) - 1]

        times = (np.arange(m.num_frames) + (m.first_frame - first_frame)) / fps
        t_acc = buf.add(times.astype("<f4"), _FLOAT, "SCALAR", bounds=True)
        out = buf.add(m.root_pos.astype("<f4"), _FLOAT, "VEC3")
        samplers.append({"input": t_acc, "output": out, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": base, "path": "translation"}})
        quats = np.ascontiguousarray(np.transpose(m.local_quats, (1, 0, 2)), "<f4")  # [24, T, 4]
        quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
        view = buf.view(quats.tobytes())
        for j in range(len(rig.joint_names)):
            acc = buf.accessor(view, _FLOAT, m.num_frames, "VEC4", offset=j * m.num_frames * 16)
            samplers.append({"input": t_acc, "output": acc, "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": base + j, "path": "rotation"}})
        keys = _visibility_keys(m, fps, first_frame, last_frame)
        if keys is not None:
            k_in = buf.add(keys[0], _FLOAT, "SCALAR", bounds=True)
            k_out = buf.add(keys[1], _FLOAT, "VEC3")
            samplers.append({"input": k_in, "output": k_out, "interpolation": "STEP"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": holder, "path": "scale"}})

    asset: dict = {"version": "2.0", "generator": "instancehmr-live animation export"}
    asset["extras"] = {"fps": fps, "first_frame": first_frame, "last_frame": last_frame,
                       "axes": "y up, metres, camera at the origin looking down -z",
                       **({"comment": comment} if comment else {})}
    doc: dict = {"asset": asset, "scene": 0, "scenes": [{"name": "clip", "nodes": roots}], "nodes": nodes}
    if tracks:
        doc.update(meshes=meshes, materials=materials, skins=skins,
                   animations=[{"name": "motion", "samplers": samplers, "channels": channels}])
    if buf.accessors:
        doc.update(accessors=buf.accessors, bufferViews=buf.views)
    binary = buf.bytes()
    if binary:
        doc["buffers"] = [{"byteLength": len(binary)}]
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    chunks = struct.pack("<I4s", len(js), b"JSON") + js
    if binary:
        chunks += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def _visibility_keys(m: TrackMotion, fps: float, first_frame: int,
                     last_frame: int) -> tuple[np.ndarray, np.ndarray] | None:
    """STEP scale keys hiding the track outside its life, or None when it spans the clip."""
    times, scales = [], []
    if m.first_frame > first_frame:
        times.append(0.0)
        scales.append(0.0)
    times.append((m.first_frame - first_frame) / fps)
    scales.append(1.0)
    if m.last_frame < last_frame:
        times.append((m.last_frame + 1 - first_frame) / fps)
        scales.append(0.0)
    if len(times) == 1:
        return None
    return (np.asarray(times, "<f4"), np.repeat(np.asarray(scales, "<f4")[:, None], 3, axis=1))


def write_anim_glb(path: Path, tracks: list[AnimTrack], fps: float, first_frame: int, last_frame: int,
                   comment: str = "") -> Path:
    """Write the file atomically; raises :class:`~engine.errors.OutputError` when it cannot be written."""
    return write_atomic(path, anim_glb_bytes(tracks, fps, first_frame, last_frame, comment))
