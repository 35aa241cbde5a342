"""Evaluation metrics: MPJPE, PA-MPJPE (batched Procrustes from ``losses``), PVE, 2D PCK, detection P/R.

Definitions (fixed before looking at any result, see README):
* 3D metrics follow the official protocol: parameters are read at the GROUND-TRUTH centre cell,
  joints are the 24 SMPL-order joints of the Anny body, both root-aligned on the mid-hip, errors in millimetres.
  PVE compares all vertices of the predicted and GT Anny meshes (GT shape phenotypes, predicted phenotypes).
* PCK: fraction of in-frame joints whose projected 2D error is below 0.1 x the longer side of the person's visible
  box (normalised coordinates).
* Detection: predicted centres (decode, threshold 0.2, the app's default) are matched one-to-one to GT centres
  (Hungarian on distance); a match counts when the distance is below max(0.06, 0.3 x sqrt(box area)) in
  normalised units, i.e. about a third of the person's size and at least ~1 output cell.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def match_centers(pred: np.ndarray, gt: np.ndarray, bbox: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one matches (pred index, gt index) within the per-GT tolerance."""
    if len(pred) == 0 or len(gt) == 0:
        return []
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)
    area = np.clip((bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1]), 0, None)
    tol = np.maximum(0.06, 0.3 * np.sqrt(area))
    cost = np.where(d < tol[None], d, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < 1e6]


def pck(pj2d: np.ndarray, kp2d: np.ndarray, mask: np.ndarray, bbox: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Per-person PCK [N] over masked joints (NaN for people without any)."""
    size = np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1])
    ok = np.linalg.norm(pj2d - kp2d, axis=-1) < alpha * size[:, None]
    cnt = mask.sum(1)
    with np.errstate(invalid="ignore"):
        return np.where(cnt > 0, (ok & mask).sum(1) / np.maximum(cnt, 1), np.nan)


class DetectionCounter:
    """Accumulates TP / FP / FN; ``subset`` restricts FN/TP to GT people of the subset and FP to images holding
    at least one such person (precision on the occluded subset is otherwise undefined)."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def add(self, n_pred: int, matches: list[tuple[int, int]], gt_sel: np.ndarray) -> None:
        """gt_sel: [G] bool, the GT people counted by this counter."""
        if not gt_sel.any():
            return
        matched_gt = {g for _, g in matches}
        self.tp += sum(1 for g in matched_gt if gt_sel[g])
        self.fn += int(sum(1 for g in np.flatnonzero(gt_sel) if g not in matched_gt))
        self.fp += n_pred - len(matches)

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)
