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
* Joints whose landmarks are not visible keep a neutral local rotation instead of following noise; the default
  neutral pose is relaxed (arms hanging at the sides, :data:`RELAXED_POSE`), so an occluded arm does not stick out
  sideways as it would in the T-pose.
* The rest skeleton comes from the body itself (zero pose forward), so the same code drives Anny and SMPL; for SMPL
  the betas are fitted to observed bone lengths (joints are linear in betas).

Speed: this runs every frame for every person on CPU cores shared with the detector, the landmark networks,
rendering and encoding (budget ~3 ms for 5 people), and the arrays are tiny ([N, k, 3] with N <= 10), so the cost is
the per-call overhead of numpy, not arithmetic. Hence: cross products, norms and Rodrigues matrices are one or two
ufunc/matmul calls each (``np.cross``/``np.linalg.norm`` cost 10-50 us per call here); the joints of one depth of the
kinematic tree are solved together as one stacked array (:meth:`BodyFitter._aim` per level, six levels); everything
that depends only on the rest skeleton is computed once (:class:`_RestTerms`); the target side of every twist is
computed once for all joints (:class:`_TwistTarget`); the derived joints are placed by one broadcast expression per
group and the landmark placement is done once per solve (the bent-spine arc only moves the spine joints). There are
no Python loops over people.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from engine.body.base import SMPL_PARENTS, BodyModel

__all__ = [
    "BLAZEPOSE_NAMES",
    "CAMERA_PAIRS",
    "FACE_LANDMARKS",
    "RELAXED_POSE",
    "BodyFitter",
    "FitResult",
    "JointMap",
    "calibrate_joint_map",
    "fit_camera",
    "forward_kinematics",
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
# Face landmarks (nose, eyes, ears) that the fit also poses on the body (:attr:`FitResult.face`), for the camera:
# without them a person seen from the chest up is placed by the two shoulders alone, and the body's head lands
# wherever its proportions put it (measured on close-up portraits: at the chin or the mouth).
FACE_LANDMARKS: tuple[int, ...] = (0, 2, 5, 7, 8)
# Landmarks taken from mesh vertices (the rest are joints).
SURFACE_LANDMARKS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 19, 20, 21, 22, 29, 30, 31, 32)
# Hinge axes of knees and elbows in the SMPL rest frame (T-pose, x = subject's left, y up, z forward): the knee
# flexes about +x, the left elbow about -y, the right elbow about +y (see train/poses.py for the sign conventions).
HINGE_AXIS: dict[int, tuple[float, float, float]] = {4: (1.0, 0.0, 0.0), 5: (1.0, 0.0, 0.0),
                                                     18: (0.0, -1.0, 0.0), 19: (0.0, 1.0, 0.0)}
_EPS = 1e-9




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



# ----------------------------------------------------------------------------------------------- small helpers
# np.cross and np.linalg.norm cost 10-50 us per call on the tiny arrays used here (axis juggling and argument
# checks in Python); the IK needs dozens per frame, so they are written as one or two ufunc/matmul calls.

_LEVI_CIVITA = np.zeros((9, 3))  # outer(a, b).reshape(9) @ _LEVI_CIVITA = cross(a, b)
_SKEW_OF = np.zeros((3, 9))  # k @ _SKEW_OF = the cross-product matrix [k]x, flattened
for _i, _j, _k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    _LEVI_CIVITA[3 * _j + _k, _i], _LEVI_CIVITA[3 * _k + _j, _i] = 1.0, -1.0
    _SKEW_OF[_k, 3 * _i + _j], _SKEW_OF[_k, 3 * _j + _i] = -1.0, 1.0
_EYE = np.eye(3)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product over the last axis."""
    return np.add.reduce(a * b, axis=-1)


def _norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis (the same arithmetic as ``np.linalg.norm(v, axis=-1)``, less overhead)."""
    return np.sqrt(np.add.reduce(v * v, axis=-1))


def _unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit length over the last axis (zero stays zero)."""
    return v / np.maximum(_norm(v), _EPS)[..., None]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis of broadcastable [..., 3] arrays, as one outer product and one matmul."""
    outer = a[..., :, None] * b[..., None, :]
    return outer.reshape((*outer.shape[:-2], 9)) @ _LEVI_CIVITA


def _mid(w: np.ndarray, a: int, b: int) -> np.ndarray:
    return 0.5 * (w[..., a, :] + w[..., b, :])


