"""Tracking keeps IDs through crossings and short occlusions; One-Euro smoothing removes jitter without lag."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from app.smoothing import OneEuroCfg, OneEuroFilter, PeopleSmoother
from app.tracking import Tracker
from engine.types import People


def crossing_sequence(frames: int = 40, noise: float = 2.0, seed: int = 0):
    """Two people walking towards each other on nearly the same line, crossing in the middle; the far one
    (smaller) is hidden behind the near one for two frames around the crossing."""
    rng = np.random.default_rng(seed)
    poses = rng.normal(0, 0.3, (2, 69))
    seq = []
    for f in range(frames):
        a = np.array([100 + 12 * f, 240 + 0.5 * f])
        b = np.array([580 - 12 * f, 250 - 0.5 * f])
        dets = [(a, 120.0, 0.30, poses[0]), (b, 90.0, 0.22, poses[1])]
        order = [0, 1] if f % 2 else [1, 0]  # detection order changes every frame
        hidden = frames // 2 - 1 <= f <= frames // 2
        rows = [dets[i] for i in order if not (hidden and i == 1)]
        c = np.stack([r[0] for r in rows]) + rng.normal(0, noise, (len(rows), 2))
        truth = [i for i in order if not (hidden and i == 1)]
        seq.append((c, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                    np.stack([r[3] + rng.normal(0, 0.05, 69) for r in rows]), truth))
    return seq


def test_ids_survive_crossing_and_occlusion():
    tr = Tracker()
    first: dict[int, int] = {}
    for centers, sizes, scales, poses, truth in crossing_sequence():
        ids = tr.update(centers, sizes, scales, poses).ids
        for person, tid in zip(truth, ids):
            assert first.setdefault(person, int(tid)) == int(tid), f"person {person} changed ID"
    assert first[0] != first[1]
    assert len(tr.tracks) == 2


def test_new_person_gets_new_id_and_lost_tracks_end():
    tr = Tracker()
    z = np.zeros((1, 69))
    a = tr.update(np.array([[100.0, 100.0]]), np.array([80.0]), np.array([0.2]), z).ids
    b = tr.update(np.array([[100.0, 100.0], [500.0, 300.0]]), np.array([80.0, 80.0]), np.array([0.2, 0.2]),
                  np.zeros((2, 69))).ids
    assert b[0] == a[0] and b[1] != a[0]
    ended = []
    for _ in range(tr.cfg.max_age + 1):
        ended += tr.update(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, 69))).ended
    assert sorted(ended) == sorted([int(a[0]), int(b[1])]) and not tr.tracks


def test_far_jump_is_a_new_person():
    tr = Tracker()
    z = np.zeros((1, 69))
    a = tr.update(np.array([[100.0, 100.0]]), np.array([50.0]), np.array([0.2]), z).ids
    b = tr.update(np.array([[600.0, 400.0]]), np.array([50.0]), np.array([0.2]), z).ids
    assert a[0] != b[0]


def test_one_euro_reduces_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(OneEuroCfg(1.0, 0.7))
    t = np.arange(300) / 30.0
    noisy = rng.normal(0, 0.05, 300)
    out = np.array([f(np.array([x]), ti)[0] for x, ti in zip(noisy, t)])
    assert out[30:].std() < 0.5 * noisy[30:].std()
    g = OneEuroFilter(OneEuroCfg(1.0, 0.7))
    ramp = [g(np.array([2.0 * ti]), ti)[0] for ti in t]
    assert abs(ramp[-1] - 2.0 * t[-1]) < 0.15  # fast motion raises the cutoff: little lag


def _people(go: np.ndarray, ids: list[int]) -> People:
    n = len(ids)
    cam = np.tile(np.array([[0.3, 0.0, 0.0]], np.float32), (n, 1))
    return People(center_preds=np.zeros((n, 2), np.float32), center_confs=np.ones(n, np.float32), cam=cam,
                  global_orient=go.astype(np.float32), body_pose=np.zeros((n, 69), np.float32),
                  betas=np.zeros((n, 10), np.float32), cam_trans=np.zeros((n, 3), np.float32),
                  track_ids=np.array(ids, np.int64))


def test_smoother_first_frame_is_exact_and_rotation_does_not_spin_at_pi():
    sm = PeopleSmoother(1.0)
    go0 = np.array([[np.pi - 0.01, 0.0, 0.0]])
    p0 = _people(go0, [0])
    out0 = sm.apply(p0, 0.0)
    np.testing.assert_array_equal(out0.global_orient, p0.global_orient)
    # the next frame crosses pi: axis-angle flips to ~ -(pi - 0.01); the filtered rotation must stay close
    go1 = Rotation.from_rotvec([np.pi + 0.01, 0, 0]).as_rotvec()[None]
    out1 = sm.apply(_people(go1, [0]), 1 / 30)
    r0 = Rotation.from_rotvec(go0[0])
    r1 = Rotation.from_rotvec(out1.global_orient[0])
    assert (r0.inv() * r1).magnitude() < 0.05


@pytest.mark.parametrize("strength", [0.5, 2.0])
def test_smoothing_strength_orders_jitter(strength):
    rng = np.random.default_rng(1)

    def jitter(s: float) -> float:
        sm = PeopleSmoother(s)
        xs = []
        for f in range(120):
            p = _people(np.array([[np.pi, 0.0, 0.0]]), [3])
            p.body_pose[:] = rng.normal(0, 0.05, 69)
            xs.append(sm.apply(p, f / 30).body_pose[0, 0])
        return float(np.std(xs[20:]))

    assert (jitter(strength) < jitter(1.0)) == (strength > 1.0)


def test_untracked_rows_and_dropped_ids():
    sm = PeopleSmoother()
    p = _people(np.zeros((2, 3)), [-1, 5])
    sm.apply(p, 0.0)
    assert len(sm) == 1
    sm.drop([5])
    assert len(sm) == 0


def test_batched_smoother_equals_one_filter_set_per_track():
    """The smoother keeps every track's state in shared arrays; it must give what independent per-track One-Euro
    filters give, with tracks appearing, missing frames (their own time step), ending and untracked rows."""
    from app.smoothing import DEFAULTS

    rng = np.random.default_rng(7)
    sm = PeopleSmoother(1.5)
    ref: dict[int, dict[str, OneEuroFilter]] = {}
    schedule = {0: [0, 1, -1], 1: [0, 1, 2], 2: [2, 0], 3: [2, 0, 1, 3], 4: [3, -1, 1], 5: [1, 3], 6: [4, 1, 3],
                9: [2, 4, 1, 3, 5, 0]}  # 0 is back after 3 missed frames, 2 after it ended
    for f in range(12):
        ids = schedule.get(f, [4, 1, 3, 5, 0])
        t = f / 30.0 if f != 8 else 7 / 30.0  # frame 8 repeats frame 7's timestamp
        go = np.array([np.pi, 0.0, 0.0]) + rng.normal(0, 0.2, (len(ids), 3))
        p = _people(go, ids)
        p.body_pose[:] = rng.normal(0, 0.3, p.body_pose.shape)
        p.betas[:] = rng.normal(0, 1, p.betas.shape)
        p.cam[:] = rng.uniform([0.2, -0.5, -0.5], [0.4, 0.5, 0.5], p.cam.shape)
        out = sm.apply(p, t)
        for j, tid in enumerate(ids):
            if tid < 0:
                assert np.array_equal(out.body_pose[j], p.body_pose[j])
                continue
            filters = ref.setdefault(tid, {k: OneEuroFilter(v, 1.5) for k, v in DEFAULTS.items()})
            want_bp = filters["body_pose"](p.body_pose[j], t).astype(np.float32)
            want_cam = filters["cam"](p.cam[j], t).astype(np.float32)
            want_betas = filters["betas"](p.betas[j], t).astype(np.float32)
            mat = filters["global_orient"](Rotation.from_rotvec(go[j]).as_matrix().reshape(9), t)
            want_go = Rotation.from_matrix(mat.reshape(3, 3))
            np.testing.assert_allclose(out.body_pose[j], want_bp, atol=1e-6)
            np.testing.assert_allclose(out.cam[j], want_cam, atol=1e-6)
            np.testing.assert_allclose(out.betas[j], want_betas, atol=1e-6)
            # compared as rotations: near pi the axis-angle of one rotation has two spellings
            assert (want_go.inv() * Rotation.from_rotvec(out.global_orient[j])).magnitude() < 1e-5
        if f == 4:  # track 2 ends; if it came back it would start afresh
            sm.drop([2])
            ref.pop(2)
    assert len(sm) == len(ref)


def test_smoother_survives_wild_rotations():
    # filtering matrices of far-apart rotations can give a matrix with no nearby rotation; the frame must not fail
    rng = np.random.default_rng(0)
    sm = PeopleSmoother(1.5)
    for f in range(30):
        out = sm.apply(_people(rng.normal(0, 2.0, (4, 3)), [0, 1, 2, 3]), f / 30)
        assert np.isfinite(out.global_orient).all()


def _bounce(with_frames: bool) -> list[np.ndarray]:
    """IDs of two people alike in size and pose, a red and a blue shirt, who walk towards each other along one
    line, meet and turn back: where they meet their centres coincide, and after it the constant-velocity
    prediction points each at the other. Only their colours tell who is who."""
    from engine.types import Letterbox

    box = Letterbox.for_frame(480, 640, 512)
    size = 150.0  # pixels per metre
    tr = Tracker()
    out = []
    for f in range(20):
        step = 8.0 * (min(f, 10) - max(f - 10, 0))
        xs = np.array([240.0 + step, 400.0 - step])
        centers = np.stack([xs, np.full(2, 300.0)], axis=1)
        frame = np.full((480, 640, 3), 128, np.uint8)
        for k in ([0, 1] if f % 2 else [1, 0]):  # who is in front changes every frame
            cx, cy = centers[k]
            frame[int(cy - 0.5 * size):int(cy), int(cx - 0.15 * size):int(cx + 0.15 * size)] = \
                (0, 0, 220) if k == 0 else (220, 60, 0)
        norm = box.original_to_norm(centers.astype(np.float32))
        cam = np.concatenate([np.full((2, 1), 2.0 * size / box.padded_side), norm], axis=1).astype(np.float32)
        p = People(center_preds=np.zeros((2, 2), np.float32), center_confs=np.ones(2, np.float32), cam=cam,
                   global_orient=np.zeros((2, 3), np.float32), body_pose=np.zeros((2, 69), np.float32),
                   betas=np.zeros((2, 10), np.float32), cam_trans=np.zeros((2, 3), np.float32),
                   track_ids=np.full(2, -1, np.int64))
        out.append(tr.assign(p, box, frame if with_frames else None).ids)
    return out


def test_shirt_colours_keep_ids_where_motion_cannot():
    plain, looked = _bounce(False), _bounce(True)
    assert plain[0][0] != plain[0][1]
    # while their torsos overlap (frames 10-12) the colours are mixed too; once apart, each has their own id again
    np.testing.assert_array_equal(plain[-1], plain[0][::-1])  # motion alone swapped them for good
    for ids in looked[:10] + looked[13:]:
        np.testing.assert_array_equal(ids, looked[0])


def test_torso_looks_skip_people_too_small_to_see():
    from app.tracking import LOOK_MIN_PX, torso_looks

    frame = np.zeros((200, 200, 3), np.uint8)
    frame[:, :, 2] = 200
    looks = torso_looks(frame, np.array([[100.0, 150.0], [100.0, 150.0]]),
                        np.array([LOOK_MIN_PX / 0.24 + 1, LOOK_MIN_PX / 0.24 - 1]))
    assert np.isclose(looks[0].sum(), 1.0) and looks[0].max() == 1.0  # one colour: one bin
    assert np.isnan(looks[1]).all()


def test_new_ids_skip_the_colours_of_people_still_tracked():
    from app.render.colors import PALETTE_BGR, track_color

    n = len(PALETTE_BGR)
    tr = Tracker()
    z = np.zeros((n, 69))
    xs = np.stack([np.arange(n) * 200.0, np.full(n, 300.0)], axis=1)
    assert tr.update(xs, np.full(n, 50.0), np.full(n, 0.2), z).ids.tolist() == list(range(n))
    for _ in range(tr.cfg.max_age + 1):  # everyone but person 0 leaves
        tr.update(xs[:1], np.full(1, 50.0), np.full(1, 0.2), z[:1])
    far = np.array([[5000.0, 300.0], [6000.0, 300.0]])
    ids = tr.update(np.concatenate([xs[:1], far]), np.full(3, 50.0), np.full(3, 0.2), z[:3]).ids
    # a plain count would give the newcomers ids n and n + 1, the first drawn in person 0's colour
    assert ids.tolist() == [0, n + 1, n + 2]
    assert len({track_color(int(i)) for i in ids}) == 3
