"""Stable per-person IDs across frames.

Association is a Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on a cost that mixes

* the distance between a detection's body centre and the track's constant-velocity prediction, in units of the
  person's projected size (so the gate works for near and far people alike),
* the log ratio of their weak-perspective scales (a near and a far person rarely swap),
* a small pose term (mean absolute axis-angle difference), which separates two people whose centres coincide
  while they cross, and
* a colour term (``look_weight`` x the Hellinger distance between hue-saturation-value histograms of the torso,
  kept per track as a running mean), added only where the motion terms already allow the match: it decides
  between neighbours the motion terms cannot tell apart (people who meet and turn back, a close group whose bodies
  the model places a little off from frame to frame). Torsos under ``LOOK_MIN_PX`` pixels on a side (a distant
  walker) have no colour term. On webcam-like clips of twelve photos (a slow zoom and sway, every person boxed), a
  person's id changed 131 -> 111 times over the ~1,560 person-frames where they were found, and people had
  55 -> 40 ids beyond their first; on vtest.avi, whose walkers are mostly too small for it, 85 -> 86 ids in all.
  Trusting the real-footage model's own track ids instead was worse (136 changes): in a close group its landmark
  crops slide from one person to the next, ids and all.

Tracks survive ``max_age`` frames without a match, so a person hidden for a moment keeps the ID. Everything runs
on the host in well under a millisecond for a handful of people, before smoothing and the body model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from .render.colors import PALETTE_BGR
from .render.projection import person_boxes

if TYPE_CHECKING:
    from engine.types import Letterbox, People

log = logging.getLogger(__name__)

_INFEASIBLE = 1e6
_LOOK_SHAPE = (8, 3, 3)  # hue, saturation, value bins (value tells a black shirt from a white one)
LOOK_BINS = int(np.prod(_LOOK_SHAPE))
LOOK_MIN_PX = 24


@dataclass(frozen=True)
class TrackerCfg:
    """Args:
    max_age: frames a track is kept without a matching detection.
    gate: largest accepted association cost (roughly "one person-size away").
    scale_weight: weight of ``|log(s_det / s_track)|``.
    pose_weight: weight of the mean absolute body-pose difference (radians).
    velocity_smoothing: EMA factor of the velocity estimate (0 = last step only).
    look_weight: weight of the torso colour distance (0 = motion only; see the module docstring).
    """

    max_age: int = 8
    gate: float = 1.2
    scale_weight: float = 0.5
    pose_weight: float = 0.3
    velocity_smoothing: float = 0.5
    look_weight: float = 1.0


def torso_looks(frame: np.ndarray, centers: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """[N, LOOK_BINS] colour histograms (hue x saturation x value, sum 1) of each person's torso: the patch from
    0.05 to 0.45 m above the body centre, 0.24 m wide. NaN rows for torsos under ``LOOK_MIN_PX`` on a side (a
    distant walker's few pixels say nothing steady)."""
    h, w = frame.shape[:2]
    out = np.full((len(centers), LOOK_BINS), np.nan, np.float32)
    for i, ((cx, cy), s) in enumerate(zip(centers, sizes, strict=True)):
        x0, x1 = int(max(cx - 0.12 * s, 0)), int(min(cx + 0.12 * s, w))
        y0, y1 = int(max(cy - 0.45 * s, 0)), int(min(cy - 0.05 * s, h))
        if x1 - x0 < LOOK_MIN_PX or y1 - y0 < LOOK_MIN_PX:
            continue
        hsv = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, list(_LOOK_SHAPE), [0, 180, 0, 256, 0, 256]).reshape(-1)
        out[i] = hist / max(float(hist.sum()), 1.0)
    return out


def look_distance(tracks: np.ndarray, people: np.ndarray) -> np.ndarray:
    """[T, N] Hellinger distance (0 same colours, 1 none shared) between histograms; 0 where either is NaN."""
    bc = np.sqrt(np.clip(tracks[:, None, :] * people[None, :, :], 0.0, None)).sum(axis=2)
    d = np.sqrt(np.clip(1.0 - bc, 0.0, 1.0))
    return np.where(np.isnan(d), 0.0, d)


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
    look: np.ndarray | None = None  # normalised colour histogram of the torso (EMA)

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

    def _new_id(self) -> int:
        """The next id whose colour (the palette is indexed by id, see :mod:`app.render.colors`) no live track
        has, where one is free: ids count up with gaps, and two people in view are never drawn alike while fewer
        than ``len(PALETTE_BGR)`` are tracked (a plain count gave ids 3 and 13 one colour side by side)."""
        n = len(PALETTE_BGR)
        taken = {t.id % n for t in self.tracks}
        new = self._next_id
        if len(taken) < n:
            while new % n in taken:
                new += 1
        self._next_id = new + 1
        return new

    def assign(self, people: People, box: Letterbox, frame: np.ndarray | None = None) -> TrackUpdate:
        """IDs for one frame's people, from their projected centres and sizes, scales and poses (the one path
        the app, the benchmarks and the tests take)."""
        centers, sizes = person_boxes(people.cam, box)
        looks = torso_looks(frame, centers, sizes) if frame is not None and self.cfg.look_weight > 0 else None
        return self.update(centers, sizes, people.cam[:, 0], people.body_pose, looks)

    def update(self, centers: np.ndarray, sizes: np.ndarray, scales: np.ndarray, poses: np.ndarray,
               looks: np.ndarray | None = None) -> TrackUpdate:
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
        if looks is not None and cost.size:
            seen = np.stack([t.look if t.look is not None else np.full(LOOK_BINS, np.nan, np.float32)
                             for t in self.tracks])
            cost = np.where(cost < _INFEASIBLE, cost + self.cfg.look_weight * look_distance(seen, looks), cost)
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
                if looks is not None and not np.isnan(looks[c]).any():
                    t.look = looks[c] if t.look is None else 0.8 * t.look + 0.2 * looks[c]
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
            t = Track(self._new_id(), centers[c].astype(np.float64), float(sizes[c]), float(scales[c]),
                      poses[c].copy(), look=None if looks is None or np.isnan(looks[c]).any() else looks[c])
            self.tracks.append(t)
            ids[c] = t.id
        return TrackUpdate(ids, ended)
