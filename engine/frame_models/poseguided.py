"""The 2D-pose-guided mesh regressors (3DCrowdNet, JOTR) behind the frame-in/people-out interface.

Both systems are top-down: for each person they read an RGB crop plus that person's 2D pose and regress SMPL. Their
papers feed poses from an off-the-shelf 2D detector; here the poses come from the landmark tracker the real-footage
default uses (NanoDet finds people, BlazePose follows them), converted to COCO-17, so every person the tracker
follows is batched through the network in one call per frame.

Placement: the networks' own camera (``cam_param``) places the *un-centred* official SMPL mesh in a virtual crop
camera; where that mesh's origin sits depends on the licensed SMPL template, which the default (Anny) body does not
have. So the app's weak-perspective camera is fitted instead: the network's pose is chained on the rendering body's
rest skeleton and its joints are fitted (least squares, visibility-weighted) onto the 2D landmarks the network was
guided by. Whichever body renders then lands on the person; the network's pose and shape are used unchanged.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from ..bodyfit import CAMERA_PAIRS, fit_camera, forward_kinematics
from ..decode import cam_to_translation
from ..geometry import axis_angle_to_rotmat_np
from ..poseguided import coco17_from_landmarks, prepare
from ..realfootage.tracker import LandmarkTracker
from ..types import Letterbox, People
from .base import FramePeople, ModelInfo, PeopleModel, PeopleQuery

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "PoseGuidedModel", "Runner"]

NOMINAL_INPUT = 512  # the letterbox size People.center_preds are expressed in (no network reads it)
INPUT_NAMES = ("img", "joints", "joints_mask")
OUTPUT_NAMES = ("smpl_pose", "smpl_shape", "cam_param", "joint_img")
_CAM_JOINTS = np.asarray([j for j, _ in CAMERA_PAIRS])
_CAM_LANDMARKS = np.asarray([k for _, k in CAMERA_PAIRS])


class Runner(Protocol):
    """A network by tensor name (ONNX Runtime session or torch module): feeds in, named outputs out."""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class PoseGuidedModel(PeopleModel):
    """Landmark tracker -> per-person crops and heatmap-frame joints -> 3DCrowdNet/JOTR -> People.

    Args:
        tracker: finds and follows people (their 2D poses guide the network).
        runner: the network (inputs ``img``, ``joints``, ``joints_mask``; outputs ``smpl_pose``, ``smpl_shape``,
            ``cam_param``, ``joint_img``).
        system: "crowdnet" or "jotr" (their preprocessing differs: box scale, pose threshold, demo filters).
        rest_joints: [24, 3] rest skeleton of the body model that renders the people (for the camera fit).
        info: what runs (for the UI).
    """

    def __init__(self, tracker: LandmarkTracker, runner: Runner, system: str, rest_joints: np.ndarray,
                 info: ModelInfo) -> None:
        self.tracker = tracker
        self.runner = runner
        self.system = system
        self.rest_joints = np.asarray(rest_joints, dtype=np.float64)[:24]
        self.info = info

    def reset(self) -> None:
        self.tracker.reset()

    def __call__(self, frame_bgr: np.ndarray, query: PeopleQuery) -> FramePeople:
        found = self.tracker(frame_bgr, query.threshold, query.max_people)
        lm = found.landmarks
        h, w = frame_bgr.shape[:2]
        box = Letterbox.for_frame(h, w, NOMINAL_INPUT)
        timings = {"detect": found.detect_ms, "landmarks": found.landmarks_ms, "preprocess": 0.0, "inference": 0.0}
        if found.detect_bg_ms:
            timings["detect_bg"] = found.detect_bg_ms  # on the detector's own thread, in parallel
        if len(lm) == 0:
            return FramePeople(People.empty(), box, timings)
        t0 = time.perf_counter()
        coco_xy, coco_score = coco17_from_landmarks(lm)
        crop = prepare(frame_bgr, coco_xy, coco_score, self.system, fallback_boxes=lm.boxes())
        t1 = time.perf_counter()
        out = self.runner.run({"img": crop.img, "joints": crop.joints, "joints_mask": crop.joints_mask})
        t2 = time.perf_counter()
        people = self._people(out, lm.image[:, :, :2], lm.visibility, lm.flag, box)
        keep = np.flatnonzero(crop.keep & np.isfinite(people.cam).all(axis=1) & (people.cam[:, 0] > 1e-4))
        timings.update(preprocess=(t1 - t0) * 1e3, inference=(t2 - t1) * 1e3,
                       decode=(time.perf_counter() - t2) * 1e3)
        return FramePeople(people if len(keep) == len(people) else people.select(keep), box, timings)

    def _people(self, out: dict[str, np.ndarray], image_xy: np.ndarray, visibility: np.ndarray, flag: np.ndarray,
                box: Letterbox) -> People:
        pose = np.asarray(out["smpl_pose"], dtype=np.float64).reshape(-1, 24, 3)
        n = len(pose)
        joints = forward_kinematics(axis_angle_to_rotmat_np(pose.reshape(-1, 3)).reshape(n, 24, 3, 3),
                                    self.rest_joints)
        joints -= 0.5 * (joints[:, 1:2] + joints[:, 2:3])  # root-aligned on the mid-hip, as the body renders
        norm = box.original_to_norm(image_xy[:, _CAM_LANDMARKS])
        cam = fit_camera(joints[:, _CAM_JOINTS], norm, visibility[:, _CAM_LANDMARKS]).astype(np.float32)
        mid_hip = box.original_to_norm(image_xy[:, 23:25].mean(axis=1))
        centers = ((mid_hip + 1.0) * (box.padded_side / 2.0) * box.scale).astype(np.float32)
        pose32 = pose.reshape(n, 72).astype(np.float32)
        return People(center_preds=centers, center_confs=np.asarray(flag, np.float32), cam=cam,
                      global_orient=np.ascontiguousarray(pose32[:, :3]),
                      body_pose=np.ascontiguousarray(pose32[:, 3:]),
                      betas=np.asarray(out["smpl_shape"], np.float32).reshape(n, -1)[:, :10],
                      cam_trans=cam_to_translation(cam), track_ids=np.full(n, -1, np.int64))
