"""Live link: stream one tracked person's skeleton over the VMC protocol (OSC over UDP) while the app runs.

VMC ("Virtual Motion Capture protocol") is what VSeeFace, VirtualMotionCapture, EVMC4U (Unity) and the Blender VMC
add-ons speak: a *performer* sends OSC messages to a *marionette*, by default on UDP port 39539. One OSC bundle
(``#bundle``, timetag 1 = "now") goes out per processed frame with the performer in it:

* ``/VMC/Ext/Root/Pos`` ``s"root" f px py pz f qx qy qz qw``: the avatar root, on the floor under the hips
  (hips position minus the rest hip height), identity rotation; metres, camera at the origin.
* ``/VMC/Ext/Bone/Pos`` ``s<bone> f px py pz f qx qy qz qw`` for 22 humanoid bones (Unity ``HumanBodyBones`` names),
  parents first: local position (the body model's rest offset from the parent bone; the Hips' is the rest hip
  height above the floor, so root + Hips = where the performer's hips are) and local rotation.
* ``/VMC/Ext/OK`` ``i loaded=1 i calibration state=3 (calibrated) i calibration mode=0 (normal) i tracking
  status=1 (ok)``, the V2.7 form; receivers that know only the one-argument form read the first.
* ``/VMC/Ext/T`` ``f seconds since the link opened``.

Nothing at all is sent while no performer is in the frame: receivers keep the last pose.

Bones. SMPL's zero pose is a T-pose with every joint frame aligned to the body axes, which is also how a normalised
humanoid (VRM) rests in Unity, so local rotations map one to one (the hand joints, 22 and 23, have no humanoid bone
and are not sent)::

    pelvis Hips            spine1 Spine          spine2 Chest          spine3 UpperChest     neck Neck   head Head
    *_hip  *UpperLeg       *_knee *LowerLeg      *_ankle *Foot         *_foot *Toes
    *_collar *Shoulder     *_shoulder *UpperArm  *_elbow *LowerArm     *_wrist *Hand        (* = left / right)

Coordinates. The network's pose is in camera space (x right, y down, z away from the camera); SMPL body axes are
y up, z forward, the body's left = +x. Two changes of basis take it to Unity's left-handed, Y-up world:

1. camera -> a right-handed Y-up world: ``F = diag(1, -1, -1)`` (a 180 deg turn about x). A person standing upright
   and facing the camera has root rotation ``F`` in camera space, so ``F @ R_root`` is the identity for them.
2. right-handed -> Unity: mirror x, ``M = diag(-1, 1, 1)``, as VMC senders and Unity's glTF/VRM importers do.
   Positions ``(x, y, z) -> (-x, y, z)``; a rotation ``R -> M R M``, i.e. quaternion
   ``(qx, qy, qz, qw) -> (qx, -qy, -qz, qw)``. This is what turns SMPL's "left = +x" into Unity's "left = -x".

So camera-space points go to ``M F p = -p`` (the camera at the origin, the performer at negative z facing +z,
towards it), the root rotation to ``M (F R_root) M`` and each local joint rotation to ``M R_j M``. An upright
performer facing the camera sends an identity Hips rotation, and their left arm drives the avatar's left arm.

Performer. ``--vmc-track ID`` follows that track id only. Without it the link picks the person largest on screen
(largest weak-perspective scale: nearest the camera) and keeps them while their track lives: a frame without them
sends nothing, and after ``grace`` frames without them (the tracker's own track lifetime) the choice is made anew.

Timing. :class:`VmcSink` runs on the render thread like the other sinks, as each frame is finished. Building a
bundle (about 1.8 KB) takes on the order of 0.1 ms of Python, and the send is non-blocking: a full socket buffer drops
that frame, an unreachable receiver is warned about once and otherwise ignored, so the link adds a small fraction of
a frame of latency and can never stall the pipeline. :class:`VmcStats` keeps the per-frame figures for the run's
summary. The OSC encoder is a few lines of OSC 1.0 here, so the app has no runtime dependency for it.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from engine.errors import ConfigError, OutputError
from engine.types import Meshes, People

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 39539  # the VMC spec's marionette port: EVMC4U, VMC4UE listen here, performers send here
TRACK_GRACE_FRAMES = 8  # = the tracker's max_age: a performer hidden this long has lost their track id
_MAX_TIMINGS = 1_000_000  # per-frame timings kept for the summary (9 hours at 30 fps; 16 MB at most)

# (SMPL joint index, Unity HumanBodyBones name), every parent before its children.
BONES: tuple[tuple[int, str], ...] = (
    (0, "Hips"),
    (3, "Spine"), (6, "Chest"), (9, "UpperChest"), (12, "Neck"), (15, "Head"),
    (1, "LeftUpperLeg"), (4, "LeftLowerLeg"), (7, "LeftFoot"), (10, "LeftToes"),
    (2, "RightUpperLeg"), (5, "RightLowerLeg"), (8, "RightFoot"), (11, "RightToes"),
    (13, "LeftShoulder"), (16, "LeftUpperArm"), (18, "LeftLowerArm"), (20, "LeftHand"),
    (14, "RightShoulder"), (17, "RightUpperArm"), (19, "RightLowerArm"), (21, "RightHand"),
)
_SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
_LEFT_HIP, _RIGHT_HIP = 1, 2
_POSE_ROWS = [j - 1 for j, _ in BONES[1:]]  # row of each non-root bone in body_pose viewed as [23, 3]
_MIRROR = np.array([-1.0, 1.0, 1.0])  # right-handed -> Unity: x mirrored


# ---------------------------------------------------------------------------------------------------- target
@dataclass(frozen=True)
class VmcTarget:
    """Where the packets go (``--vmc HOST:PORT``)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_target(text: str) -> VmcTarget:
    """``HOST:PORT``, ``:PORT``, ``HOST``, ``[IPv6]:PORT`` or empty (all defaults) -> :class:`VmcTarget`.

    Raises:
        ConfigError: a malformed value (one line, with the accepted forms).
    """
    text = text.strip()
    usage = "use --vmc HOST:PORT, --vmc :PORT or --vmc HOST (default 127.0.0.1:39539)"
    host, port_text = text, ""
    if text.startswith("["):  # [IPv6]:PORT or [IPv6]
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not text[end + 1:].startswith(":")):
            raise ConfigError(f"--vmc {text!r}: malformed [IPv6] address; {usage}")
        host, port_text = text[1:end], text[end + 2:]
    elif text.count(":") == 1:  # a bare IPv6 address has several colons and no port
        host, port_text = text.split(":")
    host = host or DEFAULT_HOST
    if any(c.isspace() for c in host):
        raise ConfigError(f"--vmc {text!r}: the host contains spaces; {usage}")
    if not port_text:
        if text.endswith(":"):
            raise ConfigError(f"--vmc {text!r}: the port is missing after ':'; {usage}")
        return VmcTarget(host, DEFAULT_PORT)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"--vmc {text!r}: the port must be a number in 1..65535; {usage}")
    return VmcTarget(host, int(port_text))


