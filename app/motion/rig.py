"""What the animation files need from the body model: the rest skeleton, the skinned rest mesh, root positions.

Both body models are driven by SMPL's 24 joint rotations, so the exported skeleton is SMPL's 24 joints (names and
tree from :mod:`engine.body.base`) for either. The rest pose is the body at zero pose: a T-pose, y up, facing +z,
metres (Anny's A-pose arms are re-aimed to the T-pose by the body model itself). Every joint's rest orientation is
the identity, so an SMPL local rotation is directly the joint's local rotation in BVH and glTF.

SMPL's joints form a rigid chain, so for SMPL the skeleton and its skinning weights are exact. Anny skins 104
bones, each following one SMPL joint's rotation or, for spine1, neck and head, part of it: each of the three is
spread over two bones (a fraction ``f`` at the first, the rest at the second). A single joint that turns by the
whole rotation reproduces such a pair to first order when it sits a fraction ``1 - f`` of the way from the first
bone to the second (half-way for spine1 and neck, 70% for the head), so the skeleton puts those three joints there:
the other 21 joints and the mesh then follow Anny closely (measured on real clips: joints < 1 mm at p99, vertices
about 1 mm on average), while the three pivots themselves sit 1-4 cm from the joint positions Anny reports. The
first bone's weight (fraction ``f``) goes to the joint by ``f`` and to its parent by ``1 - f``.

torch is used only to call the body model; everything returned is numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.body import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel
from engine.body.base import LEFT_HIP, RIGHT_HIP
from engine.errors import OutputError

from .rotations import axis_angle_to_quat, quat_to_matrix

__all__ = ["Rig", "body_rig", "pelvis_offsets", "skin_weights"]

NUM_JOINTS = 24
_CHUNK = 256  # poses per body-model call: bounded memory for long clips


@dataclass(frozen=True)
class Rig:
    """The rest skeleton and skinned rest mesh of one body shape (body axes: y up, facing +z, metres).

    Attributes:
        joint_names: the 24 SMPL joint names.
        parents: parent index per joint, -1 for the root (pelvis).
        rest_joints: [24, 3] float64 joint positions in the rest T-pose.
        vertices: [V, 3] float32 rest mesh.
        faces: [F, 3] int32 triangles.
        weights: [V, 24] float32 skinning weights (rows sum to 1).
    """

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    rest_joints: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        """[24, 3] each joint's rest position relative to its parent (the root's is its rest position)."""
        par = np.array([max(p, 0) for p in self.parents])
        out = self.rest_joints - self.rest_joints[par]
        out[0] = self.rest_joints[0]
        return out


def _shape_tensor(body: BodyModel, shape: np.ndarray | None, batch: int) -> torch.Tensor | None:
    if shape is None:
        return None
    return torch.as_tensor(np.asarray(shape, np.float32)).reshape(1, -1).expand(batch, -1)


def skin_weights(body: BodyModel) -> np.ndarray:
    """[V, 24] weights of the body's vertices to the SMPL joints (see the module docstring)."""
    smpl = getattr(body, "smpl", None)
    if smpl is not None and hasattr(smpl, "lbs_weights"):
        w = smpl.lbs_weights.detach().cpu().numpy().astype(np.float64)
    elif hasattr(body, "rot_index") and hasattr(body, "skin_weights"):
        bone_w = body.skin_weights.detach().cpu().numpy().astype(np.float64)  # [V, bones]
        rot_index = body.rot_index.cpu().numpy()
        part_joint = body.partial_joint.cpu().numpy()
        part_frac = body.partial_frac.cpu().numpy().astype(np.float64)
        to_joint = np.zeros((len(rot_index), NUM_JOINTS))
        for b, src in enumerate(rot_index):
            if src < NUM_JOINTS:
                to_joint[b, src] = 1.0
            else:
                j, f = int(part_joint[src - NUM_JOINTS]), float(part_frac[src - NUM_JOINTS])
                to_joint[b, j] += f
                to_joint[b, SMPL_PARENTS[j]] += 1.0 - f
        w = bone_w @ to_joint
    else:
        raise OutputError(f"the body model {type(body).__name__} has no skinning weights for the animated glb; "
                          "use --body-model anny or smpl")
    w = w[:, :NUM_JOINTS]
    return (w / np.maximum(w.sum(1, keepdims=True), 1e-12)).astype(np.float32)


