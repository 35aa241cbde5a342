"""Weak-perspective projection of root-aligned meshes into the original frame.

The network's camera is weak perspective over the letterboxed square: ``norm = s * v[:, :2] + (tx, ty)`` in
[-1, 1], then the letterbox maps normalised coordinates back to original pixels. Depth for ordering is the
camera-space z, ``2 / s + v_z`` (the same ``cam_trans`` convention as the engine), which also orders different
people correctly: a nearer person has a larger scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.types import Letterbox


def project_points(points: np.ndarray, cam: np.ndarray, box: Letterbox) -> tuple[np.ndarray, np.ndarray]:
    """Project points of N people.

    Args:
        points: [N, K, 3] root-aligned (metres).
        cam: [N, 3] weak-perspective (s, tx, ty).
        box: the frame's letterbox.

    Returns:
        pixels [N, K, 2] float32 in the original frame, depth [N, K] float32 (larger = farther).
    """
    s = np.maximum(cam[:, None, 0:1], 1e-6)
    norm = points[..., :2] * s + cam[:, None, 1:3]
    px = box.norm_to_original(norm.astype(np.float32))
    depth = points[..., 2] + 2.0 / s[..., 0]
    return px.astype(np.float32), depth.astype(np.float32)


def person_boxes(cam: np.ndarray, box: Letterbox, half_extent: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Body centres [N, 2] and projected sizes [N] in original pixels (size of ``half_extent`` metres)."""
    centers = box.norm_to_original(cam[:, 1:3].astype(np.float32))
    sizes = np.maximum(cam[:, 0], 1e-6) * half_extent * box.padded_side / 2.0
    return centers.astype(np.float32), sizes.astype(np.float32)
