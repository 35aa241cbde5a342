"""Stable per-person IDs across frames.

Association is a Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on a cost that mixes

* the distance between a detection's body centre and the track's constant-velocity prediction, in units of the
  person's projected size (so the gate works for near and far people alike),
* the log ratio of their weak-perspective scales (a near and a far person rarely swap), and
* a small pose term (mean absolute axis-angle difference), which separates two people whose centres coincide
  while they cross.

Tracks survive ``max_age`` frames without a match, so a person hidden for a moment keeps the ID. Everything runs
on the host in well under a millisecond for a handful of people, before smoothing and the body model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

log = logging.getLogger(__name__)

_INFEASIBLE = 1e6


@dataclass(frozen=True)
class TrackerCfg:
    """Args:
    max_age: frames a track is kept without a matching detection.
    gate: largest accepted association cost (roughly "one person-size away").
    scale_weight: weight of ``|log(s_det / s_track)|``.
    pose_weight: weight of the mean absolute body-pose difference (radians).
    velocity_smoothing: EMA factor of the velocity estimate (0 = last step only).
    """

    max_age: int = 8
    gate: float = 1.2
    scale_weight: float = 0.5
    pose_weight: float = 0.3
    velocity_smoothing: float = 0.5


@dataclass
class Track:
    id: int
    center: np.ndarray  # [2] pixels, original frame
    size: float  # projected person size in pixels
    scale: float  # weak-perspective s
    pose: np.ndarray  # [69]
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float64))
    misses: int = 0
    hits: int = 1

    def predicted(self) -> np.ndarray:
        return self.center + self.velocity * (self.misses + 1)


@dataclass
class TrackUpdate:
    """Result of one :meth:`Tracker.update`: an ID per detection and the IDs that ended this frame."""

    ids: np.ndarray  # [N] int64
    ended: list[int]


class Tracker:
    """Assigns IDs to detections frame by frame (see the module docstring for the cost)."""

    def __init__(self, cfg: TrackerCfg | None = None) -> None:
        self.cfg = cfg or TrackerCfg()
        self.tracks: list[Track] = []
        self._next_id = 0

    def reset(self) -> None:
        self.tracks = []
        self._next_id = 0

    def cost_matrix(self, centers: np.ndarray, sizes: np.ndarray, scales: np.ndarray,
                    poses: np.ndarray) -> np.ndarray:
        """[T, N] association cost, ``_INFEASIBLE`` beyond the gate."""
        cfg = self.cfg
        if not self.tracks or len(centers) == 0:
            return np.zeros((len(self.tracks), len(centers)))
        pred = np.stack([t.predicted() for t in self.tracks])
        tsize = np.array([t.size for t in self.tracks])
        tscale = np.array([t.scale for t in self.tracks])
        tpose = np.stack([t.pose for t in self.tracks])
        dist = np.linalg.norm(pred[:, None, :] - centers[None, :, :], axis=2)
        unit = np.maximum(np.maximum(tsize[:, None], sizes[None, :]), 1.0)
        cost = dist / unit
        cost += cfg.scale_weight * np.abs(np.log(np.maximum(scales[None, :], 1e-6) / np.maximum(tscale[:, None], 1e-6)))
        cost += cfg.pose_weight * np.abs(tpose[:, None, :] - poses[None, :, :]).mean(axis=2)
        cost[cost > cfg.gate] = _INFEASIBLE
        return cost

    def update(self, centers: np.ndarray, sizes: np.ndarray, scales: np.ndarray, poses: np.ndarray) -> TrackUpdate:
        """Match N detections to the live tracks.

        Args:
            centers: [N, 2] body centres in original-frame pixels.
            sizes: [N] projected person sizes in pixels (the distance unit).
            scales: [N] weak-perspective scales s.
            poses: [N, P] pose vectors (body_pose axis-angle).
        """
        n = len(centers)
        ids = np.full(n, -1, np.int64)
        cost = self.cost_matrix(centers, sizes, scales, poses)
        matched_tracks: set[int] = set()
        if cost.size:
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] >= _INFEASIBLE:
                    continue
                t = self.tracks[r]
                step = (centers[c] - t.center) / (t.misses + 1)
                a = self.cfg.velocity_smoothing
                t.velocity = a * t.velocity + (1 - a) * step if t.hits > 1 else step
                t.center = centers[c].astype(np.float64)
                t.size, t.scale, t.pose = float(sizes[c]), float(scales[c]), poses[c].copy()
                t.misses, t.hits = 0, t.hits + 1
                ids[c] = t.id
                matched_tracks.add(r)
        ended = []
        keep = []
        for i, t in enumerate(self.tracks):
            if i not in matched_tracks:
                t.misses += 1
                if t.misses > self.cfg.max_age:
                    ended.append(t.id)
                    continue
            keep.append(t)
        self.tracks = keep
        for c in np.flatnonzero(ids < 0):
            t = Track(self._next_id, centers[c].astype(np.float64), float(sizes[c]), float(scales[c]),
                      poses[c].copy())
            self._next_id += 1
            self.tracks.append(t)
            ids[c] = t.id
        return TrackUpdate(ids, ended)