Anchor = tuple[list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# Derived joints placed from the torso (a, b from mid-hip, mid-shoulder, mid-ear; aux = torso forward, lateral) and
# from the limb ends (a = wrist/ankle, b = knuckles/toes, aux = thumb/heel vectors): SMPL index and rows of the
# point table built in _place_joints (0 mid-hip, 1 mid-shoulder, 2 mid-ear).
_TORSO_NAMES = ("pelvis", "spine1", "spine2", "spine3", "neck", "head")
_TORSO_JOINTS = [0, 3, 6, 9, 12, 15]
_TORSO_A, _TORSO_B = [0, 0, 0, 0, 1, 2], [1, 1, 1, 1, 2, 1]
_END_NAMES = ("hand", "hand", "foot", "foot")
_END_JOINTS = [22, 23, 10, 11]
_END_SIDE = np.array([1.0, -1.0, 1.0, -1.0])[:, None]  # mirror sign for left/right
# Landmark index tables: midpoints (mid-hip landmarks, shoulders, ears, left and right knuckles) and the limb ends
# (into the landmarks extended by those midpoints: 33 + i is midpoint i).
_MID_A, _MID_B = [23, 11, 7, 17, 18], [24, 12, 8, 19, 20]
_END_A, _END_B = [15, 16, 27, 28], [36, 37, 31, 32]
_END_AUX_FROM, _END_AUX_TO = [36, 37, 29, 30], [21, 22, 27, 28]  # aux1 = to - from (knuckles -> thumb, heel -> ankle)
_DIRECT_SMPL, _DIRECT_BP = list(DIRECT), list(DIRECT.values())
# Per SMPL joint, the landmarks its confidence is the minimum of (padded by repetition).
_CONF_SOURCES: dict[int, tuple[int, ...]] = {
    **{smpl: (bp,) for smpl, bp in DIRECT.items()}, 1: (23, 24), 2: (23, 24),
    **{j: (11, 12, 23, 24) for j in (0, 3, 6, 9, 13, 14)}, 12: (11, 12, 23, 24, 7, 8), 15: (7, 8),
    22: (15, 17, 19), 23: (16, 18, 20), 10: (27, 31), 11: (28, 32)}
_CONF_TABLE = np.array([list(_CONF_SOURCES[j]) + [_CONF_SOURCES[j][0]] * (6 - len(_CONF_SOURCES[j]))
                        for j in range(24)])


@dataclass(frozen=True)
class _Coef:
    """A :class:`JointMap`'s coefficients as arrays (built once per map, see :func:`_coef_arrays`)."""

    torso: np.ndarray  # [3, 6, 1]: c0, c1, c2 for the torso rows
    end: np.ndarray  # [3, 4, 1]: c0, c1, c2 for the limb-end rows
    collar: tuple[float, float, float]
    arc: np.ndarray  # [3, 4]: c0, c1, c2 of pelvis, spine1..3 for the bent-spine arc


def _coef_arrays(joint_map: JointMap) -> _Coef:
    torso = np.array([joint_map.coef[name] for name in _TORSO_NAMES]).T[..., None]
    end = np.array([joint_map.coef[name] for name in _END_NAMES]).T[..., None]
    return _Coef(torso, end, tuple(joint_map.coef["collar"]), torso[:, :4, 0].copy())


def _torso_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Torso forward, up and lateral axes [N, 3] from the (corrected) hips and the shoulders; forward and up are
    scaled by the torso length, lateral is unit."""
    mid_hip = 0.5 * (joints[:, 1] + joints[:, 2])
    torso = 0.5 * (joints[:, 16] + joints[:, 17]) - mid_hip
    length = _norm(torso)[:, None]
    lateral = _unit((joints[:, 1] - joints[:, 2]) + (joints[:, 16] - joints[:, 17]))
    return length * _unit(_cross(lateral, torso)), torso, lateral


@dataclass
class _Placement:
    """Straight joint placement of :func:`_place_joints`, with the anchors the later steps and calibration need."""

    joints: np.ndarray  # [N, 24, 3]
    points: np.ndarray  # [N, 3, 3] mid-hip (corrected hips), mid-shoulder, mid-ear
    fwd: np.ndarray  # [N, 3] torso forward scaled by the torso length
    torso: np.ndarray  # [N, 3] mid-hip -> mid-shoulder
    lateral: np.ndarray  # [N, 3] unit
    end: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # a, b, aux1, aux2 of the limb ends, [N, 4, 3]


def _place_joints(world: np.ndarray, joint_map: JointMap, coef: _Coef) -> _Placement:
    """Direct joints, corrected hips and the derived joints on the straight hip-shoulder line (no collars yet).

    Every derived joint is ``a + c0 (b - a) + c1 aux1 + c2 aux2`` (see :class:`JointMap`); all torso rows and all
    limb-end rows are placed by one broadcast expression each.

    Args:
        world: [N, 33, 3] landmarks.
        joint_map: supplies the hip correction; coef: its coefficients (:func:`_coef_arrays`).
    """
    n = world.shape[0]
    joints = np.zeros((n, 24, 3))
    joints[:, _DIRECT_SMPL] = world[:, _DIRECT_BP]
    ext = np.concatenate([world, 0.5 * (world[:, _MID_A] + world[:, _MID_B])], axis=1)  # [N, 38, 3]
    mid_lm, mid_sh = ext[:, 33], ext[:, 34]
    lh, rh = world[:, 23], world[:, 24]
    up = _unit(mid_sh - mid_lm)
    raise_by = joint_map.hip_raise * _norm(lh - rh)[:, None] * up
    joints[:, 1:3] = mid_lm[:, None] + (1.0 - joint_map.hip_inset) * (world[:, 23:25] - mid_lm[:, None]) \
        + raise_by[:, None]
    fwd, torso, lateral = _torso_axes(joints)
    points = np.stack([0.5 * (joints[:, 1] + joints[:, 2]), mid_sh, ext[:, 35]], axis=1)
    a, b = points[:, _TORSO_A], points[:, _TORSO_B]
    c0, c1, c2 = coef.torso
    joints[:, _TORSO_JOINTS] = a + c0 * (b - a) + c1 * fwd[:, None] + c2 * lateral[:, None]
    a, b = ext[:, _END_A], ext[:, _END_B]
    aux1 = ext[:, _END_AUX_TO] - ext[:, _END_AUX_FROM]
    aux2 = _END_SIDE * _norm(aux1)[..., None] * _unit(_cross(b - a, aux1))
    c0, c1, c2 = coef.end
    joints[:, _END_JOINTS] = a + c0 * (b - a) + c1 * aux1 + c2 * aux2
    return _Placement(joints, points, fwd, torso, lateral, (a, b, aux1, aux2))


def _collar_anchor(joints: np.ndarray, axes: tuple[np.ndarray, np.ndarray] | None = None) -> Anchor:
    """Collars hang off spine3 towards the shoulders; aux1 = torso forward, aux2 = torso up.

    ``axes`` = (fwd, torso) of :func:`_torso_axes` when already known (the hips and shoulders are the same)."""
    fwd, torso = _torso_axes(joints)[:2] if axes is None else axes
    spine3 = joints[:, 9:10]
    return [13, 14], spine3, joints[:, 16:18], fwd[:, None], torso[:, None]


def _place(anchor: Anchor, coef: tuple[float, float, float]) -> np.ndarray:
    _, a, b, aux1, aux2 = anchor
    return a + coef[0] * (b - a) + coef[1] * aux1 + coef[2] * aux2


def _confidence(visibility: np.ndarray) -> np.ndarray:
    """[N, 33] landmark visibility -> [N, 24] joint confidence (the weakest landmark a joint depends on)."""
    return np.minimum.reduce(visibility[:, _CONF_TABLE], axis=-1)


def _finish_joints(place: _Placement, coef: _Coef, torso_length: np.ndarray | float | None) -> np.ndarray:
    """Bend the spine onto the arc (when ``torso_length`` is given) and place the collars; returns the joints."""
    joints = place.joints
    if torso_length is not None:
        joints[:, _TORSO_JOINTS[:4]] = _place_on_arc(place.points[:, 0], place.points[:, 1], place.fwd,
                                                     place.lateral, coef.arc, torso_length)
    joints[:, 13:15] = _place(_collar_anchor(joints, (place.fwd, place.torso)), coef.collar)
    return joints


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
    coef = _coef_arrays(joint_map)
    world = np.asarray(world, dtype=np.float64).reshape(-1, 33, 3)
    joints = _finish_joints(_place_joints(world, joint_map, coef), coef, torso_length)
    return joints, _confidence(np.asarray(visibility, dtype=np.float64).reshape(-1, 33))


def _bend_angle(chord: np.ndarray, arc: np.ndarray, max_angle: float = np.radians(120.0)) -> np.ndarray:
    """Total turn of a circular arc of length ``arc`` whose chord is ``chord`` ([N] each), 0 when not shorter."""
    q = np.clip(chord / np.maximum(arc, _EPS), np.sinc(max_angle / 2.0 / np.pi), 1.0)
    half = np.sqrt(6.0 * (1.0 - q))  # sin(x)/x = q, Newton steps from the small-angle solution
    for _ in range(3):
        sinc = np.sinc(half / np.pi)
        f = sinc - q
        df = np.where(half > 1e-6, (np.cos(half) - sinc) / np.maximum(half, 1e-6), -half / 3.0)
        half = np.clip(half - f / np.where(np.abs(df) > 1e-9, df, -1e-9), 0.0, max_angle / 2.0)
    return 2.0 * half


def _place_on_arc(mid_hip: np.ndarray, mid_sh: np.ndarray, fwd: np.ndarray, lateral: np.ndarray,
                  coef: np.ndarray, torso_length: np.ndarray | float) -> np.ndarray:
    """Torso joints on the forward-bent arc from mid-hip to mid-shoulder (see :func:`landmarks_to_smpl_joints`).

    Args:
        mid_hip, mid_sh, fwd, lateral: [N, 3] torso anchors (fwd scaled by the torso length, lateral unit).
        coef: [3, K] per joint its (along, forward, lateral) coefficients.
        torso_length: [N] or scalar unbent torso length.

    Returns:
        [N, K, 3] joint positions; equal to the straight placement when the torso is not shorter than expected.
    """
    chord_vec = mid_sh - mid_hip
    chord = _norm(chord_vec)
    u = chord_vec / np.maximum(chord, _EPS)[:, None]
    f = _unit(fwd)
    turn = _bend_angle(chord, np.broadcast_to(np.asarray(torso_length, dtype=np.float64), chord.shape))
    half = 0.5 * turn
    sin_h, cos_h = np.sin(half)[:, None], np.cos(half)[:, None]
    tangent0 = cos_h * u - sin_h * f
    normal0 = sin_h * u + cos_h * f
    arc_len = chord * np.where(half > 1e-6, half / np.maximum(np.sin(half), 1e-9), 1.0)
    turn, half, arc_len, chord = turn[:, None], half[:, None], arc_len[:, None], chord[:, None]
    theta = coef[0] * turn  # [N, K]
    bent = turn > 1e-6
    radius_sin = np.where(bent, arc_len * np.sin(theta) / np.maximum(turn, 1e-9), coef[0] * arc_len)
    radius_cos = np.where(bent, arc_len * (1.0 - np.cos(theta)) / np.maximum(turn, 1e-9), 0.0)
    point = mid_hip[:, None] + radius_sin[..., None] * tangent0[:, None] + radius_cos[..., None] * normal0[:, None]
    local_fwd = np.cos(theta - half)[..., None] * f[:, None] - np.sin(theta - half)[..., None] * u[:, None]
    return point + (coef[1] * chord)[..., None] * local_fwd + coef[2][:, None] * lateral[:, None]


def _solve_coef(p: np.ndarray, anchor: Anchor) -> tuple[float, float, float]:
    """Least-squares coefficients of :func:`_place` reproducing the points ``p`` [N, k, 3]."""
    _, a, b, aux1, aux2 = anchor
    a, b, aux1, aux2 = np.broadcast_arrays(a, b, aux1, aux2)
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
    place = _place_joints(world, base, _coef_arrays(base))
    coef = dict(base.coef)
    fwd, lateral = place.fwd[:, None], place.lateral[:, None]
    for row, (name, joint) in enumerate(zip(_TORSO_NAMES, _TORSO_JOINTS)):
        a, b = place.points[:, _TORSO_A[row]][:, None], place.points[:, _TORSO_B[row]][:, None]
        coef[name] = _solve_coef(rest[:, [joint]], ([joint], a, b, fwd, lateral))
    for name in ("hand", "foot"):
        rows = [i for i, end in enumerate(_END_NAMES) if end == name]
        coef[name] = _solve_coef(rest[:, [_END_JOINTS[i] for i in rows]],
                                 ([], *(x[:, rows] for x in place.end)))
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


def _axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotation about unit ``axis`` [..., 3] by ``angle`` [...] -> [..., 3, 3] (Rodrigues,
    ``cos I + sin [k]x + (1 - cos) k k^T``; identity for a zero axis and angle 0)."""
    s, c = np.sin(angle), np.cos(angle)
    skew = (axis * s[..., None]) @ _SKEW_OF
    outer = (axis * (1.0 - c)[..., None])[..., :, None] * axis[..., None, :]
    return outer + skew.reshape(outer.shape) + c[..., None, None] * _EYE


def _swing(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit ``src`` onto unit ``dst`` ([..., 3] -> [..., 3, 3]); 180 degrees about an
    arbitrary perpendicular axis for opposite vectors.

    With ``v = src x dst`` and ``c = src . dst`` this is ``c I + [v]x + v v^T / (1 + c)`` (Rodrigues without the
    trigonometry); near-opposite vectors, where ``1 + c`` loses precision, take the axis-angle route."""
    cross = _cross(src, dst)
    cos = _dot(src, dst)
    if (cos < -0.9999).any():
        return _swing_axis_angle(src, cross, cos)
    outer = (cross / (1.0 + cos)[..., None])[..., :, None] * cross[..., None, :]
    return outer + (cross @ _SKEW_OF).reshape(outer.shape) + cos[..., None, None] * _EYE


def _swing_axis_angle(src: np.ndarray, cross: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """:func:`_swing` through an explicit axis and angle (stable for opposite vectors)."""
    sin = _norm(cross)
    axis = cross / np.maximum(sin, _EPS)[..., None]
    degenerate = sin < 1e-6
    if degenerate.any():  # (anti)parallel: any axis perpendicular to src
        other = np.where(np.abs(src[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        axis = np.where(degenerate[..., None], _unit(_cross(src, other)), axis)
    return _axis_angle(axis, np.arctan2(sin, cos))


@dataclass
class _TwistTarget:
    """The target side of the twists about the target bones, computed once for all aimed joints ([N, K, ...]).

    Attributes:
        basis: [N, K, 3, 3] rows ``p``, ``p x a`` and ``a``: the target auxiliary vector projected off the unit
            twist axis ``a``, the same turned 90 degrees about ``a``, and ``a``. A vector ``c`` maps to
            (x, y, z) = ``basis @ c``: its twist angle to the target is ``atan2(y, x)`` and its distance from the
            axis ``hypot(x, y) / |p|``.
        inv_proj_norm: [N, K] ``1 / |p|``.
        rel: [N, K] ``|p| / |aux|`` (how far the target vector is off the axis), 0 where ``|p| <= 1e-6``.
        outer, ortho, skew: [N, K, 3, 3] ``a a^T``, ``I - a a^T`` and ``[a]x`` (Rodrigues terms about ``a``).
    """

    basis: np.ndarray
    inv_proj_norm: np.ndarray
    rel: np.ndarray
    outer: np.ndarray
    ortho: np.ndarray
    skew: np.ndarray

    @classmethod
    def of(cls, axis: np.ndarray, target: np.ndarray) -> _TwistTarget:
        proj = target - _dot(target, axis)[..., None] * axis
        proj_norm = _norm(proj)
        rel = proj_norm / np.maximum(_norm(target), _EPS) * (proj_norm > 1e-6)
        outer = axis[..., :, None] * axis[..., None, :]
        return cls(np.stack([proj, _cross(proj, axis), axis], axis=-2), 1.0 / np.maximum(proj_norm, _EPS), rel,
                   outer, _EYE - outer, (axis @ _SKEW_OF).reshape(outer.shape))

    def __getitem__(self, k: slice) -> _TwistTarget:
        return _TwistTarget(*(getattr(self, f)[:, k] for f in
                              ("basis", "inv_proj_norm", "rel", "outer", "ortho", "skew")))

    def rotation(self, angle: np.ndarray) -> np.ndarray:
        """[N, K, 3, 3] rotations about the axes by ``angle`` [N, K]."""
        return self.outer + np.cos(angle)[..., None, None] * self.ortho + np.sin(angle)[..., None, None] * self.skew


def _twist_angle(tw: _TwistTarget, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed angle about the twist axis taking ``current`` [N, K, 3] onto the target once both are projected off
    the axis.

    Returns:
        ``angle`` [N, K] and ``weight`` [N, K] in [0, 1] (how well the projections are defined).
    """
    xyz = tw.basis @ current[..., None]
    x, y, z = xyz[..., 0, 0], xyz[..., 1, 0], xyz[..., 2, 0]
    off_axis = np.hypot(x, y) * tw.inv_proj_norm  # |current projected off the axis|
    rel = np.minimum(off_axis / np.maximum(np.hypot(off_axis, z), _EPS), tw.rel) * (off_axis > 1e-6)
    return np.arctan2(y, x), np.minimum(rel / 0.35, 1.0)  # full weight from ~20 degrees off the axis


def _bend(upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bend plane normal (unnormalised) and bend angle of two unit bones [..., 3]."""
    cross = _cross(upper, lower)
    return cross, np.arctan2(_norm(cross), _dot(upper, lower))


def _rest_hinge(upper: np.ndarray, lower: np.ndarray, convention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hinge axes [..., k, 3] and bend angles [..., k] of rest limbs (unit bones ``upper``, ``lower``); the
    ``convention`` axes [k, 3] where the rest limb is (nearly) straight."""
    cross, angle = _bend(upper, lower)
    return np.where((angle > np.radians(5.0))[..., None], _unit(cross), convention), angle


def _hinge(upper: np.ndarray, lower: np.ndarray, rest_bend: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hinge axes of two-bone target limbs (hip-knee-ankle, shoulder-elbow-wrist) from their unit bones [N, k, 3].

    Returns:
        ``target_axis`` [N, k, 3] and ``weight`` [N, k]: how much more the target is bent than the rest
        (``rest_bend``; 0 when not, 1 from 20 degrees more), i.e. how well the target plane is defined.
    """
    cross, angle = _bend(upper, lower)
    return _unit(cross), np.clip((angle - rest_bend) / np.radians(20.0), 0.0, 1.0)


def _moments(rest: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """``sum_k w_k target_k rest_k^T`` [N, 3, 3] of [N, K, 3] vector pairs (the matrix :func:`_wahba` needs)."""
    if weight is not None:
        target = target * weight[..., None]
    return np.swapaxes(target, -1, -2) @ rest


def _nearest_rotation(moments: np.ndarray) -> np.ndarray:
    """Rotation R maximising ``trace(R^T B)`` for B [N, 3, 3] (SVD, reflection fixed)."""
    u, _, vt = np.linalg.svd(moments)
    rot = u @ vt
    flip = np.linalg.det(rot) < 0.0
    if flip.any():
        u[..., 2] *= np.where(flip, -1.0, 1.0)[..., None]
        rot = u @ vt
    return rot


def _wahba(rest: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Rotation R minimising ``sum_k w_k |R rest_k - target_k|^2``.

    Args:
        rest: [N, K, 3]; target: [N, K, 3]; weight: [N, K] (default 1).

    Returns:
        [N, 3, 3] (identity-like where the problem is degenerate).
    """
    return _nearest_rotation(_moments(rest, target, weight))


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
        face: [N, 5, 3] the body's own :data:`FACE_LANDMARKS` in this pose (carried rigidly by the head joint),
            in the frame of ``joints``.
    """

    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    joints: np.ndarray
    scale: np.ndarray
    confidence: np.ndarray
    residual: np.ndarray
    mean_error: np.ndarray
    face: np.ndarray


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




# The relaxed pose used for joints that are not seen (instead of the T-pose): arms hanging at the sides (shoulders
# rotated 70 degrees down about the forward axis, elbows bent 15 degrees forward), everything else at rest. Local
# axis-angle per SMPL joint (SMPL rest axes; signs as in train/poses.py: left arm down = negative z at the left
# shoulder, left elbow flexes about -y).
RELAXED_POSE = np.zeros((23, 3))
RELAXED_POSE[15] = (0.0, 0.0, -np.radians(70.0))  # left shoulder (joint 16)
RELAXED_POSE[16] = (0.0, 0.0, np.radians(70.0))  # right shoulder
RELAXED_POSE[17] = (0.0, -np.radians(15.0), 0.0)  # left elbow (joint 18)
RELAXED_POSE[18] = (0.0, np.radians(15.0), 0.0)  # right elbow
RELAXED_POSE = RELAXED_POSE.reshape(69)
RELAXED_POSE.flags.writeable = False

# The joints aimed at a child (rest bone swung onto the target bone, then twisted about it), in "slots" grouped by
# depth in the kinematic tree: one batch of array ops solves a whole level (the levels only need their parents).
_AIM = (1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 16, 17, 18, 19, 20, 21)
_AIM_CHILD = (4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 17, 18, 19, 20, 21, 22, 23)
_GOOD_WITH = tuple(c if j not in (3, 6) else j for j, c in zip(_AIM, _AIM_CHILD))  # spine: own confidence only
# Slot ranges: hips + spine1 | knees + spine2 | (chest CCD) ankles, neck, collars | shoulders | elbows | wrists.
_LEVELS = ((0, 3), (3, 6), (6, 11), (11, 13), (13, 15), (15, 17))
_CHEST_LEVEL = 2  # the chest/spine CCD (:meth:`BodyFitter._reach_shoulders`) runs before this level
# Twist of each slot about its target bone, from auxiliary vectors ("pieces"): 0-3 the hinge planes of the left/right
# hip and shoulder (which make knees and elbows pure hinges), 4 the shoulder line (spread over the spine), 5-9 the
# left/right heel, the ears and the left/right palm; 10 = no twist (weight 0).
_HINGE_SLOTS = [0, 1, 11, 12]  # thigh and upper-arm slots; their children's slots follow
_HINGE_LOWER_SLOTS = [3, 4, 13, 14]
_HINGE_TIP = [7, 8, 20, 21]  # ankle, wrist: their confidence gates the hinge twist
_AUX_LM_TO, _AUX_LM_FROM = [29, 30, 7, 19, 20], [27, 28, 8, 17, 18]
_TWIST_PIECE = np.array([0, 1, 4, 10, 10, 4, 5, 6, 7, 10, 10, 2, 3, 8, 9, 8, 9])
_TWIST_FRAC = np.array([1, 1, 1 / 3, 1, 1, 0.5, 1, 1, 0.5, 1, 1, 1, 1, 0.5, 0.5, 1, 1])
_TWIST_LIMIT = np.full(17, np.pi)
_TWIST_LIMIT[[0, 1]] = np.radians(60)
_TWIST_LIMIT[[11, 12]] = np.pi / 2
# Joints that always keep the neutral local rotation (feet, hands) and the head (face Wahba fit), set last.
_LAST = [10, 11, 15, 22, 23]
_UNSEEN_ROOT = np.diag([1.0, -1.0, -1.0])  # unseen root: upright, facing the camera


def _index(idx: list[int] | tuple[int, ...]) -> slice | list[int]:
    """A slice where the indices are one repeated or a run of consecutive ones (views are cheaper than gathers)."""
    if all(i == idx[0] for i in idx):
        return slice(idx[0], idx[0] + 1)
    if list(idx) == list(range(idx[0], idx[0] + len(idx))):
        return slice(idx[0], idx[0] + len(idx))
    return list(idx)


@dataclass
class _Level:
    slots: slice
    joints: slice | list[int]
    parents: slice | list[int]
    neutral: np.ndarray  # [k, 3, 3] neutral local rotations of the joints
    limit: np.ndarray  # [k] largest twist


@dataclass
class _RestTerms:
    """Everything the IK needs of a rest skeleton, computed once per skeleton ([R, ...], R = 1 for the body's own,
    broadcast over people, or R = N for per-person SMPL shapes)."""

    bone: np.ndarray  # [R, 17, 3] unit rest bones of the aimed slots
    twist_aux: np.ndarray  # [R, 17, 3] rest auxiliary vector per slot
    hinge_bend: np.ndarray  # [R, 4] rest bend of hips/shoulders limbs
    root_vecs: np.ndarray  # [R, 2, 3] unit hip line and lower spine
    chest_vecs: np.ndarray  # [R, 4, 3] spine3 -> neck, shoulders; shoulder line
    chest_sum: np.ndarray  # [R, 3] sum of the first three chest vectors
    offsets: np.ndarray  # [R, 5, 3] pelvis -> mid-hip, -> spine1, spine1 -> spine2, spine2 -> spine3, spine3 -> mid-sh
    torso_length: np.ndarray  # [R]
    measures: np.ndarray  # [R, M] rest lengths of the measures

    @classmethod
    def of(cls, rest: np.ndarray, rest_landmarks: np.ndarray, measure_op: np.ndarray) -> _RestTerms:
        bone = _unit(rest[:, list(_AIM_CHILD)] - rest[:, list(_AIM)])
        hinge_axis, hinge_bend = _rest_hinge(bone[:, _HINGE_SLOTS], bone[:, _HINGE_LOWER_SLOTS],
                                             np.array([HINGE_AXIS[i] for i in (4, 5, 18, 19)]))
        shoulders = rest[:, 16] - rest[:, 17]
        lm_aux = rest_landmarks[_AUX_LM_TO] - rest_landmarks[_AUX_LM_FROM]
        pieces = np.concatenate([hinge_axis, shoulders[:, None], np.broadcast_to(lm_aux, (len(rest), 5, 3))], 1)
        root_vecs = _unit(rest[:, [1, 6]] - rest[:, [2, 0]])
        chest_vecs = np.concatenate([rest[:, [12, 16, 17]] - rest[:, 9:10], shoulders[:, None]], 1)
        mid_hip, mid_sh = 0.5 * (rest[:, 1] + rest[:, 2]), 0.5 * (rest[:, 16] + rest[:, 17])
        offsets = np.stack([mid_hip - rest[:, 0], rest[:, 3] - rest[:, 0], rest[:, 6] - rest[:, 3],
                            rest[:, 9] - rest[:, 6], mid_sh - rest[:, 9]], 1)
        return cls(bone, pieces[:, np.minimum(_TWIST_PIECE, 9)], hinge_bend, root_vecs, chest_vecs,
                   np.add.reduce(chest_vecs[:, :3], axis=1), offsets,
                   _norm(0.5 * (rest[:, 16] + rest[:, 17] - rest[:, 1] - rest[:, 2])),
                   _norm(measure_op @ rest))


class BodyFitter:
    """Closed-form IK from BlazePose world landmarks to a :class:`BodyModel` (see the module docstring).

    Args:
        body: the body model to drive.
        joint_map: joint placement; default: calibrated on ``body``'s rest skeleton.
        min_visibility: joints built from landmarks below this keep a neutral local rotation.
        shape_reg: ridge weight pulling SMPL betas to 0 (in units of squared metres per beta^2).
        neutral_pose: [69] local axis-angle used for unseen joints (default :data:`RELAXED_POSE`: arms hanging
            at the sides; zeros give the rest T-pose).
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
        self._coef = _coef_arrays(self.joint_map)
        neutral = (RELAXED_POSE if neutral_pose is None else np.asarray(neutral_pose, dtype=np.float64)).reshape(23, 3)
        self.neutral_local = np.concatenate([np.eye(3)[None], _axis_angle(_unit(neutral), _norm(neutral))], axis=0)
        self.measure_op, self.measure_joints = _measure_operator()
        self._measure_table = np.array([list(js) + [js[0]] * (4 - len(js)) for js in self.measure_joints])
        self._rest = _RestTerms.of(rest_joints[None], self.rest_landmarks, self.measure_op)
        self._levels = [_Level(slice(a, b), _index(_AIM[a:b]), _index([SMPL_PARENTS[j] for j in _AIM[a:b]]),
                               self.neutral_local[list(_AIM[a:b])], _TWIST_LIMIT[a:b])
                        for a, b in _LEVELS]

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
        rest = self._rest if rest_joints is None else _RestTerms.of(
            np.asarray(rest_joints, dtype=np.float64), self.rest_landmarks, self.measure_op)

        # Targets: straight placement, limb scale -> expected torso length -> spine on the bent arc, collars.
        place = _place_joints(world, self.joint_map, self._coef)
        conf = _confidence(vis)
        ok = conf >= self.min_visibility
        measured = _norm(self.measure_op @ place.joints)  # the measures do not involve the bent spine
        measure_ok = np.minimum.reduce(conf[:, self._measure_table], axis=-1) >= self.min_visibility
        limb_scale = self._ratio(measured[:, :-1], rest.measures[:, :-1], measure_ok[:, :-1])
        target = _finish_joints(place, self._coef, limb_scale * rest.torso_length)

        # Target side of every aimed joint: bone direction, twist vectors and weights, confidence.
        bone = _unit(target[:, list(_AIM_CHILD)] - target[:, list(_AIM)])
        hinge, bend = _hinge(bone[:, _HINGE_SLOTS], bone[:, _HINGE_LOWER_SLOTS], rest.hinge_bend)
        shoulders = target[:, 16] - target[:, 17]
        pieces = np.concatenate([hinge, shoulders[:, None], world[:, _AUX_LM_TO] - world[:, _AUX_LM_FROM]], 1)
        piece_weight = np.concatenate([bend * ok[:, _HINGE_TIP], (ok[:, 16] & ok[:, 17])[:, None],
                                       np.minimum(vis[:, _AUX_LM_TO], vis[:, _AUX_LM_FROM]) >= self.min_visibility,
                                       np.zeros((n, 1))], 1)
        # (no twist about a degenerate bone)
        twist_weight = _TWIST_FRAC * piece_weight[:, _TWIST_PIECE] * (_norm(bone) > 0.5)
        twist = _TwistTarget.of(bone, pieces[:, np.minimum(_TWIST_PIECE, 9)])
        good = ok[:, list(_AIM)] & ok[:, list(_GOOD_WITH)]

        # Root (hip line and lower spine) and head (face points): one batched Wahba fit.
        face = [7, 8, 2, 5, 0]
        face_r = self.rest_landmarks[face] - 0.5 * (self.rest_landmarks[7] + self.rest_landmarks[8])
        face_t = world[:, face] - _mid(world, 7, 8)[:, None]
        moments = np.concatenate([
            _moments(rest.root_vecs, _unit(target[:, [1, 6]] - target[:, [2, 0]])),
            _moments(face_r, face_t, (vis[:, face] >= self.min_visibility) + 1e-6)])
        root, head = np.split(_nearest_rotation(moments), 2)
        glob = np.empty((n, 24, 3, 3))
        glob[:, 0] = np.where(ok[:, :1, None], root, _UNSEEN_ROOT)

        for i, level in enumerate(self._levels):
            if i == _CHEST_LEVEL:
                self._reach_shoulders(glob, target, rest, ok[:, 9:10])
            self._aim(glob, level, rest, bone, twist, twist_weight, good)
        last = glob[:, [7, 8, 12, 20, 21]] @ self.neutral_local[_LAST]
        last[:, 2] = np.where(ok[:, 15:16, None], head, last[:, 2])
        glob[:, _LAST] = last

        local = np.empty_like(glob)
        local[:, 0] = glob[:, 0]
        local[:, 1:] = np.swapaxes(glob[:, SMPL_PARENTS[1:]], -1, -2) @ glob[:, 1:]
        return local, target, conf, self._ratio(measured, rest.measures, measure_ok)

    @staticmethod
    def _aim(glob: np.ndarray, level: _Level, rest: _RestTerms, bone: np.ndarray, twist: _TwistTarget,
             twist_weight: np.ndarray, good: np.ndarray) -> None:
        """Solve one level of aimed joints in place: swing the rest bone (carried by the parent's rotation) onto
        the target bone, twist about it, and keep the neutral local rotation where the joint is not seen.

        Args:
            glob: [N, 24, 3, 3] global rotations; the level's parents are set, its joints are written.
            level: which slots/joints; rest: rest terms; bone: [N, 17, 3] unit target bones.
            twist: target twist terms of all slots; twist_weight: [N, 17] per-slot twist weights (times the
            fraction of the twist applied); good: [N, 17] per-slot confidence flags.
        """
        k = level.slots
        parent = glob[:, level.parents]
        tw = twist[k]
        g = _swing((parent @ rest.bone[:, k, :, None])[..., 0], bone[:, k]) @ parent
        angle, w = _twist_angle(tw, (g @ rest.twist_aux[:, k, :, None])[..., 0])
        angle = angle * w * twist_weight[:, k]
        g = tw.rotation(np.minimum(np.maximum(angle, -level.limit), level.limit)) @ g
        glob[:, level.joints] = np.where(good[:, k, None, None], g, parent @ level.neutral)

    @staticmethod
    def _reach_shoulders(glob: np.ndarray, target: np.ndarray, rest: _RestTerms, good: np.ndarray) -> None:
        """Chest rotation, then two CCD passes over spine2/spine1 so the spine chain (rest bone lengths) puts the
        shoulders where they are observed, whatever the bend; the chest is refitted at the reached spine3.

        Args:
            glob: [N, 24, 3, 3] global rotations, pelvis..spine2 set; updated in place (3, 6, 9).
            target: [N, 24, 3]; rest: rest terms; good: [N, 1] spine3 confidence flag.
        """
        mid_sh_t = 0.5 * (target[:, 16] + target[:, 17])
        off = rest.offsets[..., None]  # [R, 5, 3, 1]
        # The chest Wahba moments are linear in the spine3 position p9: B0 - p9 (sum of rest vectors)^T.
        vt = np.concatenate([target[:, [12, 16, 17]], (target[:, 16] - target[:, 17])[:, None]], 1)
        base_moments = _moments(rest.chest_vecs, vt)

        def chest(p9: np.ndarray, fallback: np.ndarray) -> np.ndarray:
            rot = _nearest_rotation(base_moments - p9[:, :, None] * rest.chest_sum[:, None, :])
            return np.where(good[..., None], rot, fallback)

        def step(r: np.ndarray, i: int) -> np.ndarray:
            return (r @ off[:, i])[..., 0]

        r0, r3, r6 = glob[:, 0], glob[:, 3], glob[:, 6]
        p3 = 0.5 * (target[:, 1] + target[:, 2]) - step(r0, 0) + step(r0, 1)
        p6 = p3 + step(r3, 2)
        r9 = chest(p6 + step(r6, 3), r6)
        for _ in range(2):
            for pivot in (6, 3):
                p9 = p6 + step(r6, 3)
                reached = p9 + step(r9, 4)
                origin = p6 if pivot == 6 else p3
                swing = _swing(_unit(reached - origin), _unit(mid_sh_t - origin))
                swing = np.where(good[..., None], swing, _EYE)
                if pivot == 3:
                    r3 = swing @ r3
                    p6 = p3 + step(r3, 2)
                r6, r9 = swing @ r6, swing @ r9
            r9 = chest(p6 + step(r6, 3), r6)
        glob[:, 3], glob[:, 6], glob[:, 9] = r3, r6, r9

    def _ratio(self, measured: np.ndarray, rest: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """[N] ratio of measured to rest lengths summed over the visible measures (1 when none is visible)."""
        num, den = np.add.reduce(measured * ok, axis=1), np.add.reduce(rest * ok, axis=1)
        return np.where(den > 0, num / np.maximum(den, _EPS), 1.0)


    def fit(self, world: np.ndarray, visibility: np.ndarray, body_joints: bool = True) -> FitResult:
        """Fit pose (and SMPL shape) to BlazePose world landmarks.

        Args:
            world: [N, 33, 3] metric world landmarks, camera axes (x right, y down, z away), hip-centred.
            visibility: [N, 33] landmark visibility (or visibility * presence) in [0, 1].
            body_joints: report the body model's own joints (one body forward); False chains the fitted rotations
                down the rest skeleton instead (exact for SMPL, within a few mm on Anny, whose spine and neck
                spread a joint's rotation over several bones), for callers that run the body model later anyway.

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
                             np.zeros(0, np.float32), np.zeros((0, len(FACE_LANDMARKS), 3), np.float32))
        local, target, conf, scale = self.solve(world, visibility, rest)
        aa = matrix_to_axis_angle(local)  # [N, 24, 3]
        global_orient, body_pose = aa[:, 0], aa[:, 1:].reshape(n, 69)
        chained, head = forward_kinematics(local, self.rest_joints if rest is None else rest, with_head=True)
        if body_joints:
            shape = torch.from_numpy(betas[:, : self.body.num_shape]).float() if self.fit_shape else None
            with torch.no_grad():
                out = self.body(torch.from_numpy(global_orient).float(), torch.from_numpy(body_pose).float(), shape)
            joints = out.joints[:, :24].double().numpy()
        else:
            joints = chained - 0.5 * (chained[:, 1:2] + chained[:, 2:3])  # root-aligned on the mid-hip, as the body's
        face_rest = self.rest_landmarks[list(FACE_LANDMARKS)] - self.rest_joints[15]
        face = joints[:, 15:16] + np.einsum("nij,kj->nki", head, face_rest)
        centred = target - 0.5 * (target[:, 1:2] + target[:, 2:3])
        residual = np.linalg.norm(centred - scale[:, None, None] * joints, axis=-1)
        w = conf * (conf >= self.min_visibility)
        mean_error = np.sum(residual * w, 1) / np.maximum(np.sum(w, 1), _EPS)
        f32 = np.float32
        return FitResult(global_orient.astype(f32), body_pose.astype(f32), betas.astype(f32), joints.astype(f32),
                         scale.astype(f32), conf.astype(f32), residual.astype(f32), mean_error.astype(f32),
                         face.astype(f32))




def forward_kinematics(local: np.ndarray, rest_joints: np.ndarray,
                       with_head: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Joint positions [N, 24, 3] of a skeleton posed by local rotations [N, 24, 3, 3] (root first), from rest joints
    [24, 3] or [N, 24, 3]; the root stays at its rest position. ``with_head``: also the head joint's global rotation
    [N, 3, 3] (what carries the face)."""
    rest = np.broadcast_to(np.asarray(rest_joints, dtype=np.float64), (local.shape[0], 24, 3))
    glob = np.empty_like(local)
    pos = np.empty((local.shape[0], 24, 3))
    glob[:, 0], pos[:, 0] = local[:, 0], rest[:, 0]
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        glob[:, j] = glob[:, p] @ local[:, j]
        pos[:, j] = pos[:, p] + np.einsum("nij,nj->ni", glob[:, p], rest[:, j] - rest[:, p])
    return (pos, glob[:, 15]) if with_head else pos


def fit_camera(joints3d: np.ndarray, points2d: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The app's weak perspective ``points2d = s * joints3d[..., :2] + (tx, ty)`` fitted to observed points.

    The scale matches the spreads of the two point sets (weighted RMS distance from their centroids) and the
    translation their centroids. Why not least squares: its scale is the spread ratio times the correlation of the
    two shapes, so any difference between the fitted pose and the picture shrinks the body, most where the fit is
    hardest (people seated or crowded in a group photo were drawn as small figures over their faces: on six group
    photos, 42 people at two zooms, recall 0.64 -> 0.74 and precision 0.78 -> 0.89 with the spreads; the
    hand-boxed street frames and photos, close-ups and video unchanged). For points that match exactly both
    are the same. Shapes that do not correlate at all (a mirrored fit) keep least squares' scale, which is then
    not positive: such a person is not placeable.

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
    den = np.maximum(np.sum(w * np.sum(dx * dx, -1), 1), _EPS)
    num = np.sum(w * np.sum(dx * du, -1), 1)
    spread = np.sqrt(np.sum(w * np.sum(du * du, -1), 1) / den)
    s = np.where(num > 0, spread, num / den)
    cam = np.concatenate([s[:, None], um - s[:, None] * xm], axis=1)
    usable = (np.sum(w > 0, axis=1) >= 2) & (den > 1e-12)
    return np.where(usable[:, None], cam, np.nan)
