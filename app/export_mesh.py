"""Mesh files (``--export-mesh DIR``): OBJ (text, universal), PLY (binary, compact) or GLB (binary glTF 2.0).

Vertices are written in camera space (``root-aligned vertices + cam_trans``), so the meshes of one frame load into
Blender/MeshLab in their relative positions. OBJ/PLY keep the camera's axes (x right, y down, z forward) and say so
in a header comment; GLB follows the glTF convention (+y up, camera looking down -z), i.e. y and z flipped, because
glTF viewers assume it. OBJ/PLY: one file per frame and person, ``<stem>_f<frame:06d>_id<track>.<ext>``; GLB: one
scene per frame, ``<stem>_f<frame:06d>.glb``, with one node per person named ``id<track>``. Always the
full-resolution mesh.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np

from engine.types import Meshes, People

log = logging.getLogger(__name__)

FORMATS = ("obj", "ply", "glb")
CAMERA_TO_GLTF = np.array([1.0, -1.0, -1.0], np.float32)  # x right, y down, z forward -> y up, looking down -z


def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, comment: str = "") -> Path:
    lines = [f"# {comment}\n"] if comment else []
    lines.append("".join(f"v {x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in verts.tolist()))
    lines.append("".join(f"f {a} {b} {c}\n" for a, b, c in (faces + 1).tolist()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
    return path


def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray, comment: str = "") -> Path:
    header = ["ply", "format binary_little_endian 1.0"]
    if comment:
        header.append(f"comment {comment}")
    header += [f"element vertex {len(verts)}", "property float x", "property float y", "property float z",
               f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    face_rec = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["idx"] = faces
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(np.ascontiguousarray(verts, "<f4").tobytes())
        f.write(face_rec.tobytes())
    tmp.replace(path)
    return path


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (viewers otherwise shade flat or not at all)."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(verts)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def write_glb(path: Path, meshes: list[tuple[str, np.ndarray]], faces: np.ndarray, comment: str = "") -> Path:
    """One binary glTF 2.0 scene: a node + mesh per ``(name, verts)``, sharing one index buffer.

    Vertices are taken as glTF-space metres. Layout: [indices][pos_0][nrm_0][pos_1][nrm_1]..., each view 4-byte
    aligned, as the spec requires for float/uint32 accessors.
    """
    idx = np.ascontiguousarray(faces, "<u4").reshape(-1)
    blobs: list[bytes] = [idx.tobytes()]
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": idx.nbytes, "target": 34963}]
    accessors = [{"bufferView": 0, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"}]
    gl_meshes, nodes = [], []
    offset = idx.nbytes
    for name, verts in meshes:
        v = np.ascontiguousarray(verts, "<f4")
        for arr, extra in ((v, {"min": v.min(0).tolist(), "max": v.max(0).tolist()}),
                           (vertex_normals(v, faces), {})):
            views.append({"buffer": 0, "byteOffset": offset, "byteLength": arr.nbytes, "target": 34962})
            accessors.append({"bufferView": len(views) - 1, "componentType": 5126, "count": len(arr),
                              "type": "VEC3", **extra})
            blobs.append(arr.tobytes())
            offset += arr.nbytes
        gl_meshes.append({"name": name, "primitives": [{"attributes": {"POSITION": len(accessors) - 2,
                                                                      "NORMAL": len(accessors) - 1},
                                                       "indices": 0, "mode": 4}]})
        nodes.append({"name": name, "mesh": len(gl_meshes) - 1})
    bin_chunk = b"".join(blobs)
    bin_chunk += b"\0" * (-len(bin_chunk) % 4)
    doc = {"asset": {"version": "2.0", "generator": "instancehmr-live",
                     **({"extras": {"comment": comment}} if comment else {})},
           "scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}], "nodes": nodes, "meshes": gl_meshes,
           "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(bin_chunk)}]}
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(bin_chunk)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<4sII", b"glTF", 2, total))
        f.write(struct.pack("<I4s", len(js), b"JSON") + js)
        f.write(struct.pack("<I4s", len(bin_chunk), b"BIN\0") + bin_chunk)
    tmp.replace(path)
    return path


class MeshExporter:
    """Writes every person of every frame. Args: out_dir (checked writable), fmt ``obj``/``ply``/``glb``."""

    def __init__(self, out_dir: Path, fmt: str = "obj") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"mesh format must be one of {FORMATS}, got {fmt!r}")
        self.out_dir = out_dir
        self.fmt = fmt
        self.files_written = 0

    def add(self, frame_index: int, stem: str, people: People, meshes: Meshes | None) -> list[Path]:
        if meshes is None or len(meshes) == 0:
            return []
        if self.fmt == "glb":
            scene = [(f"id{int(tid)}", (meshes.vertices[i] + people.cam_trans[i][None, :]) * CAMERA_TO_GLTF)
                     for i, tid in enumerate(people.track_ids)]
            path = write_glb(self.out_dir / f"{stem}_f{frame_index:06d}.glb", scene, meshes.faces,
                             "InstanceHMR meshes, glTF axes (y up, camera looking down -z), metres")
            self.files_written += 1
            return [path]
        out = []
        write = write_obj if self.fmt == "obj" else write_ply
        for i, tid in enumerate(people.track_ids):
            verts = meshes.vertices[i] + people.cam_trans[i][None, :]
            name = f"{stem}_f{frame_index:06d}_id{int(tid)}.{self.fmt}"
            out.append(write(self.out_dir / name, verts.astype(np.float32), meshes.faces,
                             "InstanceHMR mesh, camera space (x right, y down, z forward), metres"))
        self.files_written += len(out)
        return out
