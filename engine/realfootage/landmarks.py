"""BlazePose landmarks for every tracked person in one batched call.

The network reads an upright 256x256 crop (RGB in [0, 1], cut from the BGR frame) and returns 39 points (33 body
landmarks + 2 auxiliary alignment points + 4 unused) as crop pixels with a relative depth, visibility and presence
logits, 39 "world" points in metres (hip-centred, in the crop's axes), and a pose-presence flag. Everything is
mapped back here to frame pixels and to camera axes (x right, y down, z away), so the caller never sees crop
coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.graph import OnnxGraph
from .roi import Rois, crop_rois, rois_from_alignment

__all__ = ["NUM_LANDMARKS", "BlazePoseLandmarks", "Landmarks"]

NUM_LANDMARKS = 33
CROP = 256
ROI_SCALE = 1.5  # margin the network was trained with when the ROI comes from its own alignment points
OUTSIDE_FRACTION = 0.1  # a landmark further outside the frame than this x its crop's side is not visible


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


@dataclass
class Landmarks:
    """Landmarks of N people (float32).

    Attributes:
        image: [N, 33, 3] frame pixels (x, y) and relative depth z (pixels, hip-centred, smaller = nearer).
        visibility: [N, 33] probability that the point is visible (not occluded; 0 well outside the frame).
        presence: [N, 33] probability that the point is inside the frame.
        world: [N, 33, 3] metres, hip-centred, camera axes (x right, y down, z away).
        flag: [N] probability that the crop holds a person.
        next_rois: ROIs for the next frame, from the auxiliary alignment points.
    """

    image: np.ndarray
    visibility: np.ndarray
    presence: np.ndarray
    world: np.ndarray
    flag: np.ndarray
    next_rois: Rois

    def __len__(self) -> int:
        return len(self.flag)

    def select(self, idx) -> Landmarks:
        return Landmarks(self.image[idx], self.visibility[idx], self.presence[idx], self.world[idx], self.flag[idx],
                         self.next_rois.select(idx))

    @classmethod
    def empty(cls) -> Landmarks:
        """No people."""
        z = np.zeros((0, NUM_LANDMARKS), np.float32)
        pts = np.zeros((0, NUM_LANDMARKS, 3), np.float32)
        return cls(pts, z, z.copy(), pts.copy(), np.zeros(0, np.float32), Rois.concat([]))

    @classmethod
    def concat(cls, parts: list[Landmarks]) -> Landmarks:
        """People of several calls in one set (tracked people, then new ones)."""
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                     ("image", "visibility", "presence", "world", "flag")), Rois.concat([p.next_rois for p in parts]))

    def boxes(self, min_visibility: float = 0.5) -> np.ndarray:
        """[N, 4] tight (x1, y1, x2, y2) boxes around each person's visible landmarks (all of them if none is)."""
        ok = self.visibility >= min_visibility
        ok[ok.sum(axis=1) < 2] = True
        xy, use = self.image[:, :, :2], ok[:, :, None]
        return np.concatenate([np.where(use, xy, np.inf).min(axis=1), np.where(use, xy, -np.inf).max(axis=1)],
                              axis=1).astype(np.float32)


class BlazePoseLandmarks:
    """The landmark network (BlazePose full or lite) on a batch of ROIs.

    Args:
        graph: the converted network with outputs ``landmarks`` [B, 195], ``world`` [B, 117], ``poseflag`` [B, 1]
            and one NHWC float input [B, 256, 256, 3].
    """

    OUTPUTS = ("landmarks", "world", "poseflag")

    def __init__(self, graph: OnnxGraph) -> None:
        self.graph = graph
        self.input_name = graph.input_names[0]

    def __call__(self, frame_bgr: np.ndarray, rois: Rois, keep: np.ndarray | None = None) -> Landmarks:
        """Landmarks of the person in each ROI; ``keep`` ([N, 4] frame boxes) blanks each crop outside its box."""
        n = len(rois)
        if n == 0:
            return Landmarks.empty()
        crops, maps = crop_rois(frame_bgr, rois, CROP, keep)
        out = self.graph.run({self.input_name: crops})
        raw = out["landmarks"].reshape(n, -1, 5)
        world = out["world"].reshape(n, -1, 3)
        flag = out["poseflag"].reshape(n).astype(np.float32)
        # crop pixels -> frame pixels (the affine map); z shares x's scale
        xy = np.einsum("nij,nkj->nki", maps[:, :, :2], raw[:, :, :2]) + maps[:, None, :, 2]
        z = raw[:, :, 2:3] * (rois.sides / CROP)[:, None, None]
        image = np.concatenate([xy, z], axis=2).astype(np.float32)
        # world points are in the upright crop's axes: rotate x, y by the ROI rotation (same as the crop map)
        rot = maps[:, :, :2] / (rois.sides / CROP)[:, None, None]
        wxy = np.einsum("nij,nkj->nki", rot, world[:, :, :2])
        world_cam = np.concatenate([wxy, world[:, :, 2:3]], axis=2).astype(np.float32)
        nxt = rois_from_alignment(image[:, 33, :2], image[:, 34, :2], ROI_SCALE)
        # A point well outside the picture is not seen, whatever the network says: for a body the frame cuts it
        # guesses the legs (often with visibility near 1), and a fit to that guess draws bent legs nobody can see.
        # Just outside (a shoulder past the edge of a close-up) its guess is good, and the camera fit needs it.
        h, w = frame_bgr.shape[:2]
        pts = xy[:, :NUM_LANDMARKS]
        margin = (OUTSIDE_FRACTION * rois.sides)[:, None, None]
        inside = ((pts >= -margin) & (pts <= np.array([w, h]) + margin)).all(axis=-1)
        visibility = _sigmoid(raw[:, :NUM_LANDMARKS, 3]) * inside
        return Landmarks(image[:, :NUM_LANDMARKS], visibility.astype(np.float32),
                         _sigmoid(raw[:, :NUM_LANDMARKS, 4]).astype(np.float32), world_cam[:, :NUM_LANDMARKS], flag,
                         nxt)
