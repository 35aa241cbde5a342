"""BVH writer: one skeleton (the 24 SMPL joints) and one track's motion per file.

Conventions, chosen for Blender's importer and most mocap tools:

* Y up, metres (import with scale 1 for life size), rest pose = the body's T-pose facing +Z.
* The root has 6 channels ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, every other joint 3
  rotation channels in the same ZXY order; angles in degrees, unwrapped over time so no channel jumps by 360.
* The root's OFFSET is zero and its position channels hold the absolute pelvis position in the world frame (see
  :mod:`app.motion.tracks`), so importers that add or that replace the offset agree.
* Leaf joints (feet, hands, head) end in an End Site half a parent-to-joint segment further along.
* The file starts at the track's first frame and ends at its last; ``Frame Time`` is ``1 / fps`` of the source.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .files import write_atomic
from .rig import Rig
from .rotations import euler_zxy, quat_to_matrix
from .tracks import TrackMotion

__all__ = ["JOINT_CHANNELS", "ROOT_CHANNELS", "bvh_text", "dfs_order", "motion_channels", "write_bvh"]

ROOT_CHANNELS = "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
JOINT_CHANNELS = "CHANNELS 3 Zrotation Xrotation Yrotation"


def dfs_order(parents: tuple[int, ...]) -> list[int]:
    """Joint indices in depth-first order: the order BVH lists joints and their channel values."""
    children: dict[int, list[int]] = {}
    for j, p in enumerate(parents):
        children.setdefault(p, []).append(j)
    order: list[int] = []
    stack = list(reversed(children.get(-1, [])))
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(children.get(j, [])))
    return order


def _hierarchy(rig: Rig) -> str:
    offsets = rig.offsets.copy()
    offsets[0] = 0.0
    children: dict[int, list[int]] = {}
    for j, p in enumerate(rig.parents):
        children.setdefault(p, []).append(j)
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if rig.parents[j] < 0 else "JOINT"
        x, y, z = offsets[j]
        lines.extend([f"{pad}{kind} {rig.joint_names[j]}", f"{pad}{{", f"{pad}  OFFSET {x:.6f} {y:.6f} {z:.6f}",
                      f"{pad}  {ROOT_CHANNELS if kind == 'ROOT' else JOINT_CHANNELS}"])
        kids = children.get(j, [])
        for c in kids:
            emit(c, depth + 1)
        if not kids:
            ex, ey, ez = 0.5 * offsets[j]
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {ex:.6f} {ey:.6f} {ez:.6f}",
                          f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    return "\n".join(lines) + "\n"


def motion_channels(rig: Rig, motion: TrackMotion) -> np.ndarray:
    """[T, 3 + 3 * 24] channel values in file order (root position, then ZXY degrees per joint, DFS order)."""
    order = dfs_order(rig.parents)
    mats = quat_to_matrix(motion.local_quats[:, order])  # [T, 24, 3, 3]
    angles = np.unwrap(euler_zxy(mats), axis=0)  # [T, 24, 3] radians
    return np.concatenate([motion.root_pos, np.degrees(angles).reshape(len(mats), -1)], axis=1)


def bvh_text(rig: Rig, motion: TrackMotion, fps: float) -> str:
    """The whole file as text."""
    values = motion_channels(rig, motion)
    buf = io.StringIO()
    buf.write(_hierarchy(rig))
    buf.write(f"MOTION\nFrames: {len(values)}\nFrame Time: {1.0 / fps:.8f}\n")
    np.savetxt(buf, np.round(values, 6) + 0.0, fmt="%.6f")  # + 0.0 turns -0.0 into 0.0
    return buf.getvalue()


def write_bvh(path: Path, rig: Rig, motion: TrackMotion, fps: float) -> Path:
    """Write the file atomically; raises :class:`~engine.errors.OutputError` when it cannot be written."""
    return write_atomic(path, bvh_text(rig, motion, fps).encode("ascii"))
