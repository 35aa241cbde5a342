"""Per-track motion: recorded frame by frame (bounded memory), turned into one gap-free animation per track.

Recording keeps, per track and frame, only the SMPL pose (72), the shape (10) and the camera translation (3):
about 340 bytes, so an hour at 30 fps with five people stays near 200 MB and no mesh is ever kept.

World frame: the camera's axes are x right, y down, z forward; the exported world is the same frame turned 180
degrees about x (x right, y up, the camera at the origin looking down -z), i.e. glTF's convention and, after a
Y-up import, upright in Blender. Tracks live from their first to their last frame; frames in between where the
track was not seen (occlusion, a dropped frame) are filled by interpolation (slerp per joint, linear for the root)
and flagged as not observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.types import People

from .rotations import axis_angle_to_quat, canonical_hemisphere, quat_mul, slerp

__all__ = ["CAMERA_TO_WORLD_QUAT", "WORLD_FROM_CAMERA", "MotionRecorder", "TrackBuffer", "TrackMotion",
           "build_motion"]

WORLD_FROM_CAMERA = np.diag([1.0, -1.0, -1.0])  # rotation by 180 degrees about x
CAMERA_TO_WORLD_QUAT = np.array([1.0, 0.0, 0.0, 0.0])  # the same rotation, (x, y, z, w)
_POSE, _SHAPE, _TRANS = 72, 10, 3


class TrackBuffer:
    """Growable float32 rows for one track (amortised O(1) append, no per-frame Python objects kept)."""

    def __init__(self, capacity: int = 64) -> None:
        self._frames = np.zeros(capacity, np.int64)
        self._rows = np.zeros((capacity, _POSE + _SHAPE + _TRANS), np.float32)
        self.size = 0

    def append(self, frame: int, pose: np.ndarray, shape: np.ndarray, trans: np.ndarray) -> None:
        if self.size == len(self._frames):
            self._frames = np.concatenate([self._frames, np.zeros_like(self._frames)])
            self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)])
        self._frames[self.size] = frame
        row = self._rows[self.size]
        row[:_POSE] = pose
        row[_POSE:_POSE + _SHAPE] = shape[:_SHAPE]
        row[_POSE + _SHAPE:] = trans
        self.size += 1

    @property
    def frames(self) -> np.ndarray:
        return self._frames[:self.size]

    @property
    def poses(self) -> np.ndarray:
        return self._rows[:self.size, :_POSE]

    @property
    def shapes(self) -> np.ndarray:
        return self._rows[:self.size, _POSE:_POSE + _SHAPE]

    @property
    def trans(self) -> np.ndarray:
        return self._rows[:self.size, _POSE + _SHAPE:]

    @property
    def nbytes(self) -> int:
        return self._frames.nbytes + self._rows.nbytes


class MotionRecorder:
    """Collects every tracked person of every frame; untracked rows (id < 0) are skipped."""

    def __init__(self) -> None:
        self.tracks: dict[int, TrackBuffer] = {}
        self.first_frame: int | None = None
        self.last_frame: int | None = None
        self.frames = 0

    def add(self, frame_index: int, people: People) -> None:
        self.frames += 1
        if self.first_frame is None:
            self.first_frame = frame_index
        self.last_frame = frame_index if self.last_frame is None else max(self.last_frame, frame_index)
        if len(people) == 0:
            return
        thetas = people.smpl_thetas
        for i, tid in enumerate(people.track_ids.tolist()):
            if tid < 0:
                continue
            buf = self.tracks.setdefault(int(tid), TrackBuffer())
            if buf.size and buf.frames[-1] == frame_index:  # never two rows for one frame
                buf.size -= 1
            buf.append(frame_index, thetas[i], people.betas[i], people.cam_trans[i])

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tracks.values())


@dataclass
class TrackMotion:
    """One track's animation, one sample per frame from ``first_frame`` to its last frame.

    Attributes:
        track_id: the tracker's ID.
        first_frame: source frame index of sample 0.
        local_quats: [T, 24, 4] (x, y, z, w) joint rotations relative to the parent; the root's is relative to
            the world (see the module docstring); signs made continuous over time.
        root_pos: [T, 3] pelvis position in the world frame, metres.
        observed: [T] True where the track was seen, False where the sample was interpolated.
        shape: the body shape used for the skeleton (None: the body model's default).
    """

    track_id: int
    first_frame: int
    local_quats: np.ndarray
    root_pos: np.ndarray
    observed: np.ndarray
    shape: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return len(self.root_pos)

    @property
    def last_frame(self) -> int:
        return self.first_frame + self.num_frames - 1


def build_motion(track_id: int, frames: np.ndarray, poses: np.ndarray, root_world: np.ndarray,
                 shape: np.ndarray | None = None) -> TrackMotion:
    """Dense, gap-filled motion from the observed samples.

    Args:
        frames: [n] increasing source frame indices where the track was seen.
        poses: [n, 72] SMPL axis-angle (root in camera axes).
        root_world: [n, 3] pelvis positions in the world frame.
    """
    frames = np.asarray(frames, np.int64)
    first = int(frames[0])
    count = int(frames[-1]) - first + 1
    quats = axis_angle_to_quat(np.asarray(poses, np.float64).reshape(-1, 24, 3))
    quats[:, 0] = quat_mul(CAMERA_TO_WORLD_QUAT, quats[:, 0])
    pos = np.asarray(root_world, np.float64)
    slot = frames - first
    dense = np.arange(count)
    nxt = np.clip(np.searchsorted(slot, dense, side="left"), 0, len(slot) - 1)
    prv = np.clip(np.searchsorted(slot, dense, side="right") - 1, 0, len(slot) - 1)
    span = (slot[nxt] - slot[prv]).astype(np.float64)
    w = np.where(span > 0, (dense - slot[prv]) / np.where(span > 0, span, 1.0), 0.0)
    dense_q = slerp(quats[prv], quats[nxt], np.broadcast_to(w[:, None], (count, 24)))
    dense_p = pos[prv] + w[:, None] * (pos[nxt] - pos[prv])
    observed = np.zeros(count, bool)
    observed[slot] = True
    return TrackMotion(track_id, first, canonical_hemisphere(dense_q), dense_p, observed, shape)