def resolve_target(target: VmcTarget) -> tuple[int, tuple]:
    """Socket family and address for ``target``, resolved once before the run starts.

    Raises:
        OutputError: the host name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as e:  # socket.gaierror is an OSError
        raise OutputError(f"--vmc: cannot resolve host {target.host!r} ({e}); give an IP address or a known host "
                          "name") from e
    family, _, _, _, addr = infos[0]
    return family, addr


# ---------------------------------------------------------------------------------------------------- OSC 1.0
def _osc_string(s: str) -> bytes:
    """ASCII/UTF-8 bytes, NUL-terminated and padded to a multiple of 4."""
    b = s.encode("utf-8") + b"\0"
    return b + b"\0" * (-len(b) % 4)


def osc_message(address: str, *args: str | int | float) -> bytes:
    """One OSC message: address, type tags (``s``, ``i`` int32, ``f`` float32), big-endian arguments."""
    tags = ","
    body = []
    for a in args:
        if isinstance(a, str):
            tags += "s"
            body.append(_osc_string(a))
        elif isinstance(a, (int, np.integer)) and not isinstance(a, bool):
            tags += "i"
            body.append(struct.pack(">i", int(a)))
        elif isinstance(a, (float, np.floating)):
            tags += "f"
            body.append(struct.pack(">f", float(a)))
        else:
            raise TypeError(f"OSC argument of unsupported type {type(a).__name__}")
    return _osc_string(address) + _osc_string(tags) + b"".join(body)


def osc_bundle(messages: list[bytes], timetag: int = 1) -> bytes:
    """An OSC bundle: ``#bundle``, a 64-bit NTP timetag (1 = immediately) and size-prefixed elements."""
    return (_osc_string("#bundle") + struct.pack(">Q", timetag)
            + b"".join(struct.pack(">i", len(m)) + m for m in messages))


