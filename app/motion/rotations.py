"""Rotation maths for the animation writers (numpy, float64, batched over leading axes).

Quaternions are stored ``(x, y, z, w)``, glTF's order, so they go into a .glb without reordering. Euler angles
are for BVH, whose channels name the order of a matrix product: ``Zrotation Xrotation Yrotation`` means
``R = Rz(z) @ Rx(x) @ Ry(y)`` applied to column vectors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["axis_angle_to_quat", "canonical_hemisphere", "euler_zxy", "quat_mul", "quat_to_matrix", "slerp"]


def axis_angle_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """[..., 3] axis-angle (radians = norm) -> [..., 4] unit quaternions (x, y, z, w)."""
    v = np.asarray(rotvec, np.float64)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 as a -> 0; the series avoids 0/0 for the many exactly-zero joints (hands).
    small = angle < 1e-8
    scale = np.where(small, 0.5 - angle**2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([v * scale, np.cos(half)], axis=-1)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` (rotate by b, then by a) of [..., 4] (x, y, z, w) quaternions."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """[..., 4] (x, y, z, w) -> [..., 3, 3] rotation matrices (the quaternion is normalised first)."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                    axis=-1).reshape(*q.shape[:-1], 3, 3)


def canonical_hemisphere(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (time) so consecutive quaternions have a non-negative dot product.

    ``q`` and ``-q`` are the same rotation, but linear interpolation between keys takes the long way round when
    their signs disagree; players (glTF LINEAR) interpolate the stored numbers, so the stored signs must agree.
    """
    q = np.array(q, np.float64, copy=True)
    if len(q) < 2:
        return q
    dots = np.sum(q[1:] * q[:-1], axis=-1)
    flips = np.cumprod(np.where(dots < 0, -1.0, 1.0), axis=0)
    q[1:] *= flips[..., None]
    return q


def slerp(q0: np.ndarray, q1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spherical interpolation of [..., 4] unit quaternions, shortest path; ``w`` broadcasts over [...]."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    w = np.asarray(w, np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    near = sin < 1e-6  # nearly equal: linear is exact enough and avoids 0/0
    safe = np.where(near, 1.0, sin)
    a = np.where(near, 1.0 - w, np.sin((1.0 - w) * theta) / safe)
    b = np.where(near, w, np.sin(w * theta) / safe)
    out = a * q0 + b * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def euler_zxy(m: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., 3] angles (z, x, y) in radians with ``m = Rz(z) Rx(x) Ry(y)``.

    ``x`` is in [-pi/2, pi/2]. At gimbal lock (``|x| = pi/2``) only ``z + y`` or ``z - y`` is defined; ``y`` is
    then set to 0 so the decomposition still reproduces ``m``.
    """
    m = np.asarray(m, np.float64)
    cx = np.sqrt(m[..., 2, 0] ** 2 + m[..., 2, 2] ** 2)
    x = np.arctan2(m[..., 2, 1], cx)  # better conditioned than arcsin near +-90 degrees
    locked = cx < 1e-9
    y = np.where(locked, 0.0, np.arctan2(-m[..., 2, 0], m[..., 2, 2]))
    z = np.where(locked, np.arctan2(m[..., 1, 0], m[..., 0, 0]), np.arctan2(-m[..., 0, 1], m[..., 1, 1]))
    return np.stack([z, x, y], axis=-1)