def _split_pivots(body: BodyModel, shape: torch.Tensor | None, joints: np.ndarray) -> np.ndarray:
    """Move the joints whose rotation a body spreads over two bones to their pivots (see the module docstring)."""
    if not hasattr(body, "pose_bones") or not hasattr(body, "partial_joint"):
        return joints
    shape = body.default_shape()[None] if shape is None else shape
    heads = body.pose_bones(torch.zeros(1, 72), shape).heads[0].numpy().astype(np.float64)
    rot_index = body.rot_index.cpu().numpy()
    parents = body.parents.cpu().numpy()
    out = joints.copy()
    for k, (j, f) in enumerate(zip(body.partial_joint.tolist(), body.partial_frac.tolist())):
        src = NUM_JOINTS + k
        first = [b for b in range(len(rot_index)) if rot_index[b] == src and rot_index[parents[b]] != src]
        second = [b for b in range(len(rot_index)) if rot_index[b] == j and rot_index[parents[b]] == src]
        if len(first) == 1 and len(second) == 1:
            out[j] = heads[first[0]] + (1.0 - f) * (heads[second[0]] - heads[first[0]])
    return out


@torch.inference_mode()
def body_rig(body: BodyModel, shape: np.ndarray | None = None, weights: np.ndarray | None = None) -> Rig:
    """The rest skeleton and mesh at ``shape`` (None: the body's default shape).

    Args:
        weights: precomputed :func:`skin_weights` (they do not depend on the shape), or None to compute them.
    """
    sh = _shape_tensor(body, shape, 1)
    out = body(torch.zeros(1, 3), torch.zeros(1, 69), shape=sh, root_align=False)
    joints = _split_pivots(body, sh, out.joints[0, :NUM_JOINTS].numpy().astype(np.float64))
    return Rig(joint_names=tuple(SMPL_JOINT_NAMES), parents=tuple(SMPL_PARENTS), rest_joints=joints,
               vertices=out.vertices[0].numpy().astype(np.float32),
               faces=np.ascontiguousarray(body.faces, np.int32),
               weights=skin_weights(body) if weights is None else weights)


def pelvis_offsets(body: BodyModel, poses: np.ndarray, rig: Rig, shape: np.ndarray | None = None) -> np.ndarray:
    """[T, 72] SMPL poses -> [T, 3] pelvis position relative to the body's alignment point, camera axes.

    The network's camera translation places the root-aligned body, so the pelvis joint sits at ``cam_trans``
    plus this offset. With the usual alignment point, the mid-hip, the offset is the rest pelvis-to-mid-hip
    vector turned by the root rotation (the hips hang rigidly off the pelvis in both body models): no body-model
    call per frame. A body aligned otherwise (SMPL with ``J_regressor_extra``) is asked frame by frame.
    """
    poses = np.asarray(poses, np.float64)
    if getattr(body, "align_regressor", None) is None:
        q = rig.rest_joints
        rest = q[0] - 0.5 * (q[LEFT_HIP] + q[RIGHT_HIP])
        return quat_to_matrix(axis_angle_to_quat(poses[:, :3])) @ rest
    return _pelvis_offsets_by_body(body, poses, shape)


@torch.inference_mode()
def _pelvis_offsets_by_body(body: BodyModel, poses: np.ndarray, shape: np.ndarray | None) -> np.ndarray:
    poses = np.asarray(poses, np.float32)
    out = np.zeros((len(poses), 3), np.float64)
    for s in range(0, len(poses), _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(poses[s:s + _CHUNK]))
        res = body(chunk[:, :3], chunk[:, 3:], shape=_shape_tensor(body, shape, len(chunk)), root_align=True)
        out[s:s + len(chunk)] = res.joints[:, 0].numpy()
    return out
