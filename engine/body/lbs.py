"""Pure, stateless linear-blend-skinning maths shared by the body models.

Every function takes all its tensors explicitly and takes device/dtype from them, so the body layers stay buffers
plus these functions, trace cleanly and export to ONNX. Epsilon guards are ``torch.clamp`` calls on purpose: an ONNX
graph optimiser may fold ``x + eps`` away (observed with the dynamo exporter), turning a zero rotation into NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "batch_rodrigues",
    "chain_levels",
    "linear_blend_skinning",
    "posed_heads",
    "swing_rotation",
    "world_rotations",
]


def batch_rodrigues(rot_vecs: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors to rotation matrices.

    Args:
        rot_vecs: [N, 3] axis-angle (angle = norm, radians).

    Returns:
        [N, 3, 3] rotation matrices, exactly the identity for a zero vector (the angle is clamped, not offset).
    """
    angle_sq = (rot_vecs * rot_vecs).sum(dim=1, keepdim=True)
    angle = torch.sqrt(torch.clamp(angle_sq, min=1e-16))  # [N, 1]
    axis = rot_vecs / angle
    cos = torch.cos(angle)[:, :, None]
    sin = torch.sin(angle)[:, :, None]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zeros = torch.zeros_like(x)
    skew = torch.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], dim=1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return eye + sin * skew + (1.0 - cos) * torch.bmm(skew, skew)


