"""People's 2D landmarks through a clip: detect new people, follow everyone with per-person landmark crops.

This is the front end every 2D-pose-driven model shares: the real-footage default fits the body model to these
landmarks, and the 2D-pose-guided regressors (3DCrowdNet, JOTR) take them as their pose input.

1. **Detect** (NanoDet, COCO person class) every ``detect_every`` frames, or every frame while nobody is tracked.
   Detections matched one-to-one to tracked people are not new; the detector only has to find people who are.
   It also keeps the tracks honest: an established track that loses its person triggers a detector pass on the
   same frame, a track the detector stops confirming is dropped, and one that only loosely covers its detection is
   cropped again from the detector's box.
2. **Landmarks** (BlazePose) for every tracked person in one batched call, on an upright crop whose framing comes
   from the previous frame's auxiliary alignment points (mid-hip and scale point), as the network was trained; a
   new person's first crop comes from its detector box. People whose pose flag drops below ``track_threshold`` are
   let go; two tracks that converged on one person are merged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .detector import PersonDetector, iou_matrix
from .landmarks import BlazePoseLandmarks, Landmarks
from .roi import Rois, rois_from_boxes

__all__ = ["LandmarkTracker", "TrackedPoses", "TrackerCfg"]

BODY_POINTS = np.arange(11, 29)  # shoulders .. ankles: where two people differ even when their heads touch


@dataclass(frozen=True)
class TrackerCfg:
    """Tuning of the detect -> track loop.

    Attributes:
        detect_every: frames between detector passes while people are tracked (1 = every frame); a pass made
            early (a track was lost) restarts the count.
        flag_threshold: landmark pose-flag probability a new person needs.
        track_threshold: pose-flag probability below which a tracked person is let go (the detector then looks
            again on the same frame).
        box_scale: ROI side as a multiple of the detector box's longer side (first crop of a new person).
        new_iou: a detection matched one-to-one to a tracked person's box with at least this overlap is that
            person, not a new one.
        reseed_iou: a tracked person matched to a detection with less overlap than this is cropped again from the
            detection (the crop had slid off the person).
        merge_distance: two tracks whose body landmarks are closer than this (mean, in person heights) are one
            person.
        min_visible: fewest landmarks with visibility >= 0.5 for a person to be reported.
        min_age: frames a track must have lived for its loss to trigger a detector pass.
        max_misses: detector passes in a row that may miss a tracked person before the track is dropped (the
            landmark network alone keeps a drifted crop "alive" on background that looks like a body).
    """

    detect_every: int = 2
    flag_threshold: float = 0.5
    track_threshold: float = 0.5
    box_scale: float = 1.25
    new_iou: float = 0.3
    reseed_iou: float = 0.5
    merge_distance: float = 0.12
    min_visible: int = 6
    max_misses: int = 1
    min_age: int = 3


@dataclass
class TrackedPoses:
    """The people of one frame, best first, with what finding them cost.

    Attributes:
        landmarks: the people's landmarks (frame pixels, camera-axis world points, visibility, pose flag).
        rgb: the frame as RGB (the landmark network's colour order), for models that crop it again.
        detect_ms: detector time on this frame (0 when it did not run).
        landmarks_ms: everything else (colour conversion, landmark calls, matching).
    """

    landmarks: Landmarks
    rgb: np.ndarray
    detect_ms: float
    landmarks_ms: float


class LandmarkTracker:
    """Detector + batched per-person landmarks with ROI tracking from frame to frame.

    Args:
        detector: the person detector.
        landmarks: the landmark network.
        cfg: loop tuning.
    """

    def __init__(self, detector: PersonDetector, landmarks: BlazePoseLandmarks, cfg: TrackerCfg | None = None) -> None:
        self.detector = detector
        self.landmarks = landmarks
        self.cfg = cfg or TrackerCfg()
        self.reset()

    def reset(self) -> None:
        """Forget everyone (a new clip, a seek, unrelated images)."""
        self._rois = Rois.concat([])
        self._misses = np.zeros(0, np.int64)  # detector passes in a row that did not confirm each track
        self._ages = np.zeros(0, np.int64)  # frames each track has lived
        self._since_detect = 1 << 30  # frames since the detector last ran

    def __call__(self, frame_bgr: np.ndarray, threshold: float, max_people: int) -> TrackedPoses:
        """Track everyone into this frame; ``threshold`` is the detector's score threshold."""
        cfg = self.cfg
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        tracked = self.landmarks(rgb, self._rois)
        alive = tracked.flag >= cfg.track_threshold
        # only an established track's loss sends the detector looking (a seed that dies at once would loop)
        lost = bool((~alive & (self._ages >= cfg.min_age)).any())
        tracked, misses, ages = tracked.select(alive), self._misses[alive], self._ages[alive] + 1
        detect_ms = 0.0
        # the detector runs on schedule, when nobody is tracked, and at once when a tracked person was lost (as
        # BlazePose's own pipeline does): the crop may have slipped off someone who is still there
        scheduled = self._since_detect >= cfg.detect_every and len(tracked) < max_people  # room for newcomers
        if len(tracked) == 0 or scheduled or lost:
            t_det = time.perf_counter()
            self._since_detect = 0
            dets = self.detector(frame_bgr, threshold, max_people)
            detect_ms = (time.perf_counter() - t_det) * 1e3
            seeds = dets.boxes
            if len(tracked):
                ious = iou_matrix(dets.boxes, tracked.boxes())
                pairs = match_boxes(ious, cfg.new_iou)
                confirmed = np.zeros(len(tracked), bool)
                confirmed[pairs[:, 1]] = True
                # a track that only loosely covers its detection has slid off its person (often onto a
                # neighbour in a group): start it again from the detector's box
                loose = pairs[ious[pairs[:, 0], pairs[:, 1]] < cfg.reseed_iou]
                free = np.setdiff1d(np.arange(len(dets)), pairs[:, 0])
                seeds = dets.boxes[np.concatenate([free, loose[:, 0]])]
                misses = np.where(confirmed, 0, misses + 1)
                # a track the detector keeps not seeing has drifted onto background
                kept = (misses <= cfg.max_misses) & ~np.isin(np.arange(len(tracked)), loose[:, 1])
                tracked, misses, ages = tracked.select(kept), misses[kept], ages[kept]
            if len(seeds):
                fresh = self.landmarks(rgb, rois_from_boxes(seeds, cfg.box_scale))
                fresh = fresh.select(fresh.flag >= cfg.flag_threshold)
                tracked = Landmarks.concat([tracked, fresh])
                misses = np.concatenate([misses, np.zeros(len(fresh), np.int64)])
                ages = np.concatenate([ages, np.zeros(len(fresh), np.int64)])
        keep = self._merge(tracked)[:max_people]
        keep = keep[(tracked.visibility[keep] >= 0.5).sum(axis=1) >= cfg.min_visible]
        tracked = tracked.select(keep)
        self._rois, self._misses, self._ages = tracked.next_rois, misses[keep], ages[keep]
        self._since_detect += 1
        landmarks_ms = (time.perf_counter() - t0) * 1e3 - detect_ms
        return TrackedPoses(tracked, rgb, detect_ms, landmarks_ms)

    def _merge(self, lm: Landmarks) -> np.ndarray:
        """Indices of the tracks to keep, best first: a track that converged on a person already kept goes (the
        one with the higher flag wins).

        Two tracks are one person when their torso and limb landmarks nearly coincide (mean distance under
        ``merge_distance`` x the person's size); box overlap alone would merge people walking side by side.
        """
        order = np.argsort(-lm.flag, kind="stable")
        if len(lm) < 2:
            return order
        body = lm.image[:, BODY_POINTS, :2]
        boxes = lm.boxes()
        size = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        dist = np.linalg.norm(body[:, None] - body[None], axis=3).mean(axis=2) / np.minimum(size[:, None], size[None])
        keep: list[int] = []
        for i in order:
            if all(dist[i, j] > self.cfg.merge_distance for j in keep):
                keep.append(int(i))
        return np.asarray(keep, np.int64)


def match_boxes(ious: np.ndarray, min_iou: float) -> np.ndarray:
    """Greedy one-to-one matching of detections to tracked people by IoU ([M, K]), best pairs first.

    Returns:
        [P, 2] int (detection, tracked person) pairs with IoU >= ``min_iou``.
    """
    pairs: list[tuple[int, int]] = []
    free = np.ones(ious.shape[0], bool)
    taken = np.zeros(ious.shape[1], bool)
    for flat in np.argsort(-ious, axis=None):
        d, t = divmod(int(flat), ious.shape[1])
        if ious[d, t] < min_iou:
            break
        if free[d] and not taken[t]:
            free[d], taken[t] = False, True
            pairs.append((d, t))
    return np.asarray(pairs, np.int64).reshape(-1, 2)
