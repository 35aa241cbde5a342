"""Mesh files as other tools read them: world space y-up by default (upright in Blender), the camera's axes with
``--mesh-space camera``, each person in their overlay colour (GLB materials, PLY vertex colours, OBJ + MTL), GLB
files that the Khronos glTF validator passes with no error and no warning, and a full disk that stops the mesh
export cleanly (no partial file, an error that says so)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import app.paths as app_paths
from app.export_mesh import MeshExporter
from app.render.colors import track_color
from engine.errors import OutputError
from engine.postprocess import people_to_meshes
from engine.types import Letterbox, People

GLTF_VALIDATOR = "gltf-validator@2.0.0-dev.3.10"
HEAD, L_ANKLE, R_ANKLE = 15, 7, 8  # SMPL joint order
MTL_NAME = "people.mtl"


def srgb_to_linear(c: float) -> float:
    """The sRGB transfer function (IEC 61966-2-1): glTF colour factors are linear."""
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


@pytest.fixture(scope="module")
def scene(body):
    """Two upright people facing the camera (camera axes: y down), 5 m away, one of them 1 m to the right."""
    n = 2
    go = np.zeros((n, 3), np.float32)
    go[:, 0] = np.pi
    people = People(center_preds=np.zeros((n, 2), np.float32), center_confs=np.full(n, 0.5, np.float32),
                    cam=np.array([[0.3, 0.0, 0.0], [0.3, 0.5, 0.0]], np.float32), global_orient=go,
                    body_pose=np.zeros((n, 69), np.float32), betas=np.zeros((n, 10), np.float32),
                    cam_trans=np.array([[0, 0, 5], [1, 0, 5]], np.float32), track_ids=np.array([4, 7], np.int64))
    return people, people_to_meshes(people, body, Letterbox.for_frame(240, 320, 256))


def obj_vertices(path: Path) -> np.ndarray:
    return np.array([[float(x) for x in ln.split()[1:4]] for ln in path.read_text().splitlines()
                     if ln.startswith("v ")])


def test_world_space_is_y_up_and_camera_space_is_kept_on_request(tmp_path, scene):
    people, meshes = scene
    trans = people.cam_trans[1]
    head, ankles = meshes.joints[1, HEAD] + trans, meshes.joints[1, [L_ANKLE, R_ANKLE]] + trans
    assert head[1] < ankles[:, 1].min()  # the camera's y points down: the head has the smaller y
    (tmp_path / "w").mkdir()
    (_, world) = MeshExporter(tmp_path / "w", "obj").add(0, "c", people, meshes)
    v = obj_vertices(world)
    assert abs(v[:, 1].max() - -head[1]) < 0.3  # top of the mesh = the head
    assert abs(v[:, 1].min() - -ankles[:, 1].max()) < 0.3  # bottom = the feet
    np.testing.assert_allclose(v, (meshes.vertices[1] + trans) * [1, -1, -1], atol=1e-4)  # a rotation about x
    assert "y up" in world.read_text().splitlines()[0]
    (tmp_path / "c").mkdir()
    (_, cam) = MeshExporter(tmp_path / "c", "obj", space="camera").add(0, "c", people, meshes)
    np.testing.assert_allclose(obj_vertices(cam), meshes.vertices[1] + trans, atol=1e-4)


def read_ply(path: Path) -> tuple[list[str], np.ndarray]:
    raw = path.read_bytes()
    header, _, data = raw.partition(b"end_header\n")
    lines = header.decode().splitlines()
    n = int(next(ln.split()[-1] for ln in lines if ln.startswith("element vertex")))
    rec = np.frombuffer(data, [("xyz", "<f4", (3,)), ("rgb", "u1", (3,))], n)
    return lines, rec


def overlay_rgb(track_id: int) -> list[int]:
    b, g, r = track_color(track_id)
    return [r, g, b]


def test_ply_vertices_carry_the_overlay_colour(tmp_path, scene):
    people, meshes = scene
    files = MeshExporter(tmp_path, "ply").add(3, "c", people, meshes)
    for path, tid in zip(files, people.track_ids):
        lines, rec = read_ply(path)
        assert {"property uchar red", "property uchar green", "property uchar blue"} <= set(lines)
        assert (rec["rgb"] == overlay_rgb(int(tid))).all()
    assert overlay_rgb(4) != overlay_rgb(7)


def test_obj_names_a_material_per_person_from_people_mtl(tmp_path, scene):
    people, meshes = scene
    files = MeshExporter(tmp_path, "obj").add(3, "c", people, meshes)
    mtl = (tmp_path / MTL_NAME).read_text()
    kd = {}
    for block in mtl.split("newmtl ")[1:]:
        name, *rest = block.splitlines()
        kd[name] = [float(x) for ln in rest if ln.startswith("Kd ") for x in ln.split()[1:]]
    for path, tid in zip(files, people.track_ids):
        text = path.read_text()
        assert f"mtllib {MTL_NAME}" in text
        material = next(ln.split()[1] for ln in text.splitlines() if ln.startswith("usemtl "))
        np.testing.assert_allclose(kd[material], np.array(overlay_rgb(int(tid))) / 255, atol=1e-3)


def read_glb(path: Path) -> dict:
    raw = path.read_bytes()
    jlen = struct.unpack_from("<I", raw, 12)[0]
    return json.loads(raw[20:20 + jlen])


def test_glb_gives_every_person_a_material_in_their_colour(tmp_path, scene):
    people, meshes = scene
    (glb,) = MeshExporter(tmp_path, "glb").add(3, "c", people, meshes)
    doc = read_glb(glb)
    assert len(doc["materials"]) == 2
    for node, tid in zip(doc["nodes"], people.track_ids):
        prim = doc["meshes"][node["mesh"]]["primitives"][0]
        factor = doc["materials"][prim["material"]]["pbrMetallicRoughness"]["baseColorFactor"]
        expected = [srgb_to_linear(c / 255) for c in overlay_rgb(int(tid))]
        np.testing.assert_allclose(factor, [*expected, 1.0], atol=1e-6)


@pytest.fixture(scope="module")
def gltf_validator(tmp_path_factory) -> Path:
    """The Khronos glTF validator from npm, installed into a temporary folder (skipped with the reason when node or
    npm is missing or the registry cannot be reached)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: apt-get install -y nodejs npm")
    folder = tmp_path_factory.mktemp("gltf-validator")
    try:
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", GLTF_VALIDATOR], cwd=folder,
                           capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install gltf-validator timed out")
    if p.returncode != 0:
        pytest.skip(f"npm install {GLTF_VALIDATOR} failed: {p.stderr.strip()[-300:]}")
    script = folder / "validate.js"
    script.write_text(
        "const v = require('gltf-validator'); const fs = require('fs');\n"
        "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), {maxIssues: 100})\n"
        "  .then(r => console.log(JSON.stringify(r.issues)));\n")
    return script


