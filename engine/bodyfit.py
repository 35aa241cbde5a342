"""Inverse kinematics from BlazePose landmarks to the app's SMPL-posed body.

Why this exists: BlazePose gives 33 metric landmarks per person but no body pose, while everything downstream
(rendering, export, tracking) speaks SMPL rotations through :class:`engine.body.BodyModel`. An optimiser per
frame would be too slow for several people in real time, so this is a closed-form, vectorised IK:

* Landmarks become SMPL-24 joint targets. Where a joint has no landmark (pelvis, spine, neck, collars, head, hands,
  feet) it is placed relative to landmarks it does have; the placement fractions are calibrated once from the
  body's own rest skeleton (a fixed fraction fits one skeleton only: Anny's collars sit near the sternum, not 40 %
  of the way to the shoulder). BlazePose hips sit lower and wider than SMPL hip joints, corrected by two constants.
* Rotations are solved down the kinematic tree: the rest bone, carried by the parent's rotation, is swung onto the
  target bone. Joints with several children (pelvis, chest) and the head use a weighted Wahba fit instead. Swings
  leave twist free, so twist is set only where the landmarks show it: the bend plane of knees and elbows sets the
  thigh/upper-arm twist (which makes knees and elbows pure hinges, clamped so they cannot bend backwards), the hand
  plane sets forearm/wrist twist, the heel sets the foot twist, the shoulder line is spread over the spine.
* Joints whose landmarks are not visible keep a neutral local rotation instead of following noise.
* The rest skeleton comes from the body itself (zero pose forward), so the same code drives Anny and SMPL; for SMPL
  the betas are fitted to observed bone lengths (joints are linear in betas).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from engine.body.base import SMPL_PARENTS, BodyModel

__all__ = [
    "BLAZEPOSE_NAMES",
    "CAMERA_PAIRS",
    "BodyFitter",
    "FitResult",
    "JointMap",
    "calibrate_joint_map",
    "fit_camera",
    "landmarks_from_body",
    "landmarks_to_smpl_joints",
    "matrix_to_axis_angle",
    "pick_landmark_vertices",
]

BLAZEPOSE_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
BP = {name: i for i, name in enumerate(BLAZEPOSE_NAMES)}
# SMPL joints that are BlazePose landmarks themselves (SMPL index -> BlazePose index).
DIRECT: dict[int, int] = {16: 11, 17: 12, 18: 13, 19: 14, 20: 15, 21: 16, 4: 25, 5: 26, 7: 27, 8: 28}
# Pairs usable for the 2D camera fit (hips excluded: the BlazePose hip is not the SMPL hip).
CAMERA_PAIRS: tuple[tuple[int, int], ...] = tuple(sorted(DIRECT.items()))
# Landmarks taken from mesh vertices (the rest are joints).
SURFACE_LANDMARKS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 19, 20, 21, 22, 29, 30, 31, 32)
# Hinge axes of knees and elbows in the SMPL rest frame (T-pose, x = subject's left, y up, z forward): the knee
# flexes about +x, the left elbow about -y, the right elbow about +y (see train/poses.py for the sign conventions).
HINGE_AXIS: dict[int, tuple[float, float, float]] = {4: (1.0, 0.0, 0.0), 5: (1.0, 0.0, 0.0),
                                                     18: (0.0, -1.0, 0.0), 19: (0.0, 1.0, 0.0)}
_EPS = 1e-9


_DERIVED = ("pelvis", "spine1", "spine2", "spine3", "neck", "head", "collar", "hand", "foot")


@dataclass(frozen=True)
class JointMap:
    """Where SMPL joints without a landmark sit: ``p = a + c0 (b - a) + c1 aux1 + c2 aux2`` with per-joint anchors
    a, b and auxiliary vectors built from landmarks (see :func:`_anchors`).

    Attributes:
        hip_inset: BlazePose hips are moved this fraction of the way to their midpoint ...
        hip_raise: ... and up the torso axis by this fraction of the BlazePose hip width.
        coef: per derived joint name, (c0, c1, c2).
    """

    hip_inset: float = 0.15
    hip_raise: float = 0.10
    coef: dict[str, tuple[float, float, float]] = field(default_factory=lambda: {
        "pelvis": (0.0, 0.0, 0.0), "spine1": (0.2, 0.0, 0.0), "spine2": (0.45, 0.0, 0.0),
        "spine3": (0.75, 0.0, 0.0), "neck": (0.25, 0.0, 0.0), "head": (0.0, 0.0, 0.0), "collar": (0.4, 0.0, 0.0),
        "hand": (1.0, 0.0, 0.0), "foot": (1.0, 0.0, 0.0)})


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def _mid(w: np.ndarray, a: int, b: int) -> np.ndarray:
    return 0.5 * (w[..., a, :] + w[..., b, :])


Anchor = tuple[list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _torso_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Torso forward, up and lateral axes [N, 3] from the (corrected) hips and the shoulders; forward and up are
    scaled by the torso length, lateral is unit."""
    mid_hip = 0.5 * (joints[:, 1] + joints[:, 2])
    torso = 0.5 * (joints[:, 16] + joints[:, 17]) - mid_hip
    length = np.linalg.norm(torso, axis=-1, keepdims=True)
    lateral = _unit((joints[:, 1] - joints[:, 2]) + (joints[:, 16] - joints[:, 17]))
    return length * _unit(np.cross(lateral, torso)), torso, lateral


