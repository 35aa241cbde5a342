"""The CPU overlay renderer, the live-mesh simplification and the result writers (npz, OBJ/PLY/GLB)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.export_mesh import MeshExporter
from app.outputs import NPZ_KEYS, NpzSink
from app.render import CenterAnnotator, MeshAnnotator, Scene, SkeletonAnnotator, render_overlay
from app.render.colors import track_color
from app.render.lod import simplify_faces
from app.render.projection import project_points
from app.render.raster import visible_faces
from engine.postprocess import people_to_meshes
from engine.types import Letterbox, People


def make_people(cams: list[tuple[float, float, float]], ids: list[int] | None = None) -> People:
    n = len(cams)
    go = np.zeros((n, 3), np.float32)
    go[:, 0] = np.pi  # upright, facing the camera (y down)
    cam = np.array(cams, np.float32).reshape(n, 3)
    return People(center_preds=np.zeros((n, 2), np.float32), center_confs=np.full(n, 0.5, np.float32), cam=cam,
                  global_orient=go, body_pose=np.zeros((n, 69), np.float32), betas=np.zeros((n, 10), np.float32),
                  cam_trans=np.zeros((n, 3), np.float32),
                  track_ids=np.array(ids if ids is not None else list(range(n)), np.int64))


def scene_for(body, people: People, h: int = 240, w: int = 320) -> Scene:
    box = Letterbox.for_frame(h, w, 256)
    return Scene(people, people_to_meshes(people, body, box), box)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def test_mesh_drawn_where_projected(body):
    sc = scene_for(body, make_people([(0.4, 0.3, 0.0)]))
    frame = np.full((240, 320, 3), 50, np.uint8)
    out = render_overlay(frame, sc, [MeshAnnotator(opacity=1.0)])
    assert out is not frame and np.all(frame == 50)  # input untouched
    mask = changed(out, frame)
    px, _ = project_points(sc.meshes.vertices, sc.people.cam, sc.box)
    cx, cy = px[0].mean(0)
    ys, xs = np.nonzero(mask)
    assert 0.01 * mask.size < mask.sum() < 0.5 * mask.size
    assert abs(xs.mean() - cx) < 15 and abs(ys.mean() - cy) < 25
    assert xs.min() >= px[0, :, 0].min() - 2 and xs.max() <= px[0, :, 0].max() + 2
    # shaded in the track's colour: the brightest pixels are a scaled version of it
    col = np.array(track_color(0), float)
    bright = out[mask].astype(float)
    best = bright[bright.sum(1).argmax()]
    assert np.corrcoef(best, col)[0, 1] > 0.95


def test_culling_keeps_the_silhouette(body):
    sc = scene_for(body, make_people([(0.45, 0.0, 0.0)]))
    frame = np.zeros((240, 320, 3), np.uint8)
    a = changed(render_overlay(frame, sc, [MeshAnnotator(1.0, cull=True)]), frame)
    b = changed(render_overlay(frame, sc, [MeshAnnotator(1.0, cull=False)]), frame)
    assert (a ^ b).sum() < 0.03 * b.sum()


def test_nearer_person_occludes_farther(body):
    # same place on screen; id 1 is nearer (larger scale) and must cover the middle
    sc = scene_for(body, make_people([(0.35, 0.0, 0.0), (0.5, 0.0, 0.0)], ids=[0, 1]))
    frame = np.zeros((240, 320, 3), np.uint8)
    out = render_overlay(frame, sc, [MeshAnnotator(1.0, ambient=1.0)])
    px = out[120, 160].astype(int)  # torso centre, BGR, no shading
    near, far = np.array(track_color(1)), np.array(track_color(0))
    assert np.abs(px - near).sum() < np.abs(px - far).sum()


def test_opacity_blends_and_zero_is_a_no_op(body):
    sc = scene_for(body, make_people([(0.4, 0.0, 0.0)]))
    frame = np.full((240, 320, 3), 200, np.uint8)
    full = render_overlay(frame, sc, [MeshAnnotator(1.0)])
    half = render_overlay(frame, sc, [MeshAnnotator(0.5)])
    none = render_overlay(frame, sc, [MeshAnnotator(0.0)])
    assert np.array_equal(none, frame)
    m = changed(full, frame)
    expected = (full[m].astype(float) + frame[m]) / 2
    assert np.abs(half[m].astype(float) - expected).mean() < 2.0


def test_people_off_screen_and_empty_scene(body):
    frame = np.zeros((240, 320, 3), np.uint8)
    far_away = scene_for(body, make_people([(0.3, 5.0, 5.0)]))
    ann = MeshAnnotator(1.0)
    assert np.array_equal(render_overlay(frame, far_away, [ann, SkeletonAnnotator(), CenterAnnotator()]), frame)
    assert ann.last_faces_drawn == 0
    empty = scene_for(body, People.empty())
    assert np.array_equal(render_overlay(frame, empty, [MeshAnnotator(), SkeletonAnnotator(), CenterAnnotator()]),
                          frame)


def test_skeleton_and_centers_draw(body):
    sc = scene_for(body, make_people([(0.4, 0.0, 0.0)]))
    frame = np.zeros((240, 320, 3), np.uint8)
    assert changed(render_overlay(frame, sc, [SkeletonAnnotator()]), frame).sum() > 200
    assert changed(render_overlay(frame, sc, [CenterAnnotator()]), frame).sum() > 50


def test_simplified_faces_index_the_full_mesh(body):
    with torch.inference_mode():
        rest = body(torch.zeros(1, 3), torch.zeros(1, 69)).vertices[0].numpy()
    f = simplify_faces(rest, body.faces, 1000)
    assert 600 <= len(f) <= 1000 and f.max() < body.num_vertices and f.dtype == np.int32
    assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]))
    assert simplify_faces(rest, body.faces, 10**6) is not None  # small enough: returned as is
    sc = scene_for(body, make_people([(0.45, 0.0, 0.0)]))
    frame = np.zeros((240, 320, 3), np.uint8)
    full = changed(render_overlay(frame, sc, [MeshAnnotator(1.0)]), frame)
    low = changed(render_overlay(frame, sc, [MeshAnnotator(1.0, faces=f)]), frame)
    assert (full ^ low).sum() < 0.1 * full.sum()


def test_npz_sink_video_layout(tmp_path, body):
    sink = NpzSink(tmp_path, per_frame=False, stem="clip", save_verts=True)
    box = Letterbox.for_frame(240, 320, 256)
    for f, n in enumerate([2, 0, 1]):
        p = make_people([(0.3, 0.1 * i, 0.0) for i in range(n)])
        sink.add(f, "clip", p, people_to_meshes(p, body, box))
    (path,) = sink.close()
    d = np.load(path)
    assert path.name == "clip.npz"
    assert d["frame_ids"].tolist() == [0, 0, 2] and int(d["num_frames"]) == 3
    for k in NPZ_KEYS:
        assert d[k].shape[0] == 3, k
    assert d["verts"].shape == (3, body.num_vertices, 3) and d["smpl_thetas"].shape == (3, 72)


def test_mesh_export_obj_and_ply(tmp_path, body):
    p = make_people([(0.3, 0.0, 0.0), (0.3, 0.5, 0.0)], ids=[4, 7])
    p.cam_trans[:] = [[0, 0, 5], [1, 0, 5]]
    meshes = people_to_meshes(p, body, Letterbox.for_frame(240, 320, 256))
    objs = MeshExporter(tmp_path, "obj").add(12, "clip", p, meshes)
    assert [o.name for o in objs] == ["clip_f000012_id4.obj", "clip_f000012_id7.obj"]
    lines = objs[1].read_text().splitlines()
    v = np.array([[float(x) for x in s.split()[1:]] for s in lines if s.startswith("v ")])
    assert len(v) == body.num_vertices and abs(v[:, 0].mean() - (meshes.vertices[1, :, 0].mean() + 1)) < 1e-3
    assert sum(s.startswith("f ") for s in lines) == len(body.faces)
    (ply,) = MeshExporter(tmp_path, "ply").add(0, "x", p.select([0]), people_to_meshes(p.select([0]), body,
                                                                                        Letterbox.for_frame(9, 9, 256)))
    raw = ply.read_bytes()
    header, _, data = raw.partition(b"end_header\n")
    assert b"element vertex %d" % body.num_vertices in header
    assert len(data) == body.num_vertices * 15 + len(body.faces) * 13  # xyz float32 + rgb uchar; face records


def test_small_people_use_the_coarse_level(body):
    with torch.inference_mode():
        rest = body(torch.zeros(1, 3), torch.zeros(1, 69)).vertices[0].numpy()
    fine, coarse = simplify_faces(rest, body.faces, 1600), simplify_faces(rest, body.faces, 600)
    frame = np.zeros((480, 640, 3), np.uint8)
    ann = MeshAnnotator(1.0, faces=fine, coarse_faces=coarse, coarse_below_px=150)
    drawn = {}
    for s in (0.12, 0.5):  # ~70 px and ~300 px tall
        render_overlay(frame, scene_for(body, make_people([(s, 0.0, 0.0)]), 480, 640), [ann])
        drawn[s] = ann.last_faces_drawn
    assert drawn[0.12] <= len(coarse) < drawn[0.5] <= len(fine)


def read_glb(path) -> tuple[dict, bytes]:
    """Minimal independent GLB reader: header, JSON chunk, BIN chunk, with the spec's length checks."""
    import json
    import struct

    raw = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", raw, 0)
    assert (magic, version, total) == (b"glTF", 2, len(raw))
    jlen, jtype = struct.unpack_from("<I4s", raw, 12)
    assert jtype == b"JSON" and jlen % 4 == 0
    doc = json.loads(raw[20:20 + jlen])
    blen, btype = struct.unpack_from("<I4s", raw, 20 + jlen)
    assert btype == b"BIN\0" and blen % 4 == 0 and 28 + jlen + blen == len(raw)
    return doc, raw[28 + jlen:]