def test_glb_passes_the_khronos_validator(tmp_path, scene, gltf_validator):
    people, meshes = scene
    (glb,) = MeshExporter(tmp_path, "glb").add(3, "c", people, meshes)
    p = subprocess.run(["node", str(gltf_validator), str(glb)], capture_output=True, text=True, timeout=120,
                       cwd=gltf_validator.parent)
    assert p.returncode == 0, p.stderr
    issues = json.loads(p.stdout)
    assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), issues["messages"]


class FullDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, path, room: int) -> None:
        self.f = open(path, "wb")  # noqa: SIM115
        self.room = room

    def write(self, b) -> int:
        data = bytes(b)
        if len(data) > self.room:
            self.f.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.mark.parametrize("fmt", ["obj", "ply", "glb"])
def test_full_disk_stops_the_export_without_partial_files(tmp_path, scene, monkeypatch, fmt):
    people, meshes = scene
    exporter = MeshExporter(tmp_path, fmt)
    first = exporter.add(0, "c", people, meshes)
    monkeypatch.setattr(app_paths, "open", lambda p, mode="r": FullDisk(p, 1000), raising=False)
    assert exporter.add(1, "c", people, meshes) == []  # no exception: the other outputs go on
    assert isinstance(exporter.error, OutputError) and "disk full" in str(exporter.error)
    assert f"stopped after {len(first)} files" in str(exporter.error)
    monkeypatch.undo()
    assert exporter.add(2, "c", people, meshes) == []  # stopped for good: no gaps that look complete
    left = sorted(f.name for f in tmp_path.iterdir())
    assert not [n for n in left if ".tmp" in n], left
    assert left == sorted([p.name for p in first] + ([MTL_NAME] if fmt == "obj" else []))
