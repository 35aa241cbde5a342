"""The real-footage default: track people's landmarks, fit the body model to them by inverse kinematics.

Why this shape: a network trained only on synthetic renders does not transfer to real video, and no real-trained
mesh regressor ships in a registry package; real-trained detectors and landmark networks do. So the landmark
tracker (:mod:`engine.realfootage.tracker`: a person detector plus per-person BlazePose crops followed from frame
to frame) finds everyone, and then:

**Fit**: the world landmarks (metres, camera axes) drive an IK fit of the body model (root and limb swings,
observable twists, shape from bone lengths on SMPL); the weak-perspective camera comes from a least-squares fit
of the fitted joints (and, weighted up as fewer limbs are seen, the fitted face) onto the image landmarks. A person
whose landmarks the tracker carried forward (not measured on this frame) keeps the pose fitted when they were
measured, so only the camera is fitted again.
The result is the same :class:`~engine.types.People` the bottom-up network produces, so tracking, smoothing,
rendering and exports are shared.
"""

from __future__ import annotations

import time

import numpy as np

from ..bodyfit import CAMERA_PAIRS, FACE_LANDMARKS, BodyFitter, fit_camera
from ..decode import cam_to_translation
from ..realfootage.landmarks import Landmarks
from ..realfootage.tracker import LandmarkTracker
from ..types import Letterbox, People
from .base import FramePeople, ModelInfo, PeopleModel, PeopleQuery

__all__ = ["RealFootageModel"]

NOMINAL_INPUT = 512  # the letterbox size People.center_preds are expressed in (no network reads it)
_CAM_JOINTS = np.asarray([j for j, _ in CAMERA_PAIRS])
_CAM_LANDMARKS = np.asarray([k for _, k in CAMERA_PAIRS] + list(FACE_LANDMARKS))
# A limb joint weighs in the camera fit by the least visible landmark of its chain from the shoulder or hip (a wrist:
# shoulder, elbow and wrist), not by its own: the posed body's wrist is where the fit put the arm, and an arm whose
# elbow is unseen keeps its neutral pose, hanging at the side, wherever the network guessed the wrist. A close-up
# framed from the top of the head to the collar bones (a webcam user leaning in) had both hands guessed under the
# chin (visibility 0.6 and 0.9, elbows 0): matched to the hanging hands, the body shrank to a small figure under the
# face (640x480 close-up clips, four takes: 0.78 / 0.77 -> 0.99 / 0.98; every other set within 0.003).
_LIMB_CHAINS = {11: (11, 11, 11), 12: (12, 12, 12), 13: (11, 13, 13), 14: (12, 14, 14), 15: (11, 13, 15),
                16: (12, 14, 16), 25: (23, 25, 25), 26: (24, 26, 26), 27: (23, 25, 27), 28: (24, 26, 28)}
_CAM_CHAINS = np.asarray([_LIMB_CHAINS[k] for _, k in CAMERA_PAIRS])
# The face points' weight in the camera fit (a limb joint weighs its chain's visibility): low for a whole body,
# whose 10 limb joints place it (a distant face is a few pixels, and the body's face proportions are one adult's: at
# weight 0.3 a walker on vtest.avi fell out of the IoU 0.5 match), and up to 1 as fewer limb joints are seen (a
# person seen from the chest up has the two shoulders, which alone put the body's head at the chin).
_FACE_WEIGHT = (0.15, 1.0)  # (whole body, close-up)
_FACE_WEIGHT_LIMBS = (6.0, 2.0)  # summed limb joint weights at which each applies (linear in between)
# ... and, whatever the limbs, up to _FACE_WEIGHT_BIG as the face grows from _FACE_PX[0] to _FACE_PX[1] pixels between
# the ears. With the body's head at real proportions (engine.body.anny.HEAD_SCALE) a face big enough to measure is
# the steadiest cue of where the body belongs (its few centimetres of spread move the scale little, its place the
# centroid much), while the limb joints of people in a close group are often guesses (hips and knees BlazePose puts
# above a table top, an arm that is the neighbour's). Cold, recall / precision: six group photos at 1 and 1.3x
# 0.86 / 0.93 -> 0.89 / 0.95, three sport/street photos at 1-1.7x 0.53 / 0.67 -> 0.60 / 0.75;
# as webcam-like clips, tracked: 0.73 / 0.79 -> 0.74 / 0.81 and 0.39 / 0.49 -> 0.43 / 0.54, close-ups 0.99 -> 1.00;
# the hand-boxed street frames and photos lost one borderline match (Messi at 1.7x: IoU 0.525 -> 0.488), and their
# distant faces (a few pixels) keep the limb rule. Weighting every face up instead (0.15 -> 1, 1 -> 2) cost the
# hand-boxed set 2 people of 66.
_FACE_PX = (30.0, 80.0)
_FACE_WEIGHT_BIG = 2.0