def test_mesh_export_glb_one_scene_per_frame(tmp_path, body):
    p = make_people([(0.3, 0.0, 0.0), (0.3, 0.5, 0.0)], ids=[4, 7])
    p.cam_trans[:] = [[0, 0, 5], [1, 0, 5]]
    meshes = people_to_meshes(p, body, Letterbox.for_frame(240, 320, 256))
    (glb,) = MeshExporter(tmp_path, "glb").add(3, "clip", p, meshes)
    assert glb.name == "clip_f000003.glb"
    doc, blob = read_glb(glb)
    assert [n["name"] for n in doc["nodes"]] == ["id4", "id7"]

    def accessor(i: int) -> np.ndarray:
        a = doc["accessors"][i]
        view = doc["bufferViews"][a["bufferView"]]
        dtype, width = {5126: ("<f4", 3), 5125: ("<u4", 1)}[a["componentType"]]
        arr = np.frombuffer(blob, dtype, a["count"] * width, view["byteOffset"])
        return arr.reshape(a["count"], width) if width > 1 else arr

    faces = accessor(doc["meshes"][1]["primitives"][0]["indices"]).reshape(-1, 3)
    np.testing.assert_array_equal(faces, body.faces)
    attrs = doc["meshes"][1]["primitives"][0]["attributes"]
    pos, nrm = accessor(attrs["POSITION"]), accessor(attrs["NORMAL"])
    expected = (meshes.vertices[1] + [1, 0, 5]) * [1, -1, -1]  # camera axes -> glTF axes (y up, -z forward)
    np.testing.assert_allclose(pos, expected, atol=1e-5)
    np.testing.assert_allclose(doc["accessors"][attrs["POSITION"]]["min"], pos.min(0), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-4)
    # glTF front faces are counter-clockwise: the axis flip is a rotation, so the body keeps a positive volume
    # (outward winding), and the vertex normals agree with the faces around them.
    tri = pos[faces]
    assert np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6 > 0.01  # m^3
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.mean(np.einsum("ij,ij->i", fn / np.linalg.norm(fn, axis=1, keepdims=True), nrm[faces[:, 0]]) > 0) > 0.95
    # An independent glTF loader agrees on the geometry.
    o3d = pytest.importorskip("open3d")
    mesh = o3d.io.read_triangle_mesh(str(glb))
    assert len(mesh.triangles) == 2 * len(body.faces)
    np.testing.assert_allclose(np.asarray(mesh.vertices).mean(0), np.concatenate(
        [(meshes.vertices[i] + p.cam_trans[i]) * [1, -1, -1] for i in range(2)]).mean(0), atol=1e-4)


