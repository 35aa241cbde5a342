"""Rotation conversions used by decoding (numpy, host side) and training (torch).

The 6D layout is ROMP's: the six numbers are a row-major 3x2 matrix, so the two basis vectors are the
INTERLEAVED triples a1 = (v0, v2, v4), a2 = (v1, v3, v5) — not the first and last three.
"""

from __future__ import annotations

import numpy as np
import torch


def rot6d_to_rotmat_np(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """[..., 6] -> [..., 3, 3] with columns (b1, b2, b3) via Gram-Schmidt."""
    m = np.asarray(x, dtype=np.float64).reshape(*x.shape[:-1], 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), eps)
    a2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2 / np.maximum(np.linalg.norm(a2, axis=-1, keepdims=True), eps)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def rot6d_to_rotmat(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Torch twin of :func:`rot6d_to_rotmat_np` (differentiable, for training)."""
    m = x.reshape(*x.shape[:-1], 3, 2)
    b1 = torch.nn.functional.normalize(m[..., 0], dim=-1, eps=eps)
    a2 = m[..., 1]
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=eps)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def rotmat_to_axis_angle_np(r: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> [..., 3] axis-angle, angle in [0, pi].

    Goes through a unit quaternion chosen by the largest diagonal term (Shepperd), which stays accurate near
    0 and pi where the trace formula loses precision.
    """
    r = np.asarray(r, dtype=np.float64)
    shape = r.shape[:-2]
    r = r.reshape(-1, 3, 3)
    tr = np.trace(r, axis1=1, axis2=2)
    diag = np.stack([r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]], axis=1)
    choice = np.argmax(np.concatenate([tr[:, None], diag], axis=1), axis=1)
    q = np.empty((len(r), 4))
    for i in range(len(r)):  # N is the number of people: tiny
        m = r[i]
        c = choice[i]
        if c == 0:
            s = np.sqrt(max(tr[i] + 1.0, 1e-12)) * 2
            q[i] = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        elif c == 1:
            s = np.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 1e-12)) * 2
            q[i] = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
        elif c == 2:
            s = np.sqrt(max(1.0 + m[1, 1] - m[0, 0] - m[2, 2], 1e-12)) * 2
            q[i] = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
        else:
            s = np.sqrt(max(1.0 + m[2, 2] - m[0, 0] - m[1, 1], 1e-12)) * 2
            q[i] = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q[q[:, 0] < 0] *= -1  # w >= 0 -> angle in [0, pi]
    v = q[:, 1:]
    sin_half = np.linalg.norm(v, axis=1)
    angle = 2 * np.arctan2(sin_half, q[:, 0])
    # angle / sin(angle/2) -> 2 as the angle -> 0
    k = np.where(sin_half > 1e-8, angle / np.maximum(sin_half, 1e-12), 2.0)
    return (v * k[:, None]).reshape(*shape, 3)


def axis_angle_to_rotmat_np(aa: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 3, 3] (Rodrigues)."""
    aa = np.asarray(aa, dtype=np.float64)
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(theta, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*aa.shape[:-1], 3, 3)
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + s * k + (1 - c) * (k @ k)


def axis_angle_to_rotmat(aa: torch.Tensor) -> torch.Tensor:
    """Torch Rodrigues, [..., 3] -> [..., 3, 3]; the epsilon is a clamp so exported graphs keep it."""
    theta = torch.clamp((aa * aa).sum(-1, keepdim=True), min=1e-16).sqrt()
    axis = aa / theta
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*aa.shape[:-1], 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)
