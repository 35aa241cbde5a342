"""``--export-anim``: BVH per track and an animated, skinned glb, checked against the body model by independent
readers (a BVH parser + forward kinematics and a glb reader + skinning written here), the Khronos glTF validator
(npm ``gltf-validator``, when node/npm are there) and Blender's importers (slow, when ``blender`` is on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from app.motion import AnimSink, export_clip
from app.motion.gltf_anim import srgb_to_linear
from app.motion.rotations import euler_zxy
from app.motion.tracks import MotionRecorder
from app.render.colors import track_color
from engine.body import SMPL_JOINT_NAMES, SMPL_PARENTS
from engine.types import People

sys.path.insert(0, str(Path(__file__).parent))
import synthetic_smpl

ROOT = Path(__file__).resolve().parent.parent
FLIP = np.array([1.0, -1.0, -1.0])  # camera (y down, z forward) -> world (y up): 180 degrees about x
SPLIT_JOINTS = (3, 12, 15)  # spine1, neck, head: Anny spreads these over two bones each


# ---------------------------------------------------------------------------------------------------- helpers
def make_people(thetas: np.ndarray, trans: np.ndarray, ids: list[int], betas: np.ndarray | None = None) -> People:
    n = len(ids)
    return People(center_preds=np.zeros((n, 2), np.float32), center_confs=np.ones(n, np.float32),
                  cam=np.tile(np.array([[0.5, 0.0, 0.0]], np.float32), (n, 1)),
                  global_orient=thetas[:, :3].astype(np.float32), body_pose=thetas[:, 3:].astype(np.float32),
                  betas=np.zeros((n, 10), np.float32) if betas is None else betas.astype(np.float32),
                  cam_trans=trans.astype(np.float32), track_ids=np.asarray(ids, np.int64))


def random_thetas(rng: np.random.Generator, n: int, amp: float = 0.25) -> np.ndarray:
    """Poses of upright people as the network gives them: root turned 180 degrees about x (camera y down)."""
    th = rng.normal(0.0, amp, (n, 72))
    th[:, :3] = np.array([np.pi, 0.0, 0.0]) + rng.normal(0.0, 0.15, (n, 3))
    th[:, 66:] = 0.0  # hands: the network predicts none
    return th


def body_world_joints(body, thetas: np.ndarray, trans: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
    """The app's joints (root-aligned + cam_trans, camera axes) turned into the export's world frame."""
    with torch.inference_mode():
        sh = None if shape is None else torch.as_tensor(np.tile(shape, (len(thetas), 1)), dtype=torch.float32)
        out = body(torch.as_tensor(thetas[:, :3], dtype=torch.float32),
                   torch.as_tensor(thetas[:, 3:], dtype=torch.float32), shape=sh, root_align=True)
    return (out.joints[:, :24].numpy().astype(np.float64) + trans[:, None]) * FLIP


def body_world_vertices(body, thetas: np.ndarray, trans: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out = body(torch.as_tensor(thetas[:, :3], dtype=torch.float32),
                   torch.as_tensor(thetas[:, 3:], dtype=torch.float32), root_align=True)
    return (out.vertices.numpy().astype(np.float64) + trans[:, None]) * FLIP


def parse_bvh(text: str) -> dict:
    """A small BVH reader: hierarchy (names, parents, offsets, channels) and the motion table."""
    tok = text.split()
    names, parents, offsets, channels = [], [], [], []
    stack: list[int] = []
    assert tok[0] == "HIERARCHY"
    i = 1
    while tok[i] != "MOTION":
        t = tok[i]
        if t in ("ROOT", "JOINT"):
            names.append(tok[i + 1])
            parents.append(stack[-1] if stack else -1)
            i += 2
        elif t == "End":  # End Site { OFFSET x y z }
            assert tok[i + 1] == "Site" and tok[i + 2] == "{" and tok[i + 3] == "OFFSET" and tok[i + 7] == "}"
            i += 8
        elif t == "{":
            stack.append(len(names) - 1)
            i += 1
        elif t == "}":
            stack.pop()
            i += 1
        elif t == "OFFSET":
            offsets.append([float(x) for x in tok[i + 1:i + 4]])
            i += 4
        elif t == "CHANNELS":
            n = int(tok[i + 1])
            channels.append(tok[i + 2:i + 2 + n])
            i += 2 + n
        else:
            raise AssertionError(f"unexpected token {t!r}")
    assert tok[i + 1] == "Frames:" and tok[i + 3:i + 5] == ["Frame", "Time:"]
    frames, frame_time = int(tok[i + 2]), float(tok[i + 5])
    data = np.array(tok[i + 6:], float).reshape(frames, -1)
    return {"names": names, "parents": parents, "offsets": np.array(offsets), "channels": channels,
            "frames": frames, "frame_time": frame_time, "data": data}


def bvh_fk(bvh: dict) -> np.ndarray:
    """[T, J, 3] joint positions: each joint's channels applied in the listed order (intrinsic rotations)."""
    t = bvh["frames"]
    n = len(bvh["names"])
    pos = np.zeros((t, n, 3))
    rot = np.zeros((t, n, 3, 3))
    col = 0
    for j in range(n):
        chans = bvh["channels"][j]
        vals = bvh["data"][:, col:col + len(chans)]
        col += len(chans)
        local_t = np.tile(bvh["offsets"][j], (t, 1))
        rot_axes = ""
        rot_vals = []
        for c, v in zip(chans, vals.T):
            if c.endswith("position"):
                local_t[:, "XYZ".index(c[0])] += v
            else:
                rot_axes += c[0]
                rot_vals.append(v)
        local_r = Rotation.from_euler(rot_axes, np.stack(rot_vals, 1), degrees=True).as_matrix()
        p = bvh["parents"][j]
        if p < 0:
            pos[:, j], rot[:, j] = local_t, local_r
        else:
            pos[:, j] = pos[:, p] + np.einsum("tab,tb->ta", rot[:, p], local_t)
            rot[:, j] = rot[:, p] @ local_r
    return pos


