"""Per-frame, per-person mesh files (``--export-mesh DIR``): OBJ (text, universal) or PLY (binary, compact).

Vertices are written in camera space (``root-aligned vertices + cam_trans``), so the meshes of one frame load into
Blender/MeshLab in their relative positions. Axes are the camera's (x right, y down, z forward); the files say so
in a header comment. Names: ``<stem>_f<frame:06d>_id<track>.<ext>``. Always the full-resolution mesh.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.types import Meshes, People

log = logging.getLogger(__name__)

FORMATS = ("obj", "ply")


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


class MeshExporter:
    """Writes every person of every frame. Args: out_dir (checked writable), fmt ``obj``/``ply``."""

    def __init__(self, out_dir: Path, fmt: str = "obj") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"mesh format must be one of {FORMATS}, got {fmt!r}")
        self.out_dir = out_dir
        self.fmt = fmt
        self.files_written = 0

    def add(self, frame_index: int, stem: str, people: People, meshes: Meshes | None) -> list[Path]:
        if meshes is None or len(meshes) == 0:
            return []
        out = []
        write = write_obj if self.fmt == "obj" else write_ply
        for i, tid in enumerate(people.track_ids):
            verts = meshes.vertices[i] + people.cam_trans[i][None, :]
            name = f"{stem}_f{frame_index:06d}_id{int(tid)}.{self.fmt}"
            out.append(write(self.out_dir / name, verts.astype(np.float32), meshes.faces,
                             "InstanceHMR mesh, camera space (x right, y down, z forward), metres"))
        self.files_written += len(out)
        return out