def _pose_prefix(address: str, name: str) -> bytes:
    """Address, type tags and name of a ``s f*7`` pose message: constant per bone, so built once."""
    return _osc_string(address) + _osc_string(",sfffffff") + _osc_string(name)


_ROOT_PREFIX = _pose_prefix("/VMC/Ext/Root/Pos", "root")
_BONE_PREFIXES = [_pose_prefix("/VMC/Ext/Bone/Pos", name) for _, name in BONES]
# loaded, calibration state 3 (calibrated), calibration mode 0 (normal), tracking status 1 (ok): the V2.7 form
_OK_MESSAGE = osc_message("/VMC/Ext/OK", 1, 3, 0, 1)


# ---------------------------------------------------------------------------------------------------- rotations
def _aa_quat(x: float, y: float, z: float) -> tuple[float, float, float, float]:
    """Axis-angle -> unit quaternion (x, y, z, w), stable at zero angle."""
    angle = math.sqrt(x * x + y * y + z * z)
    k = math.sin(0.5 * angle) / angle if angle > 1e-8 else 0.5
    return x * k, y * k, z * k, math.cos(0.5 * angle)


def quat_rotate(q, v) -> np.ndarray:
    """Rotate one vector by one unit quaternion (x, y, z, w): ``v + 2w (u x v) + 2 u x (u x v)``."""
    ux, uy, uz, w = (float(c) for c in q)
    vx, vy, vz = (float(c) for c in v)
    tx, ty, tz = 2.0 * (uy * vz - uz * vy), 2.0 * (uz * vx - ux * vz), 2.0 * (ux * vy - uy * vx)
    return np.array([vx + w * tx + uy * tz - uz * ty,
                     vy + w * ty + uz * tx - ux * tz,
                     vz + w * tz + ux * ty - uy * tx])


def unity_rotations(global_orient: np.ndarray, body_pose: np.ndarray) -> np.ndarray:
    """One person's SMPL pose -> [22, 4] Unity local rotations in :data:`BONES` order (see the module docstring).

    Args:
        global_orient: [3] camera-space root axis-angle.
        body_pose: [69] (or [63]) local axis-angle of SMPL joints 1..23.
    """
    # plain floats: 22 tiny rotations cost about half as much in Python arithmetic as in numpy calls
    pose = np.asarray(body_pose, np.float64).ravel().tolist()
    rows = [tuple(float(v) for v in global_orient)] + [tuple(pose[3 * i:3 * i + 3]) for i in _POSE_ROWS]
    out = []
    for n, (x, y, z) in enumerate(rows):
        qx, qy, qz, qw = _aa_quat(x, y, z)
        if n == 0:  # root: F * q, F = (1, 0, 0, 0): camera (y down) -> right-handed world (y up)
            qx, qy, qz, qw = qw, -qz, qy, -qx
        if qw < 0:  # the same rotation, tidier numbers
            qx, qy, qz, qw = -qx, -qy, -qz, -qw
        out.append((qx, -qy, -qz, qw))  # right-handed -> Unity (x mirrored)
    return np.array(out)