def reference_visible(tri: np.ndarray, depth: np.ndarray, h: int, w: int, dilate: float) -> np.ndarray:
    """Brute force: every pixel centre against every face; nearest covering face wins, ties to the lower index.

    Covered = within ``dilate`` of the inside of all three edge lines and of the face's bounding box (the box
    bounds the long spikes that offset edge lines make at sharp corners)."""
    ys, xs = np.mgrid[0:h, 0:w]
    best = np.full((h, w), -1)
    best_depth = np.full((h, w), np.inf)
    for f, (t, z) in enumerate(zip(tri.astype(np.float64), depth)):
        e1, e2 = t[1] - t[0], t[2] - t[0]
        area = e1[0] * e2[1] - e1[1] * e2[0]
        if area == 0:
            continue
        lo, hi = t.min(0) - dilate, t.max(0) + dilate
        inside = (xs >= lo[0]) & (xs <= hi[0]) & (ys >= lo[1]) & (ys <= hi[1])
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            edge = b - a
            dist = (edge[0] * (ys - a[1]) - edge[1] * (xs - a[0])) / np.hypot(*edge) * np.sign(area)
            inside &= dist >= -dilate
        win = inside & (z < best_depth)
        best[win], best_depth[win] = f, z
    return best


@pytest.mark.parametrize(("dilate", "spread"), [(0.0, 5), (0.5, 5), (0.5, 7.5)])
def test_vectorised_raster_matches_brute_force(dilate, spread):
    rng = np.random.default_rng(3)
    h, w = 40, 56
    centres = rng.uniform([-4, -4], [w + 4, h + 4], (120, 1, 2))
    # both windings, some off the raster; bounding boxes up to 11 or 16 px so that every face takes the numpy path
    # (every template size, the largest included)
    tri = (centres + rng.uniform(-spread, spread, (120, 3, 2))).astype(np.float32)
    depth = rng.uniform(1, 5, 120).astype(np.float32)
    got = visible_faces(tri, depth, h, w, big_px=10**9, dilate=dilate)
    want = reference_visible(tri, depth, h, w, dilate)
    # float32 edge functions may flip a centre lying within ~1e-5 px of an edge; nothing else may differ
    assert (got != want).mean() < 0.002 and (want >= 0).mean() > 0.2