def read_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    assert jtype == b"JSON" and jlen % 4 == 0
    doc = json.loads(data[20:20 + jlen])
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    assert btype == b"BIN\0"
    return doc, data[28 + jlen:28 + jlen + blen]


def accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    a = doc["accessors"][index]
    v = doc["bufferViews"][a["bufferView"]]
    dtype = {5126: "<f4", 5121: "u1", 5123: "<u2", 5125: "<u4"}[a["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a["type"]]
    start = v.get("byteOffset", 0) + a.get("byteOffset", 0)
    arr = np.frombuffer(binary, dtype, a["count"] * width, start)
    return arr.reshape(a["count"], width) if width > 1 else arr


def trs(t=None, r=None, s=None) -> np.ndarray:
    m = np.eye(4)
    if r is not None:
        m[:3, :3] = Rotation.from_quat(r).as_matrix()  # scipy's order is (x, y, z, w), like glTF's
    if s is not None:
        m[:3, :3] = m[:3, :3] * np.asarray(s)[None, :]
    if t is not None:
        m[:3, 3] = t
    return m


def sample(doc: dict, binary: bytes, sampler: dict, time: float) -> np.ndarray:
    """Key value at ``time``, which lies on a key (LINEAR) or anywhere (STEP: the last key at or before it)."""
    keys = accessor(doc, binary, sampler["input"])
    values = accessor(doc, binary, sampler["output"])
    k = int(np.searchsorted(keys, time + 1e-6, side="right")) - 1
    return values[max(k, 0)].astype(np.float64)


def skinned_vertices(doc: dict, binary: bytes, mesh_node: int, time: float) -> np.ndarray:
    """Vertices of one skinned mesh node at ``time``, computed as a glTF viewer does."""
    node = doc["nodes"][mesh_node]
    skin = doc["skins"][node["skin"]]
    anim = {(c["target"]["node"], c["target"]["path"]): doc["animations"][0]["samplers"][c["sampler"]]
            for c in doc["animations"][0]["channels"]}
    parent = {c: i for i, n in enumerate(doc["nodes"]) for c in n.get("children", [])}

    def world(i: int) -> np.ndarray:
        n = doc["nodes"][i]
        got = {p: sample(doc, binary, anim[(i, p)], time) for p in ("translation", "rotation", "scale")
               if (i, p) in anim}
        local = trs(got.get("translation", n.get("translation")), got.get("rotation", n.get("rotation")),
                    got.get("scale", n.get("scale")))
        return world(parent[i]) @ local if i in parent else local

    ibm = accessor(doc, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    mats = np.stack([world(j) @ ibm[k] for k, j in enumerate(skin["joints"])])
    prim = doc["meshes"][node["mesh"]]["primitives"][0]
    pos = accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    joints = accessor(doc, binary, prim["attributes"]["JOINTS_0"]).astype(int)
    weights = accessor(doc, binary, prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    homo = np.concatenate([pos, np.ones((len(pos), 1))], 1)
    out = np.zeros((len(pos), 4))
    for k in range(4):
        out += weights[:, k, None] * np.einsum("vab,vb->va", mats[joints[:, k]], homo)
    return out[:, :3]


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def smpl(tmp_path_factory):
    pytest.importorskip("smplx")
    from engine.body.smpl import SmplBody

    folder = tmp_path_factory.mktemp("smpl")
    synthetic_smpl.write_npz(folder / "SMPL_NEUTRAL.npz", synthetic_smpl.make_synthetic_smpl(seed=0))
    return SmplBody.from_file(folder / "SMPL_NEUTRAL.npz")


def record(frames: dict[int, list[tuple[int, np.ndarray, np.ndarray]]], betas: np.ndarray | None = None
           ) -> MotionRecorder:
    """frames: frame index -> [(track id, theta[72], cam_trans[3])]."""
    rec = MotionRecorder()
    for f in sorted(frames):
        rows = frames[f]
        ids = [r[0] for r in rows]
        th = np.array([r[1] for r in rows]).reshape(-1, 72)
        tr = np.array([r[2] for r in rows]).reshape(-1, 3)
        b = None if betas is None else np.tile(betas, (len(rows), 1))
        rec.add(f, make_people(th, tr, ids, b))
    return rec


@pytest.fixture(scope="module")
def clip(tmp_path_factory, body):
    """Three Anny tracks over frames 0..29 at 12 fps: id 2 the whole clip, id 5 frames 4..19 with a gap at
    9..11, id 7 frames 20..29 (partial lives exercise the glb's visibility keys)."""
    rng = np.random.default_rng(1)
    lives = {2: range(0, 30), 5: [f for f in range(4, 20) if not 9 <= f <= 11], 7: range(20, 30)}
    thetas = {tid: random_thetas(rng, 30) for tid in lives}
    trans = {tid: np.array([x, 0.2, 4.0]) + rng.normal(0, 0.05, (30, 3)) for tid, x in zip(lives, (-1.0, 0.0, 1.0))}
    frames: dict[int, list] = {}
    for tid, fs in lives.items():
        for f in fs:
            frames.setdefault(f, []).append((tid, thetas[tid][f], trans[tid][f]))
    out = tmp_path_factory.mktemp("anim")
    res = export_clip(out, "walk", 12.0, body, record(frames))
    return {"dir": out, "result": res, "lives": {k: list(v) for k, v in lives.items()}, "thetas": thetas,
            "trans": trans, "fps": 12.0}


# ---------------------------------------------------------------------------------------------------- rotations
def test_euler_zxy_reproduces_rotations_including_gimbal_lock():
    rng = np.random.default_rng(0)
    mats = Rotation.random(200, random_state=1).as_matrix()
    locked = Rotation.from_euler("ZXY", [[30, 90, 20], [-50, -90, 10], [0, 90, 0]], degrees=True).as_matrix()
    for m in (mats, locked, np.eye(3)[None] + 0 * rng.random((1, 3, 3))):
        zxy = euler_zxy(m)
        back = Rotation.from_euler("ZXY", zxy).as_matrix()  # intrinsic Z, X, Y: R = Rz Rx Ry
        np.testing.assert_allclose(back, m, atol=1e-9)


def test_motion_stays_continuous_through_a_full_turn():
    """A person turning on the spot: axis-angle wraps at 180 degrees (the axis flips), the stored quaternions and
    BVH angles must not (players interpolate the stored numbers)."""
    from app.motion.bvh import motion_channels
    from app.motion.rig import Rig
    from app.motion.tracks import build_motion

    n = 36
    angles = np.radians(np.arange(n) * 10.0)  # 0..350 degrees about the vertical
    rv = Rotation.from_euler("y", angles[:, None]).as_rotvec()  # |rotvec| <= pi: the axis flips past 180
    poses = np.zeros((n, 72))
    poses[:, :3] = (Rotation.from_euler("x", np.pi) * Rotation.from_rotvec(rv)).as_rotvec()  # camera axes
    motion = build_motion(0, np.arange(n), poses, np.zeros((n, 3)))
    q = motion.local_quats[:, 0]
    assert np.all(np.sum(q[1:] * q[:-1], axis=1) > 0.9)
    world = Rotation.from_quat(q).as_matrix()
    np.testing.assert_allclose(world, Rotation.from_euler("y", angles[:, None]).as_matrix(), atol=1e-9)
    rig = Rig(tuple(SMPL_JOINT_NAMES), tuple(SMPL_PARENTS), np.zeros((24, 3)), np.zeros((0, 3), np.float32),
              np.zeros((0, 3), np.int32), np.zeros((0, 24), np.float32))
    root_zxy = motion_channels(rig, motion)[:, 3:6]
    assert np.abs(np.diff(root_zxy, axis=0)).max() < 20.0  # 10-degree steps, never a 360-degree jump


# ---------------------------------------------------------------------------------------------------- BVH
def test_bvh_round_trip_matches_smpl_joints_exactly(tmp_path, smpl):
    """SMPL's joints are a rigid chain: FK of the written BVH reproduces the body model's joints (< 1 mm)."""
    rng = np.random.default_rng(3)
    th = random_thetas(rng, 25, amp=0.5)
    tr = np.array([0.3, -0.1, 5.0]) + rng.normal(0, 0.2, (25, 3))
    betas = rng.normal(0, 1.0, 10).astype(np.float32)
    rec = record({f: [(4, th[f], tr[f])] for f in range(25)}, betas=betas)
    res = export_clip(tmp_path, "clip", 25.0, smpl, rec)
    assert [p.name for p in res.files] == ["clip_id4.bvh", "clip.glb"]
    bvh = parse_bvh((tmp_path / "clip_id4.bvh").read_text())
    assert sorted(bvh["names"]) == sorted(SMPL_JOINT_NAMES)  # in depth-first order, as BVH lists them
    want = body_world_joints(smpl, th, tr, betas)
    got = bvh_fk(bvh)
    order = [SMPL_JOINT_NAMES.index(n) for n in bvh["names"]]
    err = np.linalg.norm(got - want[:, order], axis=-1)
    assert err.max() < 1e-3, err.max()
    assert bvh["frames"] == 25 and bvh["frame_time"] == pytest.approx(1 / 25.0, abs=1e-8)


def test_bvh_round_trip_matches_anny_joints(clip, body):
    """Anny spreads spine1, neck and head over two bones each, so the skeleton puts those three joints at their
    pivots (1-4 cm from Anny's reported joints, see app/motion/rig.py): the other 21 joints are exact (< 1 mm) when
    those three are straight, and stay within 1 cm for bent ones."""
    rng = np.random.default_rng(5)
    th = random_thetas(rng, 40)
    straight = th.copy()
    for j in SPLIT_JOINTS:
        straight[:, 3 * j:3 * j + 3] = 0.0
    tr = np.array([0.0, 0.3, 3.0]) + rng.normal(0, 0.1, (40, 3))
    for poses, bound in ((straight, 1e-3), (th, 1e-2)):
        out = Path(tempfile.mkdtemp(dir=clip["dir"]))
        export_clip(out, "a", 30.0, body, record({f: [(0, poses[f], tr[f])] for f in range(40)}))
        bvh = parse_bvh((out / "a_id0.bvh").read_text())
        order = [SMPL_JOINT_NAMES.index(n) for n in bvh["names"]]
        err = np.linalg.norm(bvh_fk(bvh) - body_world_joints(body, poses, tr)[:, order], axis=-1)
        split = [k for k, n in enumerate(bvh["names"]) if SMPL_JOINT_NAMES.index(n) in SPLIT_JOINTS]
        rigid = [k for k in range(24) if k not in split]
        assert err[:, rigid].max() < bound, (bound, err[:, rigid].max())
        assert 0.005 < err[:, split].max() < 0.045


def test_bvh_structure_life_and_gaps(clip):
    """One file per track from its first to its last frame; the gap is filled by interpolation."""
    d, fps = clip["dir"], clip["fps"]
    assert sorted(p.name for p in d.glob("walk*")) == ["walk.glb", "walk_id2.bvh", "walk_id5.bvh", "walk_id7.bvh"]
    text = (d / "walk_id5.bvh").read_text()
    bvh = parse_bvh(text)
    life = clip["lives"][5]
    assert bvh["frames"] == life[-1] - life[0] + 1 == 16
    assert bvh["frame_time"] == pytest.approx(1 / fps, abs=1e-8)
    assert bvh["channels"][0] == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert all(c == ["Zrotation", "Xrotation", "Yrotation"] for c in bvh["channels"][1:])
    assert len(bvh["names"]) == 24 and text.count("End Site") == 5  # feet, hands, head
    parents = [bvh["names"].index(SMPL_JOINT_NAMES[SMPL_PARENTS[SMPL_JOINT_NAMES.index(n)]]) if i else -1
               for i, n in enumerate(bvh["names"])]
    assert bvh["parents"] == parents
    root = bvh["data"][:, :3]
    # frames 9..11 were not seen: the root moves linearly between frames 8 and 12
    a, b = root[8 - life[0]], root[12 - life[0]]
    for f in (9, 10, 11):
        np.testing.assert_allclose(root[f - life[0]], a + (b - a) * (f - 8) / 4, atol=2e-6)
    # seen frames keep their own root position: pelvis = world(cam_trans + root-aligned pelvis offset)
    assert not np.allclose(root[9 - life[0]], root[8 - life[0]])
    # no channel jumps by ~360 degrees between frames (unwrapped)
    assert np.abs(np.diff(bvh["data"][:, 3:], axis=0)).max() < 180


def test_bvh_figures_are_upright_in_the_world_frame(clip):
    """World y is up: the network's upright people (root turned 180 degrees about x) have the head above feet."""
    fk = bvh_fk(parse_bvh((clip["dir"] / "walk_id2.bvh").read_text()))
    names = parse_bvh((clip["dir"] / "walk_id2.bvh").read_text())["names"]
    head, foot = names.index("head"), names.index("left_foot")
    assert np.all(fk[:, head, 1] - fk[:, foot, 1] > 0.5)  # upside down would be about -1.4
    assert np.all(fk[:, 0, 2] < -3.0)  # in front of the camera, which looks down -z


# ---------------------------------------------------------------------------------------------------- glb
def test_glb_structure_colours_and_visibility(clip):
    doc, binary = read_glb(clip["dir"] / "walk.glb")
    fps = clip["fps"]
    assert len(doc["skins"]) == len(doc["meshes"]) == len(doc["materials"]) == 3
    assert len(doc["animations"]) == 1
    scene_roots = [doc["nodes"][i]["name"] for i in doc["scenes"][0]["nodes"]]
    assert sorted(scene_roots) == sorted(["id2", "id2_body", "id5", "id5_body", "id7", "id7_body"])
    anim = doc["animations"][0]
    for tid, life in clip["lives"].items():
        holder = next(i for i, n in enumerate(doc["nodes"]) if n["name"] == f"id{tid}")
        body = next(n for n in doc["nodes"] if n["name"] == f"id{tid}_body")
        skin = doc["skins"][body["skin"]]
        assert [doc["nodes"][j]["name"] for j in skin["joints"]] == list(SMPL_JOINT_NAMES)
        assert doc["nodes"][holder]["children"] == [skin["joints"][0]]
        assert (body["extras"]["first_frame"], body["extras"]["last_frame"]) == (life[0], life[-1])
        # colour = the overlay's colour of this track (BGR palette), as a linear factor
        b, g, r = track_color(tid)
        mat = doc["materials"][doc["meshes"][body["mesh"]]["primitives"][0]["material"]]
        np.testing.assert_allclose(mat["pbrMetallicRoughness"]["baseColorFactor"][:3],
                                   srgb_to_linear(np.array([r, g, b]) / 255.0), atol=1e-6)
        # rotation keys: one per frame of the track's life, at (frame - clip start) / fps
        rot = [c for c in anim["channels"] if c["target"]["node"] == skin["joints"][5]]
        assert [c["target"]["path"] for c in rot] == ["rotation"]
        times = accessor(doc, binary, anim["samplers"][rot[0]["sampler"]]["input"])
        np.testing.assert_allclose(times, np.arange(life[0], life[-1] + 1) / fps, atol=1e-6)
        # LINEAR keys interpolate the stored numbers: consecutive quaternions must not flip sign (q and -q)
        for j in skin["joints"]:
            ch = next(c for c in anim["channels"] if c["target"] == {"node": j, "path": "rotation"})
            q = accessor(doc, binary, anim["samplers"][ch["sampler"]]["output"]).astype(np.float64)
            np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
            assert np.all(np.sum(q[1:] * q[:-1], axis=1) > 0)
        # visibility: scale 0 before the first and after the last frame, STEP
        vis = [c for c in anim["channels"] if c["target"] == {"node": holder, "path": "scale"}]
        if life[0] == 0 and life[-1] == 29:
            assert not vis
            continue
        smp = anim["samplers"][vis[0]["sampler"]]
        assert smp["interpolation"] == "STEP"
        keys = accessor(doc, binary, smp["input"])
        scale = accessor(doc, binary, smp["output"])[:, 0]
        shown = [float(scale[int(np.searchsorted(keys, f / fps + 1e-6, side="right")) - 1]) if f / fps >= keys[0]
                 else 1.0 for f in range(30)]
        assert shown == [1.0 if life[0] <= f <= life[-1] else 0.0 for f in range(30)]
    # skin data: 4 influences per vertex, weights sum to 1, shared by the tracks of one shape
    prim = doc["meshes"][0]["primitives"][0]
    w = accessor(doc, binary, prim["attributes"]["WEIGHTS_0"])
    np.testing.assert_allclose(w.sum(1, dtype=np.float64), 1.0, atol=1e-6)
    assert {m["primitives"][0]["attributes"]["POSITION"] for m in doc["meshes"]} == {prim["attributes"]["POSITION"]}


def test_glb_skinning_follows_the_body_model(clip, body):
    """Skinning the glb as a viewer does gives the app's mesh: a few mm on average, a few cm at worst (Anny's 104
    bones folded onto 24 joints: toes and fingers pivot at their own bones; see app/motion/rig.py)."""
    doc, binary = read_glb(clip["dir"] / "walk.glb")
    fps = clip["fps"]
    mesh_node = next(i for i, n in enumerate(doc["nodes"]) if n["name"] == "id5_body")
    for f in (4, 8, 15, 19):
        got = skinned_vertices(doc, binary, mesh_node, f / fps)
        want = body_world_vertices(body, clip["thetas"][5][f:f + 1], clip["trans"][5][f:f + 1])[0]
        err = np.linalg.norm(got - want, axis=1)
        assert err.mean() < 0.004 and err.max() < 0.06, (f, err.mean(), err.max())
    hidden = skinned_vertices(doc, binary, mesh_node, 25 / fps)  # after its life: collapsed to a point
    assert np.ptp(hidden, axis=0).max() < 1e-6


def _validator_dir() -> Path | None:
    """node + the npm package ``gltf-validator``, installed once into a temp folder (None when unavailable)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    folder = Path(tempfile.gettempdir()) / "instancehmr-gltf-validator"
    if not (folder / "node_modules" / "gltf-validator").is_dir():
        folder.mkdir(exist_ok=True)
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder),
                            "gltf-validator@2.0.0-dev.3.10"], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            return None
    return folder


def test_glb_passes_the_khronos_validator(clip):
    folder = _validator_dir()
    if folder is None:
        pytest.skip("node/npm missing or `npm install gltf-validator` failed (offline?)")
    script = ("const v=require('gltf-validator');const fs=require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])),{maxIssues:50})"
              ".then(r=>console.log(JSON.stringify(r.issues))).catch(e=>{console.error(e);process.exit(1);});")
    p = subprocess.run(["node", "-e", script, str(clip["dir"] / "walk.glb")], cwd=folder, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "NODE_PATH": str(folder / "node_modules")})
    assert p.returncode == 0, p.stderr
    issues = json.loads(p.stdout)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


# ---------------------------------------------------------------------------------------------------- sink
def test_sink_records_arrays_only_and_writes_at_close(tmp_path, body):
    sink = AnimSink(tmp_path, "live", 30.0, body)
    rng = np.random.default_rng(2)
    for f in range(300):
        th = random_thetas(rng, 2)
        sink.add(f, "live", make_people(th, np.array([[0, 0, 4.0], [1, 0, 4.0]]), [0, 1]), meshes=None)
    assert list(tmp_path.iterdir()) == []  # nothing before the end of the run
    assert sink.recorder.nbytes <= 2 * 2 * 512 * (85 * 4 + 8)  # two tracks, capacity doubles past 300 rows
    res = sink.close()
    assert sorted(p.name for p in res.files) == ["live.glb", "live_id0.bvh", "live_id1.bvh"]
    assert res.frames == 300 and res.tracks == 2
    assert sink.close() is res  # idempotent
    assert "2 .bvh + live.glb" in sink.note() and sink.error is None


def test_sink_per_image_and_nobody(tmp_path, body):
    sink = AnimSink(tmp_path, "photos", 1.0, body, per_image=True)
    rng = np.random.default_rng(4)
    sink.add(0, "a", make_people(random_thetas(rng, 2), np.array([[0, 0, 4.0], [1, 0, 4.0]]), [0, 1]), None)
    sink.add(1, "b", People.empty(), None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.glb", "a_id0.bvh", "a_id1.bvh"]
    assert parse_bvh((tmp_path / "a_id1.bvh").read_text())["frames"] == 1
    sink.close()
    empty = AnimSink(tmp_path / "none", "x", 25.0, body)
    empty.add(0, "x", People.empty(), None)
    assert empty.close().files == [] and "no tracked people" in empty.note()


def test_write_failure_is_reported_not_raised(tmp_path, body):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sink = AnimSink(blocker / "sub", "clip", 25.0, body)
    rng = np.random.default_rng(6)
    sink.add(0, "clip", make_people(random_thetas(rng, 1), np.array([[0, 0, 4.0]]), [3]), None)
    sink.close()
    assert sink.error is not None and "cannot write" in str(sink.error) and "--export-anim" in str(sink.error)
    assert "failed" in sink.note()


def test_config_flag_and_unwritable_folder(tmp_path):
    from app.config import build_cfg, build_parser
    from app.session import check_outputs
    from engine.errors import OutputError

    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"")
    cfg = build_cfg(build_parser().parse_args(["--input", str(clip), "--headless", "--export-anim",
                                               str(tmp_path / "anim")]))
    assert cfg.outputs.export_anim == tmp_path / "anim"
    check_outputs(cfg)
    assert (tmp_path / "anim").is_dir()
    cfg = build_cfg(build_parser().parse_args(["--input", str(clip), "--headless", "--export-anim", str(clip)]))
    with pytest.raises(OutputError, match="--export-anim"):
        check_outputs(cfg)


@pytest.mark.slow  # one headless run of run_app.py with a small scene model (~15-30 s on 2 shared cores)
def test_headless_run_writes_animation(tmp_path):
    from testing.scene import make_scene_checkpoint, write_synthetic_video

    ckpt = make_scene_checkpoint(tmp_path / "scene.pt")
    video = write_synthetic_video(tmp_path / "walk.mp4", frames=20, fps=20.0)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(INSTANCEHMR_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "run_app.py", "--input", str(video), "--checkpoint", str(ckpt), "--headless",
                        "--threshold", "0.2", "--export-anim", str(tmp_path / "anim")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    bvhs = sorted((tmp_path / "anim").glob("walk_id*.bvh"))
    assert bvhs and (tmp_path / "anim" / "walk.glb").is_file()
    assert "animation:" in p.stdout and f"{len(bvhs)} .bvh + walk.glb" in p.stdout
    for f in bvhs:
        bvh = parse_bvh(f.read_text())
        assert 1 <= bvh["frames"] <= 20 and bvh["frame_time"] == pytest.approx(1 / 20.0)


# ---------------------------------------------------------------------------------------------------- Blender
BLENDER = shutil.which("blender")
needs_blender = pytest.mark.skipif(BLENDER is None, reason="blender not on PATH (apt-get install -y blender)")

# Debian's Blender 3.4 runs on Python 3.11: its BVH importer opens files with mode 'rU' (removed in 3.11) and its
# glTF importer uses np.bool (removed in numpy 1.24); both are patched here, in the test only.
BLENDER_BVH = r"""
import builtins, json, sys, bpy
import io_anim_bvh.import_bvh as ib
ib.open = lambda f, mode="r", *a, **k: builtins.open(f, mode.replace("U", ""), *a, **k)
path = sys.argv[sys.argv.index("--") + 1]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_anim.bvh(filepath=path, axis_forward="-Z", axis_up="Y", update_scene_fps=True)
arms = [o for o in bpy.data.objects if o.type == "ARMATURE"]
a = arms[0]
sc = bpy.context.scene
up = []
for f in range(int(a.animation_data.action.frame_range[0]), int(a.animation_data.action.frame_range[1]) + 1):
    sc.frame_set(f)
    up.append((a.matrix_world @ a.pose.bones["head"].head).z - (a.matrix_world @ a.pose.bones["left_foot"].head).z)
print("RESULT " + json.dumps({"armatures": len(arms), "bones": len(a.data.bones),
      "fps": sc.render.fps / sc.render.fps_base, "range": list(a.animation_data.action.frame_range), "up": up}))
"""

BLENDER_GLB = r"""
import json, sys, bpy
try:
    import numpy as np
except ImportError:
    print("SKIP Blender's Python has no numpy (apt-get install -y python3-numpy)")
    raise SystemExit(0)
if "bool" not in np.__dict__:
    np.bool = bool
path, fps = sys.argv[sys.argv.index("--") + 1], int(sys.argv[sys.argv.index("--") + 2])
bpy.ops.wm.read_factory_settings(use_empty=True)
sc = bpy.context.scene
sc.render.fps = fps
bpy.ops.import_scene.gltf(filepath=path)
out = {"meshes": sorted(o.name for o in bpy.data.objects if o.type == "MESH"), "armatures": {}}
for a in (o for o in bpy.data.objects if o.type == "ARMATURE"):
    act = a.animation_data.action
    out["armatures"][a.name] = {"bones": len(a.data.bones), "range": list(act.frame_range), "up": {}}
    for f in range(int(act.frame_range[0]), int(act.frame_range[1]) + 1):
        sc.frame_set(f)
        head = a.matrix_world @ a.pose.bones["head"].head
        foot = a.matrix_world @ a.pose.bones["left_foot"].head
        out["armatures"][a.name]["up"][f] = head.z - foot.z
print("RESULT " + json.dumps(out))
"""


def run_blender(tmp_path: Path, script: str, *args: str) -> dict:
    path = tmp_path / "script.py"
    path.write_text(script)
    p = subprocess.run([BLENDER, "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(path), "--",
                        *args], capture_output=True, text=True, timeout=300)
    if "SKIP " in p.stdout:
        pytest.skip(p.stdout.split("SKIP ", 1)[1].splitlines()[0])
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow  # starts Blender (~5-15 s)
@needs_blender
def test_blender_imports_bvh(tmp_path, clip):
    got = run_blender(tmp_path, BLENDER_BVH, str(clip["dir"] / "walk_id5.bvh"))
    assert got["armatures"] == 1 and got["bones"] == 24
    assert got["fps"] == pytest.approx(clip["fps"], rel=1e-3)
    assert got["range"] == [1.0, 16.0]  # Blender starts at frame 1; 16 frames of life
    assert len(got["up"]) == 16 and min(got["up"]) > 1.0  # upright after the Y-up conversion


@pytest.mark.slow  # starts Blender (~5-15 s)
@needs_blender
def test_blender_imports_animated_glb(tmp_path, clip):
    got = run_blender(tmp_path, BLENDER_GLB, str(clip["dir"] / "walk.glb"), str(int(clip["fps"])))
    assert got["meshes"] == ["id2_body", "id5_body", "id7_body"]
    assert sorted(got["armatures"]) == ["id2", "id5", "id7"]
    for name, arm in got["armatures"].items():
        life = clip["lives"][int(name[2:])]
        assert arm["bones"] == 24
        start = 0 if life[0] > 0 else life[0]  # a hidden start is keyed at time 0
        end = life[-1] + 1 if life[-1] < 29 else life[-1]  # the hide key one frame after the last
        assert arm["range"] == [float(start), float(end)]
        upright = [arm["up"][str(f)] for f in range(life[0], life[-1] + 1)]
        assert min(upright) > 1.0
