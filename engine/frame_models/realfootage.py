"""The real-footage default: detect people, track their landmark ROIs, fit the body model by inverse kinematics.

Why this shape: a network trained only on synthetic renders does not transfer to real video, and no real-trained
mesh regressor ships in a registry package; real-trained detectors and landmark networks do. So:

1. **Detect** (NanoDet, COCO person class) every ``detect_every`` frames, or every frame while nobody is tracked.
   Detections matched one-to-one to tracked people are not new; the detector only has to find people who are.
   It also keeps the tracks honest: an established track that loses its person triggers a detector pass on the
   same frame, a track the detector stops confirming is dropped, and one that only loosely covers its detection is
   cropped again from the detector's box.
2. **Landmarks** (BlazePose) for every tracked person in one batched call, on an upright crop whose framing comes
   from the previous frame's auxiliary alignment points (mid-hip and scale point), as the network was trained; a
   new person's first crop comes from its detector box. People whose pose flag drops below ``track_threshold`` are
   let go; two tracks that converged on one person are merged.
3. **Fit**: the world landmarks (metres, camera axes) drive an IK fit of the body model (root and limb swings,
   observable twists, shape from bone lengths on SMPL); the weak-perspective camera comes from a least-squares fit
   of the fitted joints onto the image landmarks. The result is the same :class:`~engine.types.People` the
   bottom-up network produces, so tracking, smoothing, rendering and exports are shared.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..bodyfit import CAMERA_PAIRS, BodyFitter, fit_camera
from ..decode import cam_to_translation
from ..realfootage.detector import PersonDetector, iou_matrix
from ..realfootage.landmarks import BlazePoseLandmarks, Landmarks
from ..realfootage.roi import Rois, rois_from_boxes
from ..types import Letterbox, People
from .base import FramePeople, ModelInfo, PeopleModel, PeopleQuery

__all__ = ["RealFootageCfg", "RealFootageModel"]

NOMINAL_INPUT = 512  # the letterbox size People.center_preds are expressed in (no network reads it)
_CAM_JOINTS = np.asarray([j for j, _ in CAMERA_PAIRS])
_CAM_LANDMARKS = np.asarray([k for _, k in CAMERA_PAIRS])
BODY_POINTS = np.arange(11, 29)  # shoulders .. ankles: where two people differ even when their heads touch


@dataclass(frozen=True)
class RealFootageCfg:
    """Tuning of the detect -> track -> fit loop.

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


class RealFootageModel(PeopleModel):
    """Detector + per-person landmarks + IK, behind the frame-in/people-out interface.

    Args:
        detector: the person detector.
        landmarks: the landmark network.
        fitter: IK onto the body model that renders the people.
        info: what runs (for the UI).
        cfg: loop tuning.
    """

    def __init__(self, detector: PersonDetector, landmarks: BlazePoseLandmarks, fitter: BodyFitter, info: ModelInfo,
                 cfg: RealFootageCfg | None = None) -> None:
        self.detector = detector
        self.landmarks = landmarks
        self.fitter = fitter
        self.info = info
        self.cfg = cfg or RealFootageCfg()
        self.reset()

    def reset(self) -> None:
        self._rois = Rois.concat([])
        self._misses = np.zeros(0, np.int64)  # detector passes in a row that did not confirm each track
        self._ages = np.zeros(0, np.int64)  # frames each track has lived
        self._since_detect = 1 << 30  # frames since the detector last ran

    def __call__(self, frame_bgr: np.ndarray, query: PeopleQuery) -> FramePeople:
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
        scheduled = self._since_detect >= cfg.detect_every and len(tracked) < query.max_people  # room for newcomers
        if len(tracked) == 0 or scheduled or lost:
            t_det = time.perf_counter()
            self._since_detect = 0
            dets = self.detector(frame_bgr, query.threshold, query.max_people)
            detect_ms = (time.perf_counter() - t_det) * 1e3
            seeds = dets.boxes
            if len(tracked):
                ious = iou_matrix(dets.boxes, tracked.boxes())
                pairs = _match(ious, cfg.new_iou)
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
        keep = self._merge(tracked)[: query.max_people]
        keep = keep[(tracked.visibility[keep] >= 0.5).sum(axis=1) >= cfg.min_visible]
        tracked = tracked.select(keep)
        self._rois, self._misses, self._ages = tracked.next_rois, misses[keep], ages[keep]
        self._since_detect += 1
        t2 = time.perf_counter()
        h, w = frame_bgr.shape[:2]
        box = Letterbox.for_frame(h, w, NOMINAL_INPUT)
        people = self._people(tracked, box)
        t3 = time.perf_counter()
        landmark_ms = (t2 - t0) * 1e3 - detect_ms
        return FramePeople(people, box, {"detect": detect_ms, "landmarks": landmark_ms, "fit": (t3 - t2) * 1e3})

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

    def _people(self, lm: Landmarks, box: Letterbox) -> People:
        n = len(lm)
        if n == 0:
            return People.empty()
        fit = self.fitter.fit(lm.world, lm.visibility, body_joints=False)  # the render thread poses the body
        # camera: the fitted joints that are landmarks themselves, onto where the network saw them
        norm = box.original_to_norm(lm.image[:, _CAM_LANDMARKS, :2])
        cam = fit_camera(fit.joints[:, _CAM_JOINTS], norm, lm.visibility[:, _CAM_LANDMARKS]).astype(np.float32)
        ok = np.isfinite(cam).all(axis=1) & (cam[:, 0] > 1e-4)  # fewer than two usable points: not placeable
        cam[~ok] = (1.0, 0.0, 0.0)
        mid_hip = box.original_to_norm(lm.image[:, 23:25, :2].mean(axis=1))
        centers = ((mid_hip + 1.0) * (box.padded_side / 2.0) * box.scale).astype(np.float32)
        people = People(center_preds=centers, center_confs=lm.flag.astype(np.float32), cam=cam,
                        global_orient=fit.global_orient.astype(np.float32),
                        body_pose=fit.body_pose.astype(np.float32), betas=fit.betas.astype(np.float32),
                        cam_trans=cam_to_translation(cam), track_ids=np.full(n, -1, np.int64))
        return people if ok.all() else people.select(ok)


def _match(ious: np.ndarray, min_iou: float) -> np.ndarray:
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