def test_large_faces_go_through_opencv_with_the_same_visibility():
    rng = np.random.default_rng(4)
    h, w = 120, 160
    centres = rng.uniform([0, 0], [w, h], (60, 1, 2))
    tri = (centres + rng.normal(0, 18.0, (60, 3, 2))).astype(np.float32)
    depth = rng.uniform(1, 5, 60).astype(np.float32)
    numpy_only = visible_faces(tri, depth, h, w, big_px=10**9)
    mixed = visible_faces(tri, depth, h, w, big_px=64)  # most of these faces are large
    covered = (numpy_only >= 0) | (mixed >= 0)
    # the two coverage rules differ only along edges; inside, the same (nearest) face is seen
    assert (numpy_only[covered] == mixed[covered]).mean() > 0.95


def test_a_crowd_renders_everyone_in_their_colour(body):
    n = 40
    rng = np.random.default_rng(5)
    cams = [(0.08, float(x), float(y)) for x, y in rng.uniform(-0.8, 0.8, (n, 2))]
    sc = scene_for(body, make_people(cams, ids=list(range(n))), 480, 640)
    frame = np.zeros((480, 640, 3), np.uint8)
    ann = MeshAnnotator(1.0, ambient=1.0)  # unshaded: every drawn pixel is exactly a track colour
    out = render_overlay(frame, sc, [ann])
    drawn = out[changed(out, frame)].astype(int)
    palette = np.array([track_color(i) for i in range(n)])
    colours = {tuple(c) for c in np.unique(drawn, axis=0)}
    assert colours <= {tuple(c) for c in palette}
    # nearly everyone is visible somewhere (a few may be fully hidden behind nearer people)
    assert len(colours) >= 0.8 * len({tuple(c) for c in palette})
    assert ann.last_faces_drawn > 0