class RealFootageModel(PeopleModel):
    """Landmark tracker + IK, behind the frame-in/people-out interface.

    Args:
        tracker: finds and follows people's landmarks.
        fitter: IK onto the body model that renders the people.
        info: what runs (for the UI).
    """

    def __init__(self, tracker: LandmarkTracker, fitter: BodyFitter, info: ModelInfo) -> None:
        self.tracker = tracker
        self.fitter = fitter
        self.info = info
        self._poses: dict[int, tuple[np.ndarray, ...]] = {}  # tracker id -> (orient, pose, betas, joints, face)

    def reset(self) -> None:
        self.tracker.reset()
        self._poses = {}

    def __call__(self, frame_bgr: np.ndarray, query: PeopleQuery) -> FramePeople:
        found = self.tracker(frame_bgr, query.threshold, query.max_people)
        t2 = time.perf_counter()
        h, w = frame_bgr.shape[:2]
        box = Letterbox.for_frame(h, w, NOMINAL_INPUT)
        people = self._people(found.landmarks, found.ids, found.refreshed, box)
        fit_ms = (time.perf_counter() - t2) * 1e3
        timings = {"detect": found.detect_ms, "landmarks": found.landmarks_ms, "fit": fit_ms}
        if found.detect_bg_ms:
            timings["detect_bg"] = found.detect_bg_ms  # on the detector's own thread, in parallel
        return FramePeople(people, box, timings)

    def _fit(self, lm: Landmarks, ids: np.ndarray, refreshed: np.ndarray) -> tuple[np.ndarray, ...]:
        """(global_orient, body_pose, betas, joints, face points) per person: fitted for people measured on this
        frame (or not fitted before), the stored fit for people carried forward (same world landmarks, so the same
        fit)."""
        todo = np.flatnonzero(refreshed | ~np.isin(ids, list(self._poses)))
        fits: dict[int, tuple[np.ndarray, ...]] = {}
        if len(todo):
            fit = self.fitter.fit(lm.world[todo], lm.visibility[todo], body_joints=False)  # the render thread poses
            for row, i in enumerate(todo):
                fits[int(ids[i])] = (fit.global_orient[row], fit.body_pose[row], fit.betas[row], fit.joints[row],
                                     fit.face[row])
        rows = [fits.get(int(i)) or self._poses[int(i)] for i in ids]
        self._poses = {int(i): r for i, r in zip(ids, rows, strict=True)}
        return tuple(np.stack([r[k] for r in rows]).astype(np.float32) for k in range(5))

    def _people(self, lm: Landmarks, ids: np.ndarray, refreshed: np.ndarray, box: Letterbox) -> People:
        n = len(lm)
        if n == 0:
            return People.empty()
        global_orient, body_pose, betas, joints, face = self._fit(lm, ids, refreshed)
        # camera: the fitted joints that are landmarks themselves and the posed face points, onto where the network
        # saw them
        norm = box.original_to_norm(lm.image[:, _CAM_LANDMARKS, :2])
        points = np.concatenate([joints[:, _CAM_JOINTS], face], axis=1)
        weights = np.concatenate([lm.visibility[:, _CAM_CHAINS].min(axis=2),  # limb joints: see _CAM_CHAINS
                                  lm.visibility[:, list(FACE_LANDMARKS)]], axis=1)
        limbs = weights[:, : len(CAMERA_PAIRS)].sum(axis=1)
        (whole_limbs, close_limbs), (whole, close) = _FACE_WEIGHT_LIMBS, _FACE_WEIGHT
        face_px = np.linalg.norm(lm.image[:, 7, :2] - lm.image[:, 8, :2], axis=1)  # ear to ear
        face_weight = np.maximum(np.interp(limbs, (close_limbs, whole_limbs), (close, whole)),
                                 np.interp(face_px, _FACE_PX, (0.0, _FACE_WEIGHT_BIG)))
        weights[:, len(CAMERA_PAIRS):] *= face_weight[:, None]
        cam = fit_camera(points, norm, weights).astype(np.float32)
        ok = np.isfinite(cam).all(axis=1) & (cam[:, 0] > 1e-4)  # fewer than two usable points: not placeable
        cam[~ok] = (1.0, 0.0, 0.0)
        mid_hip = box.original_to_norm(lm.image[:, 23:25, :2].mean(axis=1))
        centers = ((mid_hip + 1.0) * (box.padded_side / 2.0) * box.scale).astype(np.float32)
        people = People(center_preds=centers, center_confs=lm.flag.astype(np.float32), cam=cam,
                        global_orient=global_orient, body_pose=body_pose, betas=betas,
                        cam_trans=cam_to_translation(cam), track_ids=np.full(n, -1, np.int64))
        return people if ok.all() else people.select(ok)