# ---------------------------------------------------------------------------------------------------- skeleton
@dataclass(frozen=True)
class VmcSkeleton:
    """The rest skeleton the bone positions come from, in Unity axes.

    Attributes:
        offsets: [22, 3] local rest position of every bone in :data:`BONES` order (the Hips': ``(0, hip_height, 0)``).
        hip_height: rest height of the pelvis joint above the floor (the lowest rest point), metres.
        pelvis_from_midhip: [3] rest pelvis joint minus the hip-joint midpoint, SMPL body axes (the network's
            translation locates the hip-joint midpoint, the Hips bone sits at the pelvis joint).
    """

    offsets: np.ndarray
    hip_height: float
    pelvis_from_midhip: np.ndarray

    @classmethod
    def from_joints(cls, joints: np.ndarray, floor_y: float | None = None) -> VmcSkeleton:
        """From [>=24, 3] rest joints in SMPL body axes (y up, left = +x); floor at ``floor_y`` (default the lowest
        joint)."""
        j = np.asarray(joints, np.float64)[:24]
        if j.shape != (24, 3) or not np.all(np.isfinite(j)):
            raise ValueError(f"rest joints: expected a finite [24, 3] array, got shape {np.shape(joints)}")
        floor = float(j[:, 1].min()) if floor_y is None else float(floor_y)
        hip_height = float(j[0, 1] - floor)
        offsets = np.zeros((len(BONES), 3))
        for k, (joint, _) in enumerate(BONES):
            if joint == 0:
                offsets[k] = (0.0, hip_height, 0.0)
            else:
                offsets[k] = (j[joint] - j[_SMPL_PARENTS[joint]]) * _MIRROR
        midhip = 0.5 * (j[_LEFT_HIP] + j[_RIGHT_HIP])
        return cls(offsets, hip_height, j[0] - midhip)

    @classmethod
    def from_body(cls, body) -> VmcSkeleton:
        """From a body model's zero pose and default shape, floor at the sole of its rest mesh."""
        import torch

        with torch.inference_mode():
            out = body(torch.zeros(1, 3), torch.zeros(1, 69), root_align=False)
        verts = out.vertices[0].double().numpy()
        return cls.from_joints(out.joints[0, :24].double().numpy(), floor_y=float(verts[:, 1].min()))


def hips_position(cam_trans: np.ndarray, global_orient: np.ndarray, skeleton: VmcSkeleton) -> np.ndarray:
    """Unity-space position of the Hips bone: the camera-space hip midpoint plus the pelvis offset turned with the
    body, mapped by ``p -> -p`` (``M F``, see the module docstring)."""
    q = _aa_quat(*(float(v) for v in global_orient))
    return -(np.asarray(cam_trans, np.float64) + quat_rotate(q, skeleton.pelvis_from_midhip))


def frame_bundle(global_orient: np.ndarray, body_pose: np.ndarray, cam_trans: np.ndarray, skeleton: VmcSkeleton,
                 t: float) -> bytes:
    """One OSC bundle with the whole VMC frame for one person (see the module docstring for its messages)."""
    rots = unity_rotations(global_orient, body_pose)
    root = hips_position(cam_trans, global_orient, skeleton) - (0.0, skeleton.hip_height, 0.0)
    # every bone's 7 floats as big-endian float32 in one conversion, then sliced per message
    floats = np.concatenate([skeleton.offsets, rots], axis=1).astype(">f4").tobytes()
    msgs = [_ROOT_PREFIX + struct.pack(">7f", *root.tolist(), 0.0, 0.0, 0.0, 1.0)]
    msgs += [prefix + floats[28 * k:28 * k + 28] for k, prefix in enumerate(_BONE_PREFIXES)]
    msgs.append(_OK_MESSAGE)
    msgs.append(osc_message("/VMC/Ext/T", float(t)))
    return osc_bundle(msgs)