def _anchors(world: np.ndarray, joint_map: JointMap) -> tuple[np.ndarray, dict[str, Anchor]]:
    """Direct joints (hips corrected) and the anchors of the derived ones except the collars.

    Args:
        world: [N, 33, 3] landmarks.
        joint_map: supplies the hip correction.

    Returns:
        ``joints`` [N, 24, 3] with the direct joints and hips filled in, and per derived name its SMPL indices and
        the a, b, aux1, aux2 arrays, each [N, k, 3].
    """
    n = world.shape[0]
    joints = np.zeros((n, 24, 3))
    for smpl, bp in DIRECT.items():
        joints[:, smpl] = world[:, bp]
    lh, rh = world[:, 23], world[:, 24]
    mid_lm = 0.5 * (lh + rh)
    up = _unit(_mid(world, 11, 12) - mid_lm)
    raise_by = joint_map.hip_raise * np.linalg.norm(lh - rh, axis=-1, keepdims=True) * up
    joints[:, 1] = mid_lm + (1.0 - joint_map.hip_inset) * (lh - mid_lm) + raise_by
    joints[:, 2] = mid_lm + (1.0 - joint_map.hip_inset) * (rh - mid_lm) + raise_by
    mid_hip = 0.5 * (joints[:, 1] + joints[:, 2])
    mid_sh = _mid(world, 11, 12)
    fwd, _, lateral = _torso_axes(joints)
    ears = _mid(world, 7, 8)
    side = np.array([1.0, -1.0])[None, :, None]  # mirror sign for left/right pairs

    def one(x: np.ndarray) -> np.ndarray:
        return x[:, None]

    def pair(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return np.stack([left, right], axis=1)

    torso_anchor = (one(mid_hip), one(mid_sh), one(fwd), one(lateral))
    knuckles = pair(_mid(world, 17, 19), _mid(world, 18, 20))
    wrists, thumbs = pair(world[:, 15], world[:, 16]), pair(world[:, 21], world[:, 22])
    ankles, toes, heels = pair(world[:, 27], world[:, 28]), pair(world[:, 31], world[:, 32]), pair(
        world[:, 29], world[:, 30])
    hand_aux = thumbs - knuckles
    foot_aux = ankles - heels
    derived: dict[str, Anchor] = {
        "pelvis": ([0], *torso_anchor),
        "spine1": ([3], *torso_anchor),
        "spine2": ([6], *torso_anchor),
        "spine3": ([9], *torso_anchor),
        "neck": ([12], one(mid_sh), one(ears), one(fwd), one(lateral)),
        "head": ([15], one(ears), one(mid_sh), one(fwd), one(lateral)),
        "hand": ([22, 23], wrists, knuckles, hand_aux,
                 side * np.linalg.norm(hand_aux, axis=-1, keepdims=True) * _unit(np.cross(knuckles - wrists,
                                                                                          hand_aux))),
        "foot": ([10, 11], ankles, toes, foot_aux,
                 side * np.linalg.norm(foot_aux, axis=-1, keepdims=True) * _unit(np.cross(toes - ankles, foot_aux))),
    }
    return joints, derived


def _collar_anchor(joints: np.ndarray) -> Anchor:
    """Collars hang off spine3 towards the shoulders; aux1 = torso forward, aux2 = torso up."""
    fwd, torso, _ = _torso_axes(joints)
    spine3 = np.repeat(joints[:, 9:10], 2, axis=1)
    return [13, 14], spine3, joints[:, [16, 17]], np.repeat(fwd[:, None], 2, 1), np.repeat(torso[:, None], 2, 1)


def _place(anchor: Anchor, coef: tuple[float, float, float]) -> np.ndarray:
    _, a, b, aux1, aux2 = anchor
    return a + coef[0] * (b - a) + coef[1] * aux1 + coef[2] * aux2


def _confidence(visibility: np.ndarray) -> np.ndarray:
    """[N, 33] landmark visibility -> [N, 24] joint confidence (the weakest landmark a joint depends on)."""
    v = visibility
    torso = np.minimum.reduce([v[:, 11], v[:, 12], v[:, 23], v[:, 24]])
    conf = np.empty((v.shape[0], 24))
    for smpl, bp in DIRECT.items():
        conf[:, smpl] = v[:, bp]
    conf[:, 1] = np.minimum(v[:, 23], v[:, 24])
    conf[:, 2] = conf[:, 1]
    for j in (0, 3, 6, 9, 13, 14):
        conf[:, j] = torso
    conf[:, 12] = np.minimum(torso, np.minimum(v[:, 7], v[:, 8]))
    conf[:, 15] = np.minimum(v[:, 7], v[:, 8])
    conf[:, 22] = np.minimum.reduce([v[:, 15], v[:, 17], v[:, 19]])
    conf[:, 23] = np.minimum.reduce([v[:, 16], v[:, 18], v[:, 20]])
    conf[:, 10] = np.minimum(v[:, 27], v[:, 31])
    conf[:, 11] = np.minimum(v[:, 28], v[:, 32])
    return conf


def landmarks_to_smpl_joints(world: np.ndarray, visibility: np.ndarray, joint_map: JointMap | None = None,
                             torso_length: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose world landmarks -> SMPL-24 joint targets.

    Args:
        world: [N, 33, 3] metric landmarks (any right-handed axes; the app's are camera axes, hip-centred).
        visibility: [N, 33] in [0, 1].
        joint_map: placement of the joints without a landmark; default :class:`JointMap` (generic fractions),
            :class:`BodyFitter` uses one calibrated on its body.
        torso_length: [N] or scalar expected unbent mid-hip -> mid-shoulder length. When given, a torso shorter
            than that is taken as a forward-bent spine and the pelvis/spine joints are placed on a circular arc
            (pelvis upright-ish, chest tilted) instead of on the straight hip-shoulder line.

    Returns:
        ``joints`` [N, 24, 3] (same axes as ``world``) and ``confidence`` [N, 24] (the lowest visibility among
        the landmarks each joint is built from).
    """
    joint_map = joint_map or JointMap()
    world = np.asarray(world, dtype=np.float64).reshape(-1, 33, 3)
    joints, derived = _anchors(world, joint_map)
    for name, anchor in derived.items():
        joints[:, anchor[0]] = _place(anchor, joint_map.coef[name])
    if torso_length is not None:
        for name in ("pelvis", "spine1", "spine2", "spine3"):
            idx, a, b, fwd, lateral = derived[name]
            joints[:, idx] = _place_on_arc(a[:, 0], b[:, 0], fwd[:, 0], lateral[:, 0], joint_map.coef[name],
                                           torso_length)[:, None]
    collar = _collar_anchor(joints)
    joints[:, collar[0]] = _place(collar, joint_map.coef["collar"])
    return joints, _confidence(np.asarray(visibility, dtype=np.float64).reshape(-1, 33))


def _bend_angle(chord: np.ndarray, arc: np.ndarray, max_angle: float = np.radians(120.0)) -> np.ndarray:
    """Total turn of a circular arc of length ``arc`` whose chord is ``chord`` ([N] each), 0 when not shorter."""
    q = np.clip(chord / np.maximum(arc, _EPS), np.sinc(max_angle / 2.0 / np.pi), 1.0)
    half = np.sqrt(6.0 * (1.0 - q))  # sin(x)/x = q, two Newton steps from the small-angle solution
    for _ in range(3):
        f = np.sinc(half / np.pi) - q
        df = np.where(half > 1e-6, (np.cos(half) - np.sinc(half / np.pi)) / np.maximum(half, 1e-6), -half / 3.0)
        half = np.clip(half - f / np.where(np.abs(df) > 1e-9, df, -1e-9), 0.0, max_angle / 2.0)
    return 2.0 * half


def _place_on_arc(mid_hip: np.ndarray, mid_sh: np.ndarray, fwd: np.ndarray, lateral: np.ndarray,
                  coef: tuple[float, float, float], torso_length: np.ndarray | float) -> np.ndarray:
    """A torso joint on the forward-bent arc from mid-hip to mid-shoulder (see :func:`landmarks_to_smpl_joints`).

    Args:
        mid_hip, mid_sh, fwd, lateral: [N, 3] torso anchors (fwd scaled by the torso length, lateral unit).
        coef: the joint's (along, forward, lateral) coefficients.
        torso_length: [N] or scalar unbent torso length.

    Returns:
        [N, 3] joint positions; equal to the straight placement when the torso is not shorter than expected.
    """
    chord_vec = mid_sh - mid_hip
    chord = np.linalg.norm(chord_vec, axis=-1)
    u = chord_vec / np.maximum(chord, _EPS)[:, None]
    f = _unit(fwd)
    turn = _bend_angle(chord, np.broadcast_to(np.asarray(torso_length, dtype=np.float64), chord.shape))
    half = 0.5 * turn
    tangent0 = np.cos(half)[:, None] * u - np.sin(half)[:, None] * f
    normal0 = np.sin(half)[:, None] * u + np.cos(half)[:, None] * f
    arc_len = chord * np.where(half > 1e-6, half / np.maximum(np.sin(half), 1e-9), 1.0)
    theta = coef[0] * turn
    radius_sin = np.where(turn > 1e-6, arc_len * np.sin(theta) / np.maximum(turn, 1e-9), coef[0] * arc_len)
    radius_cos = np.where(turn > 1e-6, arc_len * (1.0 - np.cos(theta)) / np.maximum(turn, 1e-9), 0.0)
    point = mid_hip + radius_sin[:, None] * tangent0 + radius_cos[:, None] * normal0
    local_fwd = np.cos(theta - half)[:, None] * f - np.sin(theta - half)[:, None] * u
    return point + coef[1] * chord[:, None] * local_fwd + coef[2] * lateral


def _solve_coef(p: np.ndarray, anchor: Anchor) -> tuple[float, float, float]:
    """Least-squares coefficients of :func:`_place` reproducing the points ``p`` [N, k, 3]."""
    _, a, b, aux1, aux2 = anchor
    basis = np.stack([(b - a).reshape(-1), aux1.reshape(-1), aux2.reshape(-1)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, (p - a).reshape(-1), rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


def calibrate_joint_map(rest_joints: np.ndarray, rest_landmarks: np.ndarray,
                        base: JointMap | None = None) -> JointMap:
    """Fit the placement coefficients of :class:`JointMap` to one body's rest skeleton.

    Args:
        rest_joints: [24, 3] the body's joints in its rest pose.
        rest_landmarks: [33, 3] BlazePose-like landmarks of the same rest body, same frame
            (:func:`landmarks_from_body` with ``centre=False``).
        base: supplies the hip correction, which is a property of BlazePose, not of the body, and is kept.

    Returns:
        A :class:`JointMap` that reproduces ``rest_joints`` from ``rest_landmarks``.
    """
    base = base or JointMap()
    world = np.asarray(rest_landmarks, dtype=np.float64)[None]
    rest = np.asarray(rest_joints, dtype=np.float64)[None]
    _, derived = _anchors(world, base)
    coef = dict(base.coef)
    for name, anchor in derived.items():
        coef[name] = _solve_coef(rest[:, anchor[0]], anchor)
    # Collars are placed from the spine3 target, so calibrate them on the rest skeleton's own spine3.
    collar = _collar_anchor(rest)
    coef["collar"] = _solve_coef(rest[:, collar[0]], collar)
    return replace(base, coef=coef)


def pick_landmark_vertices(rest_vertices: np.ndarray, rest_joints: np.ndarray) -> np.ndarray:
    """Vertex ids of the surface landmarks (face, hand, foot points) found by geometry on a T-pose rest mesh.

    Args:
        rest_vertices: [V, 3] rest mesh, SMPL rest axes (x = subject's left, y up, z forward), arms along +-x.
        rest_joints: [24, 3] rest joints in the same axes.

    Returns:
        [33] int64: a vertex id for each index in ``SURFACE_LANDMARKS``, -1 for landmarks taken from joints.
    """
    v = np.asarray(rest_vertices, dtype=np.float64)
    j = np.asarray(rest_joints, dtype=np.float64)
    ids = np.full(33, -1, dtype=np.int64)
    head = np.flatnonzero((v[:, 1] > j[15, 1] - 0.25 * (j[15, 1] - j[12, 1])) & (np.abs(v[:, 0]) < abs(j[16, 0])))
    hv = v[head]
    width = np.ptp(hv[:, 0])
    ids[0] = head[np.argmax(hv[:, 2] - 4.0 * np.abs(hv[:, 0]))]
    nose = v[ids[0]]
    eye_y = nose[1] + 0.25 * width

    def front(x: float, y: float) -> int:
        return int(head[np.argmax(hv[:, 2] - 2.0 * np.hypot(hv[:, 0] - x, hv[:, 1] - y))])

    for side, (inner, eye, outer, ear, mouth) in ((1.0, (1, 2, 3, 7, 9)), (-1.0, (4, 5, 6, 8, 10))):
        ids[inner] = front(side * 0.12 * width, eye_y)
        ids[eye] = front(side * 0.22 * width, eye_y)
        ids[outer] = front(side * 0.32 * width, eye_y)
        ids[mouth] = front(side * 0.15 * width, nose[1] - 0.2 * width)
        ids[ear] = head[np.argmax(side * hv[:, 0] - 2.0 * np.abs(hv[:, 1] - 0.5 * (nose[1] + eye_y)))]
    for side, wrist, hand, ankle, (pinky, index, thumb, heel, toe) in (
            (1.0, 20, 22, 7, (17, 19, 21, 29, 31)), (-1.0, 21, 23, 8, (18, 20, 22, 30, 32))):
        hand_len = side * (j[hand, 0] - j[wrist, 0])
        palm = np.flatnonzero(side * (v[:, 0] - j[wrist, 0]) > 0.0)
        knuckles = palm[(side * (v[palm, 0] - j[hand, 0]) >= -0.05 * hand_len)
                        & (side * (v[palm, 0] - j[hand, 0]) <= 0.3 * hand_len)]
        ids[thumb] = palm[np.argmax(v[palm, 2])]
        ids[index] = knuckles[np.argmax(v[knuckles, 2])]
        ids[pinky] = knuckles[np.argmin(v[knuckles, 2])]
        foot = np.flatnonzero((v[:, 1] < j[ankle, 1]) & (side * v[:, 0] > 0.0))
        ids[heel] = foot[np.argmin(v[foot, 2] + 0.5 * (v[foot, 1] - v[foot, 1].min()))]
        ids[toe] = foot[np.argmax(v[foot, 2])]
    return ids


def landmarks_from_body(vertices: np.ndarray, joints: np.ndarray, vertex_ids: np.ndarray,
                        joint_map: JointMap | None = None, centre: bool = True) -> np.ndarray:
    """BlazePose-like world landmarks of posed bodies (for calibration and round-trip tests).

    Joint landmarks are the SMPL joints, except the hips, which are moved down and out by the inverse of the
    map's hip correction; surface landmarks are the vertices of :func:`pick_landmark_vertices`.

    Args:
        vertices: [N, V, 3] posed vertices.
        joints: [N, 24, 3] posed joints (same axes).
        vertex_ids: [33] from :func:`pick_landmark_vertices`.
        joint_map: supplies the hip correction to invert.
        centre: subtract the landmark mid-hip (as BlazePose does); False keeps the joints' frame.

    Returns:
        [N, 33, 3].
    """
    joint_map = joint_map or JointMap()
    vertices = np.asarray(vertices, dtype=np.float64)
    joints = np.asarray(joints, dtype=np.float64)
    out = np.zeros((joints.shape[0], 33, 3))
    for smpl, bp in DIRECT.items():
        out[:, bp] = joints[:, smpl]
    surface = list(SURFACE_LANDMARKS)
    out[:, surface] = vertices[:, vertex_ids[surface]]
    mid = 0.5 * (joints[:, 1] + joints[:, 2])
    up = _unit(0.5 * (joints[:, 16] + joints[:, 17]) - mid)
    keep = 1.0 - joint_map.hip_inset
    width = np.linalg.norm(joints[:, 1] - joints[:, 2], axis=-1, keepdims=True) / keep
    mid_lm = mid - joint_map.hip_raise * width * up
    out[:, 23] = mid_lm + (joints[:, 1] - mid) / keep
    out[:, 24] = mid_lm + (joints[:, 2] - mid) / keep
    return out - mid_lm[:, None] if centre else out


# ----------------------------------------------------------------------------------------------- rotations


def _skew(k: np.ndarray) -> np.ndarray:
    z = np.zeros_like(k[..., 0])
    return np.stack([z, -k[..., 2], k[..., 1], k[..., 2], z, -k[..., 0], -k[..., 1], k[..., 0], z],
                    axis=-1).reshape(*k.shape[:-1], 3, 3)


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotation about unit ``axis`` [..., 3] by ``angle`` [...] -> [..., 3, 3]."""
    k = _skew(axis)
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _swing(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit ``src`` onto unit ``dst`` ([..., 3] -> [..., 3, 3]); 180 degrees about an
    arbitrary perpendicular axis for opposite vectors."""
    cross = np.cross(src, dst)
    cos = np.sum(src * dst, axis=-1)
    sin = np.linalg.norm(cross, axis=-1)
    other = np.where(np.abs(src[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    axis = np.where((sin < 1e-6)[..., None], _unit(np.cross(src, other)), cross / np.maximum(sin, _EPS)[..., None])
    return _axis_angle(axis, np.arctan2(sin, cos))


def _twist_angle(axis: np.ndarray, current: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed angle about unit ``axis`` taking ``current`` onto ``target`` once both are projected off the axis.

    Returns:
        ``angle`` [...] and ``weight`` [...] in [0, 1] (how well the projections are defined).
    """
    pc = current - np.sum(current * axis, -1, keepdims=True) * axis
    pt = target - np.sum(target * axis, -1, keepdims=True) * axis
    nc, nt = np.linalg.norm(pc, axis=-1), np.linalg.norm(pt, axis=-1)
    angle = np.arctan2(np.sum(np.cross(pc, pt) * axis, -1), np.sum(pc * pt, -1))
    rel = np.minimum(nc / np.maximum(np.linalg.norm(current, axis=-1), _EPS),
                     nt / np.maximum(np.linalg.norm(target, axis=-1), _EPS))
    rel = np.where(np.minimum(nc, nt) > 1e-6, rel, 0.0)
    return angle, np.clip(rel / 0.35, 0.0, 1.0)  # full weight from ~20 degrees off the axis


def _hinge(rest_a: np.ndarray, rest_b: np.ndarray, rest_c: np.ndarray, tgt_a: np.ndarray, tgt_b: np.ndarray,
           tgt_c: np.ndarray, convention: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hinge axes of a two-bone limb a -> b -> c (hip-knee-ankle, shoulder-elbow-wrist).

    Args:
        rest_a, rest_b, rest_c, tgt_a, tgt_b, tgt_c: [N, k, 3] joint positions at rest and in the target.
        convention: [k, 3] hinge axis used where the rest limb is (nearly) straight.

    Returns:
        ``rest_axis`` [N, k, 3], ``target_axis`` [N, k, 3] and ``weight`` [N, k]: how much more the target is
        bent than the rest (0 when not, 1 from 20 degrees more), i.e. how well the target plane is defined.
    """
    def bend(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cross = np.cross(_unit(b - a), _unit(c - b))
        return cross, np.arctan2(np.linalg.norm(cross, axis=-1), np.sum(_unit(b - a) * _unit(c - b), -1))

    cross_r, bend_r = bend(rest_a, rest_b, rest_c)
    cross_t, bend_t = bend(tgt_a, tgt_b, tgt_c)
    rest_axis = np.where((bend_r > np.radians(5.0))[..., None], _unit(cross_r), convention)
    return rest_axis, _unit(cross_t), np.clip((bend_t - bend_r) / np.radians(20.0), 0.0, 1.0)


def _wahba(rest: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Rotation R minimising ``sum_k w_k |R rest_k - target_k|^2``.

    Args:
        rest: [N, K, 3]; target: [N, K, 3]; weight: [N, K].

    Returns:
        [N, 3, 3] (identity-like where the problem is degenerate).
    """
    b = np.einsum("nk,nki,nkj->nij", weight, target, rest)
    u, _, vt = np.linalg.svd(b)
    d = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    d = np.where(d == 0, 1.0, d)
    u = u.copy()
    u[:, :, 2] *= d[:, None]
    return u @ vt


def matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """Vectorised rotation matrices [..., 3, 3] -> axis-angle [..., 3] (angle in [0, pi]), stable near 0 and pi."""
    r = np.asarray(r, dtype=np.float64)
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1.0) * 0.5, -1.0, 1.0)
    angle = np.arccos(cos)
    vee = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    sin = np.sin(angle)
    small = np.where(angle < 1e-6, 0.5, angle / np.maximum(2.0 * sin, _EPS))
    out = vee * small[..., None]
    # Near pi the skew part vanishes: take the axis from the symmetric part (largest column of R + I).
    near_pi = angle > np.pi - 1e-3
    if np.any(near_pi):
        sym = r[near_pi] + np.eye(3)  # = 2 a a^T at exactly pi
        col = np.argmax(np.linalg.norm(sym, axis=-2), axis=-1)
        axis = _unit(np.take_along_axis(sym, col[:, None, None].repeat(3, 1), axis=-1)[..., 0])
        sign = np.where(np.sum(axis * vee[near_pi], -1) < 0, -1.0, 1.0)
        out[near_pi] = axis * (sign * angle[near_pi])[:, None]
    return out


# ----------------------------------------------------------------------------------------------- fitting


@dataclass
class FitResult:
    """IK results for N people (float32 arrays).

    Attributes:
        global_orient: [N, 3] root rotation, axis-angle, camera axes (includes the turn to camera).
        body_pose: [N, 69] local axis-angle of SMPL joints 1..23.
        betas: [N, 10] SMPL shape (zeros unless the body is SMPL).
        joints: [N, 24, 3] the body model's joints for this pose, root-aligned, camera axes.
        scale: [N] size of the person relative to the fitted body's rest skeleton (bone-length ratio).
        confidence: [N, 24] per-joint confidence of the targets.
        residual: [N, 24] distance (m) between target joints and ``scale * joints``, both mid-hip centred.
        mean_error: [N] confidence-weighted mean of ``residual`` over joints with confidence >= the threshold.
    """

    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    joints: np.ndarray
    scale: np.ndarray
    confidence: np.ndarray
    residual: np.ndarray
    mean_error: np.ndarray


# Bones used for the person's scale and the SMPL shape fit: differences of directly observed joints, as rows of a
# [K, 24] operator (mid-shoulder minus mid-hip for the torso).
_MEASURES: tuple[tuple[dict[int, float], tuple[int, ...]], ...] = (
    ({4: 1, 1: -1}, (4, 1)), ({5: 1, 2: -1}, (5, 2)), ({7: 1, 4: -1}, (7, 4)), ({8: 1, 5: -1}, (8, 5)),
    ({18: 1, 16: -1}, (18, 16)), ({19: 1, 17: -1}, (19, 17)), ({20: 1, 18: -1}, (20, 18)),
    ({21: 1, 19: -1}, (21, 19)), ({1: 1, 2: -1}, (1, 2)), ({16: 1, 17: -1}, (16, 17)),
    ({16: 0.5, 17: 0.5, 1: -0.5, 2: -0.5}, (16, 17, 1, 2)),
)


_RIGID_MEASURES = 9  # the first nine are rigid in SMPL's kinematics (limb bones, hip width)


def _measure_operator() -> tuple[np.ndarray, list[tuple[int, ...]]]:
    op = np.zeros((len(_MEASURES), 24))
    for k, (coef, _) in enumerate(_MEASURES):
        for j, c in coef.items():
            op[k, j] = c
    return op, [m[1] for m in _MEASURES]


class BodyFitter:
    """Closed-form IK from BlazePose world landmarks to a :class:`BodyModel` (see the module docstring).

    Args:
        body: the body model to drive.
        joint_map: joint placement; default: calibrated on ``body``'s rest skeleton.
        min_visibility: joints built from landmarks below this keep a neutral local rotation.
        shape_reg: ridge weight pulling SMPL betas to 0 (in units of squared metres per beta^2).
        neutral_pose: [69] local axis-angle used for unseen joints (default: zero, the rest pose).
    """

    def __init__(self, body: BodyModel, joint_map: JointMap | None = None, min_visibility: float = 0.5,
                 shape_reg: float = 1e-4, neutral_pose: np.ndarray | None = None) -> None:
        self.body = body
        self.min_visibility = float(min_visibility)
        self.shape_reg = float(shape_reg)
        self.fit_shape = body.shape_kind == "smpl_betas"
        zero = torch.zeros(1, 3), torch.zeros(1, 69)
        with torch.no_grad():
            out = body(*zero)
            rest_joints = out.joints[0, :24].double().numpy()
            rest_vertices = out.vertices[0].double().numpy()
            self.shape_dirs = np.zeros((0, 24, 3))
            if self.fit_shape:
                eye = torch.eye(10, body.num_shape)
                shaped = body(torch.zeros(10, 3), torch.zeros(10, 69), eye).joints[:, :24].double().numpy()
                self.shape_dirs = shaped - rest_joints[None]  # [10, 24, 3]
        self.rest_joints = rest_joints
        self.vertex_ids = pick_landmark_vertices(rest_vertices, rest_joints)
        base = joint_map or JointMap()
        self.rest_landmarks = landmarks_from_body(rest_vertices[None], rest_joints[None], self.vertex_ids, base,
                                                  centre=False)[0]
        self.joint_map = joint_map or calibrate_joint_map(rest_joints, self.rest_landmarks, base)
        neutral = np.zeros(69) if neutral_pose is None else np.asarray(neutral_pose, dtype=np.float64)
        self.neutral_local = np.concatenate([np.eye(3)[None], _axis_angle(
            _unit(neutral.reshape(23, 3)), np.linalg.norm(neutral.reshape(23, 3), axis=-1))], axis=0)
        self.measure_op, self.measure_joints = _measure_operator()

    # ------------------------------------------------------------------ shape
    def _fit_betas(self, target: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Ridge least squares of betas on the measured lengths (linearised around beta = 0, two Gauss-Newton steps).

        Args:
            target: [N, 24, 3] target joints; conf: [N, 24].

        Returns:
            [N, 10] betas clipped to +-3.
        """
        n = target.shape[0]
        op = self.measure_op[:_RIGID_MEASURES]  # shoulder width and torso length change with the pose
        lengths = np.linalg.norm(np.einsum("kj,njc->nkc", op, target), axis=-1)  # [N, K]
        weight = np.stack([np.min(conf[:, list(js)], axis=1) for js in self.measure_joints[: len(op)]], 1)
        weight = weight >= self.min_visibility
        dirs = np.einsum("kj,bjc->bkc", op, self.shape_dirs)  # [10, K, 3]
        base = op @ self.rest_joints  # [K, 3]
        betas = np.zeros((n, dirs.shape[0]))
        for _ in range(2):
            vec = base[None] + np.einsum("nb,bkc->nkc", betas, dirs)  # [N, K, 3]
            cur = np.linalg.norm(vec, axis=-1)
            jac = np.einsum("nkc,bkc->nkb", vec / np.maximum(cur, _EPS)[..., None], dirs)  # [N, K, 10]
            jw = jac * weight[..., None]
            lhs = np.einsum("nkb,nkc->nbc", jw, jac) + self.shape_reg * np.eye(dirs.shape[0])
            rhs = np.einsum("nkb,nk->nb", jw, lengths - cur) - self.shape_reg * betas
            betas = np.clip(betas + np.linalg.solve(lhs, rhs[..., None])[..., 0], -3.0, 3.0)
        out = np.zeros((n, 10))
        out[:, : betas.shape[1]] = betas
        return out

    # ------------------------------------------------------------------ IK
    def solve(self, world: np.ndarray, visibility: np.ndarray,
              rest_joints: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The IK alone (no body forward).

        Args:
            world: [N, 33, 3] world landmarks (camera axes).
            visibility: [N, 33].
            rest_joints: [N, 24, 3] per-person rest skeleton (default: the body's).

        Returns:
            ``local`` [N, 24, 3, 3] local rotations (root first), ``target`` [N, 24, 3], ``confidence`` [N, 24]
            and ``scale`` [N].
        """
        world = np.asarray(world, dtype=np.float64).reshape(-1, 33, 3)
        vis = np.asarray(visibility, dtype=np.float64).reshape(-1, 33)
        n = world.shape[0]
        rest = np.broadcast_to(self.rest_joints, (n, 24, 3)) if rest_joints is None else rest_joints
        target, conf = landmarks_to_smpl_joints(world, vis, self.joint_map)
        limb_scale = self._scale(target, conf, rest, limbs_only=True)
        rest_torso = np.linalg.norm(0.5 * (rest[:, 16] + rest[:, 17] - rest[:, 1] - rest[:, 2]), axis=-1)
        target, conf = landmarks_to_smpl_joints(world, vis, self.joint_map, limb_scale * rest_torso)
        ok = conf >= self.min_visibility
        glob = np.zeros((n, 24, 3, 3))
        lm_rest = self.rest_landmarks

        def bone(j: list[int], c: list[int]) -> tuple[np.ndarray, np.ndarray]:
            return _unit(rest[:, c] - rest[:, j]), _unit(target[:, c] - target[:, j])

        def aim(j: list[int], c: list[int]) -> np.ndarray:
            parent = glob[:, [SMPL_PARENTS[i] for i in j]]
            rest_b, tgt_b = bone(j, c)
            carried = np.einsum("nkab,nkb->nka", parent, rest_b)
            return _swing(carried, tgt_b) @ parent

        def twist(g: np.ndarray, axis: np.ndarray, rest_aux: np.ndarray, tgt_aux: np.ndarray, frac: float,
                  weight: np.ndarray, limit: float = np.pi) -> np.ndarray:
            cur = np.einsum("nkab,nkb->nka", g, np.broadcast_to(rest_aux, tgt_aux.shape))
            angle, w = _twist_angle(axis, cur, tgt_aux)
            angle = np.clip(frac * angle * w * weight, -limit, limit)
            return _axis_angle(axis, angle) @ g

        def commit(j: list[int], g: np.ndarray, good: np.ndarray) -> None:
            parent = glob[:, [SMPL_PARENTS[i] for i in j]] if j[0] > 0 else np.eye(3)
            neutral = parent @ self.neutral_local[j]
            glob[:, j] = np.where(good[..., None, None], g, neutral)

        # Root: hip line and torso axis (rest vs target).
        up_t, up_r = target[:, 6] - target[:, 0], rest[:, 6] - rest[:, 0]  # lower half of the (bent) spine
        vecs_r = np.stack([_unit(rest[:, 1] - rest[:, 2]), _unit(up_r)], 1)
        vecs_t = np.stack([_unit(target[:, 1] - target[:, 2]), _unit(up_t)], 1)
        root = _wahba(vecs_r, vecs_t, np.ones((n, 2)))
        root_ok = ok[:, 0]
        glob[:, 0] = np.where(root_ok[:, None, None], root, np.diag([1.0, -1.0, -1.0]))  # unseen: upright, facing

        # Thighs and upper arms: aim at the knee/elbow, twist so the knee/elbow bends about its hinge.
        for j, c, cc, limit in (([1, 2], [4, 5], [7, 8], np.radians(60)), ([16, 17], [18, 19], [20, 21], np.pi / 2)):
            if j[0] == 16:
                collars = aim([13, 14], j)
                commit([13, 14], collars, ok[:, [13, 14]] & ok[:, j])
            g = aim(j, c)
            hinge_r, hinge_t, bend = _hinge(rest[:, j], rest[:, c], rest[:, cc], target[:, j], target[:, c],
                                            target[:, cc], np.array([HINGE_AXIS[i] for i in c]))
            upper = _unit(target[:, c] - target[:, j])
            g = twist(g, upper, hinge_r, hinge_t, 1.0, bend * ok[:, cc], limit)
            commit(j, g, ok[:, j] & ok[:, c])
            if j[0] == 1:
                # Spine: aim each segment, spreading the shoulder-line twist; chest by a Wahba fit.
                sh_t = target[:, 16] - target[:, 17]
                sh_r = (rest[:, 16] - rest[:, 17])[:, None]
                for seg, nxt, frac in ((3, 6, 1.0 / 3.0), (6, 9, 0.5)):
                    g = aim([seg], [nxt])
                    g = twist(g, _unit(target[:, [nxt]] - target[:, [seg]]), sh_r, sh_t[:, None], frac,
                              ok[:, [16]] & ok[:, [17]])
                    commit([seg], g, ok[:, [seg]])
                self._reach_shoulders(glob, target, rest, ok)
                # Knees and ankles.
                commit([4, 5], aim([4, 5], [7, 8]), ok[:, [4, 5]] & ok[:, [7, 8]])
                g = aim([7, 8], [10, 11])
                heel_r = lm_rest[[29, 30]] - lm_rest[[27, 28]]
                heel_t = world[:, [29, 30]] - world[:, [27, 28]]
                g = twist(g, _unit(target[:, [10, 11]] - target[:, [7, 8]]), heel_r[None], heel_t, 1.0,
                          (np.minimum(vis[:, [29, 30]], vis[:, [27, 28]]) >= self.min_visibility).astype(float))
                commit([7, 8], g, ok[:, [7, 8]] & ok[:, [10, 11]])
                commit([10, 11], glob[:, [7, 8]], np.zeros((n, 2), bool))

        # Neck (aims at the head, half the face twist) and head (face Wahba).
        face = [7, 8, 2, 5, 0]
        face_r = lm_rest[face] - 0.5 * (lm_rest[7] + lm_rest[8])
        face_t = world[:, face] - _mid(world, 7, 8)[:, None]
        ear_r, ear_t = lm_rest[7] - lm_rest[8], world[:, 7] - world[:, 8]
        g = aim([12], [15])
        g = twist(g, _unit(target[:, [15]] - target[:, [12]]), ear_r[None, None], ear_t[:, None], 0.5,
                  ok[:, [15]].astype(float))
        commit([12], g, ok[:, [12]] & ok[:, [15]])
        head = _wahba(np.broadcast_to(face_r, face_t.shape), face_t, (vis[:, face] >= self.min_visibility) + 1e-6)
        commit([15], head[:, None], ok[:, [15]])

        # Elbows (half the hand twist) and wrists (hand plane); hands stay neutral.
        palm_r = lm_rest[[19, 20]] - lm_rest[[17, 18]]
        palm_t = world[:, [19, 20]] - world[:, [17, 18]]
        palm_ok = (np.minimum(vis[:, [19, 20]], vis[:, [17, 18]]) >= self.min_visibility).astype(float)
        for j, c, frac in (([18, 19], [20, 21], 0.5), ([20, 21], [22, 23], 1.0)):
            g = aim(j, c)
            g = twist(g, _unit(target[:, c] - target[:, j]), palm_r[None], palm_t, frac, palm_ok)
            commit(j, g, ok[:, j] & ok[:, c])
        commit([22, 23], glob[:, [20, 21]], np.zeros((n, 2), bool))

        local = np.empty_like(glob)
        local[:, 0] = glob[:, 0]
        parents = list(SMPL_PARENTS[1:])
        local[:, 1:] = np.swapaxes(glob[:, parents], -1, -2) @ glob[:, 1:]
        scale = self._scale(target, conf, rest)
        return local, target, conf, scale

    @staticmethod
    def _reach_shoulders(glob: np.ndarray, target: np.ndarray, rest: np.ndarray, ok: np.ndarray) -> None:
        """Chest rotation, then two CCD passes over spine2/spine1 so the spine chain (rest bone lengths) puts the
        shoulders where they are observed, whatever the bend; the chest is refitted at the reached spine3.

        Args:
            glob: [N, 24, 3, 3] global rotations, pelvis..spine2 set; updated in place (3, 6, 9).
            target: [N, 24, 3]; rest: [N, 24, 3]; ok: [N, 24] joint confidence flags.
        """
        n = target.shape[0]
        kids = [12, 16, 17]
        sh_t = (target[:, 16] - target[:, 17])[:, None]
        sh_r = (rest[:, 16] - rest[:, 17])[:, None]
        mid_sh_t = 0.5 * (target[:, 16] + target[:, 17])
        mid_sh_r = 0.5 * (rest[:, 16] + rest[:, 17])
        good = ok[:, 9:10]

        def chest(p9: np.ndarray) -> np.ndarray:
            vr = np.concatenate([rest[:, kids] - rest[:, None, 9], sh_r], 1)
            vt = np.concatenate([target[:, kids] - p9[:, None], sh_t], 1)
            return _wahba(vr, vt, np.ones((n, 4)))

        def chain() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            p0 = 0.5 * (target[:, 1] + target[:, 2]) - np.einsum(
                "nab,nb->na", glob[:, 0], 0.5 * (rest[:, 1] + rest[:, 2]) - rest[:, 0])
            p3 = p0 + np.einsum("nab,nb->na", glob[:, 0], rest[:, 3] - rest[:, 0])
            p6 = p3 + np.einsum("nab,nb->na", glob[:, 3], rest[:, 6] - rest[:, 3])
            return p3, p6, p6 + np.einsum("nab,nb->na", glob[:, 6], rest[:, 9] - rest[:, 6])

        glob[:, 9] = np.where(good[..., None], chest(chain()[2]), glob[:, 6])
        for _ in range(2):
            for joint, moved in ((6, [6, 9]), (3, [3, 6, 9])):
                p3, p6, p9 = chain()
                pivot = p6 if joint == 6 else p3
                reached = p9 + np.einsum("nab,nb->na", glob[:, 9], mid_sh_r - rest[:, 9])
                swing = _swing(_unit(reached - pivot), _unit(mid_sh_t - pivot))
                swing = np.where(good[..., None], swing, np.eye(3))
                glob[:, moved] = swing[:, None] @ glob[:, moved]
            glob[:, 9] = np.where(good[..., None], chest(chain()[2]), glob[:, 6])

    def _scale(self, target: np.ndarray, conf: np.ndarray, rest: np.ndarray, limbs_only: bool = False) -> np.ndarray:
        """[N] ratio of measured to rest lengths summed over the visible measures (1 when none is visible);
        ``limbs_only`` leaves out the torso, whose length changes when the spine bends."""
        op = self.measure_op[:-1] if limbs_only else self.measure_op
        lt = np.linalg.norm(np.einsum("kj,njc->nkc", op, target), axis=-1)
        lr = np.linalg.norm(np.einsum("kj,njc->nkc", op, rest), axis=-1)
        w = np.stack([np.min(conf[:, list(js)], axis=1) for js in self.measure_joints[: len(op)]], 1)
        w = w >= self.min_visibility
        num, den = np.sum(lt * w, 1), np.sum(lr * w, 1)
        return np.where(den > 0, num / np.maximum(den, _EPS), 1.0)

    def fit(self, world: np.ndarray, visibility: np.ndarray) -> FitResult:
        """Fit pose (and SMPL shape) to BlazePose world landmarks.

        Args:
            world: [N, 33, 3] metric world landmarks, camera axes (x right, y down, z away), hip-centred.
            visibility: [N, 33] landmark visibility (or visibility * presence) in [0, 1].

        Returns:
            :class:`FitResult`; N = 0 gives empty arrays.
        """
        world = np.asarray(world, dtype=np.float64).reshape(-1, 33, 3)
        visibility = np.asarray(visibility, dtype=np.float64).reshape(-1, 33)
        n = world.shape[0]
        betas = np.zeros((n, 10))
        rest = None
        if self.fit_shape and n:
            target, conf = landmarks_to_smpl_joints(world, visibility, self.joint_map)
            betas = self._fit_betas(target, conf)
            rest = self.rest_joints[None] + np.einsum("nb,bjc->njc", betas[:, : self.shape_dirs.shape[0]],
                                                      self.shape_dirs)
        if n == 0:
            empty = np.zeros((0, 24))
            return FitResult(np.zeros((0, 3), np.float32), np.zeros((0, 69), np.float32),
                             np.zeros((0, 10), np.float32), np.zeros((0, 24, 3), np.float32),
                             np.zeros(0, np.float32), empty.astype(np.float32), empty.astype(np.float32),
                             np.zeros(0, np.float32))
        local, target, conf, scale = self.solve(world, visibility, rest)
        aa = matrix_to_axis_angle(local)  # [N, 24, 3]
        global_orient, body_pose = aa[:, 0], aa[:, 1:].reshape(n, 69)
        shape = torch.from_numpy(betas[:, : self.body.num_shape]).float() if self.fit_shape else None
        with torch.no_grad():
            out = self.body(torch.from_numpy(global_orient).float(), torch.from_numpy(body_pose).float(), shape)
        joints = out.joints[:, :24].double().numpy()
        centred = target - 0.5 * (target[:, 1:2] + target[:, 2:3])
        residual = np.linalg.norm(centred - scale[:, None, None] * joints, axis=-1)
        w = conf * (conf >= self.min_visibility)
        mean_error = np.sum(residual * w, 1) / np.maximum(np.sum(w, 1), _EPS)
        f32 = np.float32
        return FitResult(global_orient.astype(f32), body_pose.astype(f32), betas.astype(f32), joints.astype(f32),
                         scale.astype(f32), conf.astype(f32), residual.astype(f32), mean_error.astype(f32))


def fit_camera(joints3d: np.ndarray, points2d: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least squares of the app's weak perspective ``points2d = s * joints3d[..., :2] + (tx, ty)``.

    Args:
        joints3d: [N, K, 3] root-aligned joints (camera axes, see :func:`engine.postprocess.project`).
        points2d: [N, K, 2] observed points in normalised [-1, 1] coordinates of the letterboxed square.
        weights: [N, K] non-negative weights (0 = ignore the point).

    Returns:
        [N, 3] (s, tx, ty); a row is NaN where fewer than two points have weight or the points coincide.
    """
    x = np.asarray(joints3d, dtype=np.float64)[..., :2]
    u = np.asarray(points2d, dtype=np.float64)
    w = np.clip(np.nan_to_num(np.asarray(weights, dtype=np.float64)), 0.0, None)
    w = np.where(np.isfinite(u).all(-1) & np.isfinite(x).all(-1), w, 0.0)
    x, u = np.nan_to_num(x), np.nan_to_num(u)
    total = np.sum(w, axis=1)
    safe = np.maximum(total, _EPS)[:, None]
    xm = np.sum(w[..., None] * x, 1) / safe
    um = np.sum(w[..., None] * u, 1) / safe
    dx, du = x - xm[:, None], u - um[:, None]
    den = np.sum(w * np.sum(dx * dx, -1), 1)
    num = np.sum(w * np.sum(dx * du, -1), 1)
    s = num / np.maximum(den, _EPS)
    cam = np.concatenate([s[:, None], um - s[:, None] * xm], axis=1)
    usable = (np.sum(w > 0, axis=1) >= 2) & (den > 1e-12)
    return np.where(usable[:, None], cam, np.nan)


def original_to_normalised(points: np.ndarray, padded_side: int, pad_top: int, pad_left: int) -> np.ndarray:
    """Original-frame pixels [..., 2] -> normalised [-1, 1] letterbox coordinates (inverse of
    :meth:`engine.types.Letterbox.norm_to_original`)."""
    out = np.asarray(points, dtype=np.float64)[..., :2].copy()
    out[..., 0] += pad_left
    out[..., 1] += pad_top
    return out * (2.0 / padded_side) - 1.0
