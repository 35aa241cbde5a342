"""Mesh files (``--export-mesh DIR``): OBJ (text, universal), PLY (binary, compact) or GLB (binary glTF 2.0).

Vertices are the people's placed bodies (``root-aligned vertices + cam_trans``, metres), so the meshes of one frame
load into Blender/MeshLab in their relative positions. Axes (``--mesh-space``):

* ``world`` (default): y up, camera at the origin looking down -z, x right: the camera's axes turned 180 degrees
  about x. Why: Blender, MeshLab and glTF viewers treat +y (glTF) or the file's "up" as up; the camera's own axes
  (y down) imported every person upside down. A rotation, not a mirror, so faces keep their winding.
* ``camera``: OBJ/PLY keep the camera's axes (x right, y down, z forward), as earlier versions wrote them, for tools
  that project the vertices back onto the image. GLB is always in glTF axes (the format defines +y as up).

Each person is coloured as in the video overlay (:mod:`app.render.colors`, by track id), so one person can be
followed across files and matched to the recording: GLB gives every person a material (``baseColorFactor``), PLY
stores per-vertex colours, OBJ names a material from ``people.mtl``, written once into the folder.

OBJ/PLY: one file per frame and person, ``<stem>_f<frame:06d>_id<track>.<ext>``; GLB: one scene per frame,
``<stem>_f<frame:06d>.glb``, with one node per person named ``id<track>``. Always the full-resolution mesh.

Every file is written to a temporary name and renamed, so a result is never half-written. A write that fails (disk
full) removes the partial file and stops this output only; ``error`` says so and the other outputs finish.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import numpy as np

from engine.errors import OutputError
from engine.types import Meshes, People

from .paths import write_atomic
from .render.colors import PALETTE_BGR, track_color

log = logging.getLogger(__name__)

FORMATS = ("obj", "ply", "glb")
MESH_SPACES = ("world", "camera")
CAMERA_TO_WORLD = np.array([1.0, -1.0, -1.0], np.float32)  # x right, y down, z forward -> y up, looking down -z
CAMERA_TO_GLTF = CAMERA_TO_WORLD  # glTF's convention is the same y-up frame
MTL_NAME = "people.mtl"
AXES_NOTE = {"world": "world space (y up, camera at the origin looking down -z), metres",
             "camera": "camera space (x right, y down, z forward), metres"}


def rgb01(track_id: int) -> tuple[float, float, float]:
    """The overlay colour of a track as sRGB in 0..1."""
    b, g, r = track_color(int(track_id))
    return r / 255.0, g / 255.0, b / 255.0


def srgb_to_linear(c: float) -> float:
    """glTF colour factors are linear; the overlay palette is sRGB."""
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def material_name(track_id: int) -> str:
    """The ``people.mtl`` material for a track: one per palette colour, so the file never grows."""
    return "untracked" if track_id < 0 else f"color{int(track_id) % len(PALETTE_BGR)}"


def write_mtl(path: Path) -> Path:
    """One material per overlay colour (``Kd`` in sRGB, as OBJ viewers read it)."""
    lines = ["# InstanceHMR person colours (as in the video overlay)\n"]
    for name, tid in [(material_name(i), i) for i in range(len(PALETTE_BGR))] + [("untracked", -1)]:
        r, g, b = rgb01(tid)
        lines.append(f"newmtl {name}\nKa 0 0 0\nKd {r:.4f} {g:.4f} {b:.4f}\nKs 0.05 0.05 0.05\nNs 10\nillum 2\n\n")
    return write_atomic(path, lambda f: f.write("".join(lines).encode()))


def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, comment: str = "", material: str = "") -> Path:
    head = [f"# {comment}\n"] if comment else []
    if material:
        head.append(f"mtllib {MTL_NAME}\nusemtl {material}\n")
    body = ("".join(f"v {x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in verts.tolist())
            + "".join(f"f {a} {b} {c}\n" for a, b, c in (faces + 1).tolist()))
    return write_atomic(path, lambda f: f.write(("".join(head) + body).encode()))


def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray, comment: str = "",
              color: tuple[float, float, float] | None = None) -> Path:
    header = ["ply", "format binary_little_endian 1.0"]
    if comment:
        header.append(f"comment {comment}")
    header += [f"element vertex {len(verts)}", "property float x", "property float y", "property float z"]
    fields: list[tuple] = [("xyz", "<f4", (3,))]
    if color is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields.append(("rgb", "u1", (3,)))
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    vert_rec = np.empty(len(verts), dtype=fields)
    vert_rec["xyz"] = verts
    if color is not None:
        vert_rec["rgb"] = np.round(np.array(color) * 255).astype(np.uint8)
    face_rec = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["idx"] = faces

    def write(f) -> None:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vert_rec.tobytes())
        f.write(face_rec.tobytes())

    return write_atomic(path, write)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (viewers otherwise shade flat or not at all)."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(verts)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = n / np.maximum(length, 1e-12)
    n[length[:, 0] < 1e-12] = (0.0, 1.0, 0.0)  # unused or degenerate vertices: any unit vector (glTF requires one)
    return n.astype(np.float32)


def write_glb(path: Path, meshes: list[tuple[str, np.ndarray]], faces: np.ndarray, comment: str = "",
              colors: list[tuple[float, float, float]] | None = None) -> Path:
    """One binary glTF 2.0 scene: a node + mesh per ``(name, verts)``, sharing one index buffer.

    Vertices are taken as glTF-space metres; ``colors`` (sRGB 0..1, one per mesh) become one material each.
    Layout: [indices][pos_0][nrm_0][pos_1][nrm_1]..., each view 4-byte aligned, as the spec requires for
    float/uint32 accessors.
    """
    idx = np.ascontiguousarray(faces, "<u4").reshape(-1)
    blobs: list[bytes] = [idx.tobytes()]
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": idx.nbytes, "target": 34963}]
    accessors = [{"bufferView": 0, "componentType": 5125, "count": int(idx.size), "type": "SCALAR",
                  "min": [int(idx.min())] if idx.size else [0], "max": [int(idx.max())] if idx.size else [0]}]
    gl_meshes, nodes, materials = [], [], []
    offset = idx.nbytes
    for k, (name, verts) in enumerate(meshes):
        v = np.ascontiguousarray(verts, "<f4")
        for arr, extra in ((v, {"min": v.min(0).tolist(), "max": v.max(0).tolist()}),
                           (vertex_normals(v, faces), {})):
            views.append({"buffer": 0, "byteOffset": offset, "byteLength": arr.nbytes, "target": 34962})
            accessors.append({"bufferView": len(views) - 1, "componentType": 5126, "count": len(arr),
                              "type": "VEC3", **extra})
            blobs.append(arr.tobytes())
            offset += arr.nbytes
        primitive = {"attributes": {"POSITION": len(accessors) - 2, "NORMAL": len(accessors) - 1}, "indices": 0,
                     "mode": 4}
        if colors is not None:
            linear = [srgb_to_linear(c) for c in colors[k]]
            materials.append({"name": name, "pbrMetallicRoughness": {"baseColorFactor": [*linear, 1.0],
                                                                     "metallicFactor": 0.0,
                                                                     "roughnessFactor": 0.7}})
            primitive["material"] = len(materials) - 1
        gl_meshes.append({"name": name, "primitives": [primitive]})
        nodes.append({"name": name, "mesh": len(gl_meshes) - 1})
    bin_chunk = b"".join(blobs)
    bin_chunk += b"\0" * (-len(bin_chunk) % 4)
    doc = {"asset": {"version": "2.0", "generator": "instancehmr-live",
                     **({"extras": {"comment": comment}} if comment else {})},
           "scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}], "nodes": nodes, "meshes": gl_meshes,
           **({"materials": materials} if materials else {}),
           "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(bin_chunk)}]}
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(bin_chunk)

    def write(f) -> None:
        f.write(struct.pack("<4sII", b"glTF", 2, total))
        f.write(struct.pack("<I4s", len(js), b"JSON") + js)
        f.write(struct.pack("<I4s", len(bin_chunk), b"BIN\0") + bin_chunk)

    return write_atomic(path, write)


class MeshExporter:
    """Writes every person of every frame.

    Args:
        out_dir: the folder (checked writable).
        fmt: ``obj``/``ply``/``glb``.
        space: ``world`` (y up, default) or ``camera`` (OBJ/PLY in the camera's axes).
    """

    def __init__(self, out_dir: Path, fmt: str = "obj", space: str = "world") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"mesh format must be one of {FORMATS}, got {fmt!r}")
        if space not in MESH_SPACES:
            raise ValueError(f"mesh space must be one of {MESH_SPACES}, got {space!r}")
        self.out_dir = out_dir
        self.fmt = fmt
        self.space = space
        self.files_written = 0
        self.error: OutputError | None = None  # set when a write failed; no more files are written after it
        self._mtl_written = False

    def add(self, frame_index: int, stem: str, people: People, meshes: Meshes | None) -> list[Path]:
        if self.error is not None or meshes is None or len(meshes) == 0:
            return []
        try:
            return self._write(frame_index, stem, people, meshes)
        except OutputError as e:
            self.error = OutputError(f"{e}: mesh export stopped after {self.files_written} files")
            log.warning("%s", self.error)
            return []

    def _write(self, frame_index: int, stem: str, people: People, meshes: Meshes) -> list[Path]:
        placed = [meshes.vertices[i] + people.cam_trans[i][None, :] for i in range(len(people))]
        tids = [int(t) for t in people.track_ids]
        if self.fmt == "glb":
            scene = [(f"id{tid}", v * CAMERA_TO_GLTF) for tid, v in zip(tids, placed)]
            path = write_glb(self.out_dir / f"{stem}_f{frame_index:06d}.glb", scene, meshes.faces,
                             "InstanceHMR meshes, glTF axes (y up, camera at the origin looking down -z), metres",
                             colors=[rgb01(t) for t in tids])
            self.files_written += 1
            return [path]
        if self.fmt == "obj" and not self._mtl_written:
            write_mtl(self.out_dir / MTL_NAME)
            self._mtl_written = True
        out = []
        scale = CAMERA_TO_WORLD if self.space == "world" else np.ones(3, np.float32)
        note = f"InstanceHMR mesh, {AXES_NOTE[self.space]}"
        for tid, v in zip(tids, placed):
            verts = (v * scale).astype(np.float32)
            path = self.out_dir / f"{stem}_f{frame_index:06d}_id{tid}.{self.fmt}"
            if self.fmt == "obj":
                out.append(write_obj(path, verts, meshes.faces, note, material=material_name(tid)))
            else:
                out.append(write_ply(path, verts, meshes.faces, note, color=rgb01(tid)))
            self.files_written += 1
        return out

    def close(self) -> None:
        """Nothing is buffered (every file is complete when written); here for the sink interface."""