# ---------------------------------------------------------------------------------------------------- performer
class PerformerPicker:
    """Which row of a frame's people is the performer (see "Performer" in the module docstring).

    Args:
        track_id: follow only this track id; None = pick the person largest on screen and keep them.
        grace: frames a chosen performer may be missing before another is chosen.
    """

    def __init__(self, track_id: int | None = None, grace: int = TRACK_GRACE_FRAMES) -> None:
        self.fixed = track_id
        self.grace = grace
        self.current: int | None = track_id
        self._missing = 0

    def pick(self, people: People) -> int | None:
        """Row index of the performer in ``people``, or None (nothing to send this frame)."""
        ids = np.asarray(people.track_ids)
        if self.current is not None:
            rows = np.flatnonzero(ids == self.current)
            if len(rows):
                self._missing = 0
                return int(rows[0])
            self._missing += 1
            if self.fixed is not None or self._missing <= self.grace:
                return None
        self.current = None
        if len(people) == 0:
            return None
        row = int(np.argmax(people.cam[:, 0]))
        if ids[row] >= 0:  # untracked rows (-1) are sent but not locked on
            self.current = int(ids[row])
            self._missing = 0
        return row


# ---------------------------------------------------------------------------------------------------- sink
@dataclass
class VmcStats:
    """What the link did: bundles sent, frames without a performer, frames dropped or failed, and per sent frame
    ``build_us`` (from the frame reaching the sink to the packet being handed to the kernel: the latency the link
    adds) and ``total_us`` (also the send call and getting the interpreter back, which other threads may hold)."""

    sent: int = 0
    idle_frames: int = 0
    dropped: int = 0
    errors: int = 0
    build_us: list[float] = field(default_factory=list)
    total_us: list[float] = field(default_factory=list)

    def percentile(self, which: str, q: float) -> float:
        values = getattr(self, which)
        return float(np.percentile(values, q)) if values else 0.0


class VmcSink:
    """A pipeline sink that sends the performer of every processed frame to a VMC receiver.

    Args:
        target: receiver address (resolved here: an unknown host fails before the run starts).
        skeleton: rest skeleton for bone positions (:meth:`VmcSkeleton.from_body`).
        track_id: ``--vmc-track``; None picks the largest person.
    """

    def __init__(self, target: VmcTarget, skeleton: VmcSkeleton, track_id: int | None = None) -> None:
        family, self._addr = resolve_target(target)
        self.target = target
        self.skeleton = skeleton
        self.picker = PerformerPicker(track_id)
        self.stats = VmcStats()
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)  # never stall the render thread: a full buffer drops the frame
        self._t0 = time.monotonic()
        self._warned = False
        self._closed = False

    def add(self, frame_index: int, name: str, people: People, meshes: Meshes | None) -> bool:
        """Send this frame's performer; True when a bundle went out."""
        t0 = time.perf_counter()
        row = self.picker.pick(people)
        if row is None or self._closed:
            self.stats.idle_frames += 1
            return False
        packet = frame_bundle(people.global_orient[row], people.body_pose[row], people.cam_trans[row],
                              self.skeleton, time.monotonic() - self._t0)
        t1 = time.perf_counter()
        try:
            self._sock.sendto(packet, self._addr)
        except BlockingIOError:
            self.stats.dropped += 1
            return False
        except OSError as e:  # no route, receiver gone (ICMP refused), ...: a live link must not stop the run
            self.stats.errors += 1
            if not self._warned:
                self._warned = True
                log.warning("VMC link to %s: %s; still sending, further errors are not reported", self.target,
                            e.strerror or e)
            return False
        t2 = time.perf_counter()
        s = self.stats
        s.sent += 1
        if len(s.build_us) < _MAX_TIMINGS:
            s.build_us.append((t1 - t0) * 1e6)
            s.total_us.append((t2 - t0) * 1e6)
        return True

    def summary(self) -> str:
        s = self.stats
        line = (f"vmc: {s.sent} frames sent to {self.target}, {s.idle_frames} without a performer; per frame "
                f"{s.percentile('build_us', 50):.0f} us to the send (p99 {s.percentile('build_us', 99):.0f}), "
                f"{s.percentile('total_us', 50):.0f} us in all (p99 {s.percentile('total_us', 99):.0f})")
        if s.dropped or s.errors:
            line += f", {s.dropped} dropped, {s.errors} send errors"
        return line

    def close(self) -> str:
        """Close the socket (safe to call more than once); returns :meth:`summary`."""
        if not self._closed:
            self._closed = True
            self._sock.close()
        return self.summary()