def chain_levels(parents: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Group a kinematic tree by depth so the chain needs one batched product per level, not one per joint.

    Args:
        parents: parent index of each joint, the root (index 0) having a negative parent; parents precede children.

    Returns:
        For each depth >= 1: (joint indices, their parents' indices).
    """
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        if not 0 <= parents[j] < j:
            raise ValueError(f"joint {j}: parent {parents[j]} must precede it (topological order)")
        depth[j] = depth[parents[j]] + 1
    levels = []
    for d in range(1, max(depth, default=0) + 1):
        idx = [j for j in range(len(parents)) if depth[j] == d]
        levels.append((idx, [parents[j] for j in idx]))
    return levels


def world_rotations(local: torch.Tensor, levels: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """Chain local rotations into world rotations, ``G_j = G_parent(j) @ R_j``.

    Args:
        local: [B, J, 3, 3] local rotations (joint 0 = root, its local rotation is its world rotation).
        levels: output of :func:`chain_levels` for the same tree.

    Returns:
        [B, J, 3, 3] world rotations.
    """
    num_joints = local.shape[1]
    eager = (not torch.jit.is_tracing() and not torch.compiler.is_compiling()
             and not (local.requires_grad and torch.is_grad_enabled()))
    if eager and all(_is_run(idx) for idx, _ in levels):
        # no graph to keep: each level's joints are consecutive (true of SMPL's order), so one in-place slice write
        # per level replaces a select per joint plus a stack per level (under half the ops, ~0.1 ms a frame; the
        # same 3x3 products, bit for bit)
        world = local.clone()
        for idx, par in levels:
            parent_rot = world[:, par[0]:par[0] + 1] if len(set(par)) == 1 else world[:, par]
            world[:, idx[0]:idx[-1] + 1] = torch.matmul(parent_rot, local[:, idx[0]:idx[-1] + 1])
        return world
    done: dict[int, torch.Tensor] = {0: local[:, 0]}
    for idx, par in levels:
        parent_rot = torch.stack([done[p] for p in par], dim=1)  # [B, n, 3, 3]
        level_rot = torch.matmul(parent_rot, local[:, idx])
        for k, j in enumerate(idx):
            done[j] = level_rot[:, k]
    return torch.stack([done[j] for j in range(num_joints)], dim=1)


def _is_run(idx: list[int]) -> bool:
    return idx == list(range(idx[0], idx[0] + len(idx)))


def posed_heads(world_rot: torch.Tensor, rest_heads: torch.Tensor, parents: torch.Tensor,
                ancestors: torch.Tensor, root_position: torch.Tensor) -> torch.Tensor:
    """Posed joint positions when every joint's head follows its parent rigidly.

    ``p_c = p_parent + G_parent (h_c - h_parent)``; summed along the path this is one matrix product with the
    ancestor matrix, so no per-level loop is needed.

    Args:
        world_rot: [B, J, 3, 3] world rotations G (posed orientation relative to rest).
        rest_heads: [B, J, 3] rest joint positions h.
        parents: [J] int64 parent indices with the root mapped to itself (its offset is zeroed anyway).
        ancestors: [J, J] float, ``A[c, a] = 1`` if a is c or one of its ancestors, the root excluded.
        root_position: [B, 3] where the root joint goes.

    Returns:
        [B, J, 3] posed joint positions.
    """
    offsets = rest_heads - rest_heads[:, parents]  # root offset is 0 since its parent is itself
    rotated = torch.matmul(world_rot[:, parents], offsets[..., None])[..., 0]  # [B, J, 3]
    return root_position[:, None] + torch.matmul(ancestors, rotated)


def linear_blend_skinning(rest_vertices: torch.Tensor, weights: torch.Tensor, world_rot: torch.Tensor,
                          rest_heads: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Skin rest vertices with per-joint rigid transforms ``x -> G_j (x - h_j) + p_j``.

    Args:
        rest_vertices: [B, V, 3] shaped rest mesh.
        weights: [V, J] skinning weights (rows sum to 1), dense or sparse CSR.
        world_rot: [B, J, 3, 3] world rotations G.
        rest_heads: [B, J, 3] rest joint positions h.
        heads: [B, J, 3] posed joint positions p.

    Returns:
        [B, V, 3] posed vertices.
    """
    batch, num_joints = world_rot.shape[:2]
    transl = heads - (world_rot * rest_heads[:, :, None, :]).sum(-1)  # [B, J, 3]
    per_joint = torch.cat([world_rot.reshape(batch, num_joints, 9), transl], dim=2)  # [B, J, 12]
    # one [V, J] x [J, B * 12] product for the whole batch: a broadcast matmul would copy the weights per person
    blended = torch.matmul(weights, per_joint.permute(1, 0, 2).reshape(num_joints, -1))  # [V, B * 12]
    blended = blended.reshape(weights.shape[0], batch, 4, 3).permute(1, 0, 2, 3)  # [B, V, 4, 3]: R rows, then t
    rot, v = blended[..., :3, :], rest_vertices
    # R @ v per vertex written out as columns of R times coordinates: batched 3x3 matmuls cost ~10x the arithmetic
    return blended[..., 3, :] + rot[..., 0] * v[..., 0:1] + rot[..., 1] * v[..., 1:2] + rot[..., 2] * v[..., 2:3]


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product over the last axis, written out (``torch.linalg.cross`` has no ONNX symbolic)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def swing_rotation(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smallest rotation taking unit direction ``source`` onto unit direction ``target``.

    Used to re-aim Anny's A-pose arm bones at SMPL's T-pose directions. Undefined only for opposite vectors
    (the arms are never within 90 degrees of that); ``1 + cos`` is clamped so it never divides by zero.

    Args:
        source: [..., 3] unit vectors.
        target: [..., 3] unit vectors.

    Returns:
        [..., 3, 3] rotation matrices R with ``R @ source = target``.
    """
    k = _cross(source, target)
    c = (source * target).sum(-1)[..., None, None]
    zeros = torch.zeros_like(k[..., 0])
    skew = torch.stack([zeros, -k[..., 2], k[..., 1], k[..., 2], zeros, -k[..., 0], -k[..., 1], k[..., 0], zeros],
                       dim=-1).reshape(*k.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=source.dtype, device=source.device)
    return eye + skew + torch.matmul(skew, skew) / torch.clamp(1.0 + c, min=1e-6)
