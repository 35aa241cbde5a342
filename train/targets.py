"""Ground-truth maps on the M x M output grid (as in the official code), computed per batch from the stored GT.

* Centre map: adaptive-radius Gaussian per person, r = int(||bbox_hw / 2|| * M/16 + M/32) with the box in
  normalised units (full image = 2), diameter 2r+1, sigma = diameter / 6, max-merged, centre cell forced to 1;
  cell = int((c + 1) / 2 * M), clamped to the grid. The centre c is the mean of the in-frame torso joints
  (``scene.TORSO``). (The official collision-aware push-apart of close centres is not applied.)
* Joint heatmaps: 24 SMPL-order channels, Gaussian sigma = 1 cell, window 9 (6 sigma + 3), peak 1 at the
  integer cell of every VISIBLE joint (hidden joints give no peak, as in the paper), max-merged.
* kp_coords: integer (x, y) cells of visible joints with a validity mask (the contrastive loss' joint samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Targets:
    """Batch targets (torch). P = padded people per image."""

    center_map: torch.Tensor  # [B, 1, M, M]
    joint_maps: torch.Tensor  # [B, 24, M, M]
    center_cells: torch.Tensor  # [B, P, 2] long (x, y)
    person_mask: torch.Tensor  # [B, P] bool
    kp_coords: torch.Tensor  # [B, P, 24, 2] long (x, y)
    kp_mask: torch.Tensor  # [B, P, 24] bool


def to_cells(xy: np.ndarray, m: int) -> np.ndarray:
    """Normalised (x, y) in [-1, 1] -> integer cells, int((c + 1) / 2 * M) clamped to [0, M - 1]."""
    return np.clip(np.floor((xy + 1) / 2 * m), 0, m - 1).astype(np.int64)


def center_radius(bbox: np.ndarray, m: int) -> np.ndarray:
    """Adaptive radius [...] from boxes [..., 4] (x0, y0, x1, y1) in normalised units."""
    hw = np.stack([bbox[..., 3] - bbox[..., 1], bbox[..., 2] - bbox[..., 0]], -1)
    return (np.linalg.norm(hw / 2, axis=-1) * m / 16 + m / 32).astype(np.int64)


def center_heatmap(centers: np.ndarray, bboxes: np.ndarray, m: int) -> np.ndarray:
    """[M, M] centre map for one image's people (centers [P, 2], bboxes [P, 4])."""
    out = np.zeros((m, m), np.float32)
    yy, xx = np.mgrid[0:m, 0:m]
    cells = to_cells(centers, m)
    for (cx, cy), r in zip(cells, center_radius(bboxes, m)):
        sigma = (2 * r + 1) / 6
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
        g[(np.abs(xx - cx) > r) | (np.abs(yy - cy) > r)] = 0
        np.maximum(out, g, out=out)
        out[cy, cx] = 1.0
    return out


def joint_heatmaps(kp2d: np.ndarray, vis: np.ndarray, m: int, sigma: float = 1.0) -> np.ndarray:
    """[24, M, M] from kp2d [P, 24, 2] and visibility [P, 24]."""
    out = np.zeros((kp2d.shape[1], m, m), np.float32)
    if len(kp2d) == 0:
        return out
    cells = np.floor((kp2d + 1) / 2 * m)  # official: int(x_hm), drawn only if inside the grid
    ok = vis & (cells >= 0).all(-1) & (cells < m).all(-1)
    ax = np.arange(m, dtype=np.float32)
    dx = ax[None, None, :] - cells[..., 0:1]  # [P, 24, M]
    dy = ax[None, None, :] - cells[..., 1:2]
    rad = int(3 * sigma + 1)
    gx = np.where(np.abs(dx) <= rad, np.exp(-dx ** 2 / (2 * sigma ** 2)), 0)
    gy = np.where(np.abs(dy) <= rad, np.exp(-dy ** 2 / (2 * sigma ** 2)), 0)
    g = gy[..., :, None] * gx[..., None, :] * ok[..., None, None]  # [P, 24, M, M]
    return g.max(0).astype(np.float32)


def build_targets(batch: dict[str, np.ndarray], m: int) -> Targets:
    """Targets for a batch of stored GT (keys as in ``dataset.GT_KEYS`` plus ``n``)."""
    b, p = batch["cam"].shape[:2]
    cmaps = np.zeros((b, 1, m, m), np.float32)
    jmaps = np.zeros((b, 24, m, m), np.float32)
    pmask = np.arange(p)[None] < batch["n"][:, None]
    for i in range(b):
        n = int(batch["n"][i])
        cmaps[i, 0] = center_heatmap(batch["center"][i, :n], batch["bbox"][i, :n], m)
        jmaps[i] = joint_heatmaps(batch["kp2d"][i, :n], batch["vis"][i, :n].astype(bool), m)
    kp_cells = to_cells(batch["kp2d"], m)
    kp_mask = batch["vis"].astype(bool) & pmask[..., None]
    return Targets(torch.from_numpy(cmaps), torch.from_numpy(jmaps), torch.from_numpy(to_cells(batch["center"], m)),
                   torch.from_numpy(pmask), torch.from_numpy(kp_cells), torch.from_numpy(kp_mask))
