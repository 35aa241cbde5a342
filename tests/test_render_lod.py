"""Overlay levels of detail: the edge-collapse simplifier, the size-based level choice and the two draw paths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from app.render import MeshAnnotator, Scene, render_overlay
from app.render import mesh as mesh_module
from app.render.lod import (
    TINY_FACES,
    collapse_order,
    replay_collapses,
    rest_vertices,
    simplify_faces,
    tiny_faces,
)
from app.render.raster import small_face_count
from app.session import live_faces
from engine.postprocess import people_to_meshes
from engine.types import Letterbox, People


@pytest.fixture(scope="module")
def rest(body):
    return rest_vertices(body)


def edge_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces share each undirected edge."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_counts=True)[1]


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    t = verts[faces].astype(np.float64)
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def person(cam: tuple[float, float, float], tid: int = 0, lying: bool = False) -> People:
    upright = Rotation.from_rotvec([np.pi, 0.0, 0.0])  # facing the camera, head up (y down)
    turn = Rotation.from_rotvec([0.0, 0.0, np.pi / 2]) if lying else Rotation.identity()  # a quarter turn on screen
    go = (turn * upright).as_rotvec()[None].astype(np.float32)
    pose = np.zeros((1, 69), np.float32)
    pose[0, 47], pose[0, 50] = -1.2, 1.2  # arms down: about 3.5 m of screen height per unit scale, 1.7 of width
    return People(center_preds=np.zeros((1, 2), np.float32), center_confs=np.full(1, 0.5, np.float32),
                  cam=np.array([cam], np.float32), global_orient=go, body_pose=pose,
                  betas=np.zeros((1, 10), np.float32), cam_trans=np.zeros((1, 3), np.float32),
                  track_ids=np.array([tid], np.int64))


def scene(body, people: People, h: int = 480, w: int = 640) -> Scene:
    box = Letterbox.for_frame(h, w, 256)
    return Scene(people, people_to_meshes(people, body, box), box)


def test_levels_are_closed_nested_and_keep_the_body(body, rest):
    full = np.asarray(body.faces)
    assert (edge_counts(full) == 2).all()  # the baked body is closed: every level must stay so
    volume = signed_volume(rest, full)
    previous = None
    for budget in (1600, 800, TINY_FACES, 200):
        f = simplify_faces(rest, full, budget)
        assert f.dtype == np.int32 and len(f) == budget and f.max() < body.num_vertices
        assert (edge_counts(f) == 2).all(), f"level {budget} is not a closed manifold"
        assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f)  # no duplicated faces
        # the outward winding survives (no folded faces), and the volume stays near the full body's
        assert signed_volume(rest, f) == pytest.approx(volume, rel=0.15)
        if previous is not None:  # levels are prefixes of one collapse order: a coarser level keeps fewer vertices
            assert set(np.unique(f)) <= set(np.unique(previous))
        previous = f
    assert np.array_equal(simplify_faces(rest, full, 10**6), full)  # small enough already: returned as is


def test_collapse_order_is_cached_and_replays_exactly(body, rest):
    order = collapse_order(rest, body.faces)
    assert collapse_order(rest.copy(), np.array(body.faces)) is order  # same mesh, same cached order
    # replaying k collapses leaves exactly 2k fewer faces
    for k in (0, 1, 100, 500):
        assert len(replay_collapses(body.faces, order, len(body.faces) - 2 * k)) == len(body.faces) - 2 * k


def test_open_mesh_keeps_its_outline():
    n = 12
    ys, xs = np.mgrid[0:n, 0:n]
    verts = np.stack([xs.ravel(), ys.ravel(), 0.05 * np.sin(xs.ravel())], axis=1).astype(np.float64)
    quads = [(y * n + x, y * n + x + 1, (y + 1) * n + x, (y + 1) * n + x + 1) for y in range(n - 1)
             for x in range(n - 1)]
    faces = np.array([f for a, b, c, d in quads for f in ((a, c, b), (b, c, d))])
    out = simplify_faces(verts, faces, 60)
    border = {i for i in range(n * n) if i // n in (0, n - 1) or i % n in (0, n - 1)}
    assert len(out) < len(faces)
    assert border <= set(np.unique(out))  # vertices on the boundary never move


def test_tiny_level_silhouette_stays_close_to_the_full_mesh(body):
    sc = scene(body, person((0.19, 0.0, 0.0)))  # ~110 px tall: the tiny level's size
    frame = np.zeros((480, 640, 3), np.uint8)
    full = render_overlay(frame, sc, [MeshAnnotator(1.0)]).any(axis=2)
    tiny = render_overlay(frame, sc, [MeshAnnotator(1.0, faces=tiny_faces(body))]).any(axis=2)
    assert 0.02 * full.size > full.sum() > 500
    assert (full ^ tiny).sum() < 0.08 * full.sum()


def test_level_follows_the_longer_side_on_screen(body, rest):
    fine, coarse, tiny = (simplify_faces(rest, body.faces, b) for b in (1600, 800, 300))
    ann = MeshAnnotator(1.0, faces=fine, coarse_faces=coarse, tiny_faces=tiny, coarse_below_px=220,
                        tiny_below_px=120)
    frame = np.zeros((480, 640, 3), np.uint8)
    drawn = {}
    for s in (0.13, 0.29, 0.52):  # about 75, 170 and 300 px tall
        render_overlay(frame, scene(body, person((s, 0.0, 0.0))), [ann])
        drawn[s] = ann.last_faces_drawn
    assert 0 < drawn[0.13] <= len(tiny) < drawn[0.29] <= len(coarse) < drawn[0.52] <= len(fine)
    # lying down, 170 px wide and ~80 px tall: the level of its length, not the tiny one
    render_overlay(frame, scene(body, person((0.29, 0.0, 0.0), lying=True)), [ann])
    assert len(tiny) < ann.last_faces_drawn <= len(coarse)
    # a tiny level that is not coarser than the coarse one (small live budget) is not used
    small_budget = MeshAnnotator(1.0, faces=fine, coarse_faces=simplify_faces(rest, body.faces, 200), tiny_faces=tiny)
    render_overlay(frame, scene(body, person((0.13, 0.0, 0.0))), [small_budget])
    assert 0 < small_budget.last_faces_drawn <= 200


def test_person_at_the_frame_edge_is_drawn(body):
    frame = np.zeros((480, 640, 3), np.uint8)
    # centre left of the frame: only the right half of the body is inside
    sc = scene(body, person((0.4, -1.0, 0.0)))
    out = render_overlay(frame, sc, [MeshAnnotator(1.0)])
    xs = np.nonzero(out.any(axis=2))[1]
    assert len(xs) > 300 and xs.min() == 0


@pytest.mark.parametrize("opacity", [1.0, 0.6])
def test_raster_and_painter_draw_the_same_picture(body, monkeypatch, opacity):
    cams = [(0.12, x, y) for x in (-0.6, -0.2, 0.2, 0.6) for y in (-0.3, 0.3)] + [(0.3, 0.05, 0.0)]
    people = _stack([person(c, tid=i) for i, c in enumerate(cams)])
    sc = scene(body, people)
    frame = np.full((480, 640, 3), 90, np.uint8)
    monkeypatch.setattr(mesh_module, "PAINTER_MAX_FACES", 10**9)
    painted = render_overlay(frame, sc, [MeshAnnotator(opacity)])
    monkeypatch.setattr(mesh_module, "PAINTER_MAX_FACES", 0)
    rastered = render_overlay(frame, sc, [MeshAnnotator(opacity)])
    drawn = (painted != frame).any(axis=2) | (rastered != frame).any(axis=2)
    silhouettes = (painted == frame).all(axis=2) ^ (rastered == frame).all(axis=2)
    assert drawn.sum() > 2000
    # the coverage rules differ along edges only: at the outline, and which of two neighbouring faces (a shade
    # apart) owns a pixel on their shared edge
    assert silhouettes.sum() < 0.03 * drawn.sum()
    assert np.abs(painted[drawn].astype(int) - rastered[drawn]).mean() < 4


def _stack(rows: list[People]) -> People:
    return People(**{name: np.concatenate([getattr(r, name) for r in rows]) for name in (
        "center_preds", "center_confs", "cam", "global_orient", "body_pose", "betas", "cam_trans", "track_ids")})


def test_small_face_count_counts_what_the_raster_would_vectorise():
    tiny = np.array([[[10, 10], [13, 10], [10, 13]]], np.float32)  # 4 x 4 px box: rastered by numpy
    big = np.array([[[10, 10], [60, 10], [10, 60]]], np.float32)  # 51 x 51 px: one OpenCV fill either way
    sliver = np.array([[[10, 10], [40, 11], [10, 11]]], np.float32)  # 31 px wide, 2 tall: past the templates
    assert small_face_count(np.concatenate([tiny] * 5 + [big] * 3 + [sliver])) == 5
    assert small_face_count(np.zeros((0, 3, 2), np.float32)) == 0


def test_close_people_with_many_large_faces_are_painted_not_rastered(body, monkeypatch):
    # Three people close to the camera, drawn at the app's live level: ~2500 front faces, most of them larger than
    # the raster's templates, which it would hand to OpenCV one by one anyway. A face limit between their small
    # faces and all their faces must not send them to the raster.
    people = _stack([person((0.9, x, 0.1), tid=i) for i, x in enumerate((-0.5, 0.0, 0.5))])
    calls = []
    monkeypatch.setattr(mesh_module.MeshAnnotator, "_raster", lambda self, *a: calls.append("raster"))
    monkeypatch.setattr(mesh_module, "PAINTER_MAX_FACES", 1500)
    ann = MeshAnnotator(0.8, faces=live_faces(body, 1600))
    out = render_overlay(np.zeros((480, 640, 3), np.uint8), scene(body, people), [ann])
    assert ann.last_faces_drawn > 2000 and not calls
    assert out.any(axis=2).mean() > 0.3  # the painter drew them
    # the same people far away: small faces, so over the limit the raster takes them
    far = _stack([person((0.1, x, 0.1), tid=i) for i, x in enumerate((-0.5, 0.0, 0.5))])
    monkeypatch.setattr(mesh_module, "PAINTER_MAX_FACES", 100)
    render_overlay(np.zeros((480, 640, 3), np.uint8), scene(body, far), [MeshAnnotator(0.8)])
    assert calls == ["raster"]
