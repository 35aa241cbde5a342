"""People -> posed meshes and their 2D projections in the original frame (weak perspective, as the official code)."""

from __future__ import annotations

import numpy as np
import torch

from .body import BodyModel
from .types import Letterbox, Meshes, People


def project(points: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Weak perspective: [N, K, 3] root-aligned points, [N, 3] (s, tx, ty) -> [N, K, 2] normalised input coords."""
    return points[..., :2] * cam[:, None, 0:1] + cam[:, None, 1:3]


@torch.inference_mode()
def people_to_meshes(people: People, body: BodyModel, box: Letterbox) -> Meshes:
    """Pose every person's body (root-aligned on the mid-hip, as the network's camera assumes) and project it."""
    n = len(people)
    if n == 0:
        j = len(body.joint_names)
        return Meshes(np.zeros((0, body.num_vertices, 3), np.float32), np.zeros((0, j, 3), np.float32),
                      body.faces, np.zeros((0, j, 2), np.float32))
    shape = torch.from_numpy(people.betas) if body.shape_kind == "smpl_betas" else None
    out = body(global_orient=torch.from_numpy(people.global_orient), body_pose=torch.from_numpy(people.body_pose),
               shape=shape, root_align=True)
    verts = out.vertices.numpy().astype(np.float32, copy=False)
    joints = out.joints.numpy().astype(np.float32, copy=False)
    pj2d = box.norm_to_original(project(joints, people.cam)).astype(np.float32)
    return Meshes(verts, joints, body.faces, pj2d)
