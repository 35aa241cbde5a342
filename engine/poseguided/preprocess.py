"""Inputs of the 2D-pose-guided models (3DCrowdNet, JOTR) from a frame and each person's COCO-17 pose.

For every person the official pipelines do the same four steps, and the numbers below reproduce them:

1. Box from the pose: the extent of the joints whose score passes the threshold, enlarged 1.2x about its centre
   (``pose_box``).
2. Sanitise and square it (``process_box``): clip the top-left corner to the frame, keep width - 1 / height - 1
   from that clipped corner (clipped to the last pixel), grow the shorter side to the input aspect ratio (1:1),
   enlarge by the system's factor: 1.25 in 3DCrowdNet, 1.1 in JOTR's test loaders.
3. Crop: the affine that sends the box centre to the crop centre and the box sides to the crop sides, no rotation
   or flip; ``cv2.warpAffine`` bilinear with a black constant border into 256x256; RGB / 255, no mean/std.
4. Joints: the same affine, then crop pixels / 4 (256 crop -> 64 heatmap grid), scattered into the 30-joint input
   order with the score kept in the third column; the mask is 1 where the score passes the threshold and the joint
   lies in [0, 64) on both axes.

The two systems differ only in constants and in what counts as a usable person (``SystemSpec``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError
from .joints import add_pelvis_neck, coco19_to_input

__all__ = [
    "CROWDNET_3DPW_TEST",
    "HM_SIZE",
    "INPUT_SIZE",
    "SYSTEMS",
    "PoseCrop",
    "SystemSpec",
    "box_affine",
    "demo_keep",
    "pose_box",
    "prepare",
    "process_box",
]

INPUT_SIZE = 256  # crop side (the networks' input_img_shape is 256 x 256)
HM_SIZE = 64  # heatmap grid side the joints are expressed in (output_hm_shape 64 x 64)
POSE_BOX_MARGIN = 1.2  # pose extent -> box
DEMO_MIN_DET_SCORE = 1.0  # demo: a person whose 19 scores sum below this is skipped
DEMO_DUPLICATE_PX = 20.0  # demo: mean joint distance under which a pose repeats an earlier one


@dataclass(frozen=True)
class SystemSpec:
    """Constants of one official preprocessing path.

    Attributes:
        name: label.
        pose_thr: a joint counts (for the box and the mask) when its score is strictly above this.
        box_scale: enlargement of the squared box.
        strict_box: whether a degenerate box (zero area, or its clipped corner past the far edge) rejects the person
            (3DCrowdNet's demo) or is kept as computed (the test loaders).
        demo_filters: also apply the 3DCrowdNet demo's person filters (score sum, duplicates), see ``demo_keep``.
    """

    name: str
    pose_thr: float
    box_scale: float
    strict_box: bool
    demo_filters: bool


SYSTEMS: dict[str, SystemSpec] = {
    # 3DCrowdNet's demo on COCO-format 2D poses (what a live app is): threshold 0.1, box x1.25.
    "crowdnet": SystemSpec("crowdnet", pose_thr=0.1, box_scale=1.25, strict_box=True, demo_filters=True),
    # JOTR's test loaders (3DPW / 3DPW-Crowd, no demo exists): threshold 0.05, box x1.1.
    "jotr": SystemSpec("jotr", pose_thr=0.05, box_scale=1.1, strict_box=False, demo_filters=False),
}
# 3DCrowdNet's own 3DPW test path, for comparison: threshold 0.05, same x1.25 box, no person filters.
CROWDNET_3DPW_TEST = SystemSpec("crowdnet-3dpw-test", pose_thr=0.05, box_scale=1.25, strict_box=False,
                                demo_filters=False)


@dataclass
class PoseCrop:
    """Network inputs for N people (one row each, in the caller's order).

    Attributes:
        img: [N, 3, 256, 256] float32 RGB in [0, 1].
        joints: [N, 30, 3] float32 (x, y) in the 64x64 heatmap grid of the crop and the detector score; the 11
            joints COCO lacks are all zero.
        joints_mask: [N, 30, 1] float32, 1 where the score passes the threshold and (x, y) lies in [0, 64).
        trans: [N, 2, 3] float32 affine original pixels -> crop pixels.
        trans_inv: [N, 2, 3] float32 affine crop pixels -> original pixels.
        boxes: [N, 4] float32 (x, y, w, h) of the square crop box in original pixels.
        keep: [N] bool, False where the official path would not have run the person (no joint above the threshold,
            a degenerate box, or a demo filter); such rows still hold a crop from a fallback box so that batches
            stay aligned with the caller's people.
        system: name of the ``SystemSpec`` used.
    """

    img: np.ndarray
    joints: np.ndarray
    joints_mask: np.ndarray
    trans: np.ndarray
    trans_inv: np.ndarray
    boxes: np.ndarray
    keep: np.ndarray
    system: str

    def __len__(self) -> int:
        return len(self.keep)


def _spec(system: str | SystemSpec) -> SystemSpec:
    if isinstance(system, SystemSpec):
        return system
    try:
        return SYSTEMS[system]
    except KeyError:
        raise ConfigError(f"unknown pose-guided system {system!r}: use one of {', '.join(SYSTEMS)}") from None


def pose_box(xy: np.ndarray, valid: np.ndarray, margin: float = POSE_BOX_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around each person's valid joints, enlarged ``margin`` x about the centre.

    Args:
        xy: [N, K, 2] pixels. valid: [N, K] bool.

    Returns:
        ``boxes`` [N, 4] float32 (x, y, w, h), NaN where a person has no valid joint, and ``has`` [N] bool.
    """
    xy = np.asarray(xy, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    has = valid.any(axis=1)
    lo = np.where(valid[..., None], xy, np.inf).min(axis=1)
    hi = np.where(valid[..., None], xy, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):  # people without a valid joint: inf - inf, replaced below
        centre, size = (lo + hi) / 2.0, (hi - lo) * margin
    boxes = np.concatenate([centre - size / 2.0, size], axis=1)
    boxes[~has] = np.nan
    return boxes.astype(np.float32), has


def process_box(boxes: np.ndarray, width: int, height: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Sanitise, square and enlarge (x, y, w, h) boxes the way the official ``process_bbox`` does.

    Sanitising clips only the top-left corner and then keeps w - 1 (h - 1) from it, so a box hanging off the left
    or top edge is shifted inside rather than cut; that is what the models saw, so it is reproduced.

    Returns:
        ``boxes`` [N, 4] float32 (x, y, w, h) and ``ok`` [N] bool: False where the strict (demo) path would have
        rejected the box (zero area or the clipped corner past the far edge).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = b.T
    x1, y1 = np.maximum(0.0, x), np.maximum(0.0, y)
    x2 = np.minimum(width - 1.0, x1 + np.maximum(0.0, w - 1.0))
    y2 = np.minimum(height - 1.0, y1 + np.maximum(0.0, h - 1.0))
    with np.errstate(invalid="ignore"):
        ok = (w * h > 0) & (x2 >= x1) & (y2 >= y1)
    # the official code stores the sanitised box as float32 before squaring it; round the same way
    x1, y1, bw, bh = (np.stack([x1, y1, x2 - x1, y2 - y1]).astype(np.float32).astype(np.float64))
    cx, cy = x1 + bw / 2.0, y1 + bh / 2.0
    aspect = INPUT_SIZE / INPUT_SIZE
    sw = np.where(bw < aspect * bh, bh * aspect, bw)
    sh = np.where(bw > aspect * bh, bw / aspect, bh)
    sw, sh = sw * scale, sh * scale
    out = np.stack([cx - sw / 2.0, cy - sh / 2.0, sw, sh], axis=1)
    return out.astype(np.float32), ok


def box_affine(boxes: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Affine maps between (x, y, w, h) boxes and a ``size`` x ``size`` crop (no rotation, no flip).

    The box centre goes to (size/2, size/2) and its half-sides to half the crop: crop = s * (p - centre) + size/2
    with s = size / w (size / h for y); the inverse is its exact inverse.

    Returns:
        ``trans`` [N, 2, 3] (original -> crop) and ``trans_inv`` [N, 2, 3] (crop -> original), float32.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = b[:, 0] + 0.5 * b[:, 2], b[:, 1] + 0.5 * b[:, 3]
    sx, sy = size / b[:, 2], size / b[:, 3]
    half = size / 2.0
    n = len(b)
    trans = np.zeros((n, 2, 3), np.float64)
    trans[:, 0, 0], trans[:, 0, 2] = sx, half - sx * cx
    trans[:, 1, 1], trans[:, 1, 2] = sy, half - sy * cy
    inv = np.zeros((n, 2, 3), np.float64)
    inv[:, 0, 0], inv[:, 0, 2] = 1.0 / sx, cx - half / sx
    inv[:, 1, 1], inv[:, 1, 2] = 1.0 / sy, cy - half / sy
    return trans.astype(np.float32), inv.astype(np.float32)


def _apply(affine: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """[N, 2, 3] affines on [N, K, 2] points (float64)."""
    a = np.asarray(affine, dtype=np.float64)
    return np.einsum("nij,nkj->nki", a[:, :, :2], np.asarray(xy, dtype=np.float64)) + a[:, None, :, 2]


def demo_keep(xy19: np.ndarray, score19: np.ndarray, pose_thr: float = SYSTEMS["crowdnet"].pose_thr) -> np.ndarray:
    """Which people 3DCrowdNet's demo would run, in input order (earlier people win duplicates).

    A person is skipped when the sum of its 19 scores (COCO-17 + pelvis + neck) is below 1, when no score is
    non-zero, or when it repeats a person already accepted: over the joints valid in both, the non-zero absolute
    x/y differences average under 20 px, or there is no such difference at all (identical poses, but also two
    poses that share no valid joint; the demo treats both as repeats, and so does this).

    Returns:
        [N] bool.
    """
    xy = np.asarray(xy19, dtype=np.float64)
    sc = np.asarray(score19, dtype=np.float64)
    valid = sc > pose_thr
    keep = np.zeros(len(xy), bool)
    accepted: list[int] = []
    for i in range(len(xy)):
        if sc[i].sum() < DEMO_MIN_DET_SCORE or not np.any(sc[i] != 0):
            continue
        repeat = False
        for j in accepted:
            both = (valid[i] & valid[j])[:, None]
            diff = np.abs(xy[i] - xy[j]) * both
            diff = diff[diff != 0]
            if diff.size == 0 or diff.mean() < DEMO_DUPLICATE_PX:
                repeat = True
        if repeat:
            continue
        accepted.append(i)
        keep[i] = True
    return keep


def _fallback_boxes(xy: np.ndarray, fallback_xyxy: np.ndarray | None, width: int, height: int,
                    scale: float) -> np.ndarray:
    """Boxes for people the pose cannot frame: the caller's (x1, y1, x2, y2) boxes, else all their points."""
    if fallback_xyxy is not None:
        f = np.asarray(fallback_xyxy, dtype=np.float64).reshape(-1, 4)
        raw = np.concatenate([f[:, :2], f[:, 2:] - f[:, :2]], axis=1)
    else:
        raw, _ = pose_box(xy, np.ones(xy.shape[:2], bool))
    boxes, _ = process_box(raw, width, height, scale)
    side = np.maximum(np.nan_to_num(boxes[:, 2:], nan=1.0), 1.0)  # never a zero-size box
    centre = np.nan_to_num(boxes[:, :2] + boxes[:, 2:] / 2.0, nan=0.0)
    return np.concatenate([centre - side / 2.0, side], axis=1).astype(np.float32)


def prepare(frame_bgr: np.ndarray, coco_xy: np.ndarray, coco_score: np.ndarray,
            system: str | SystemSpec = "crowdnet", fallback_boxes: np.ndarray | None = None) -> PoseCrop:
    """Crops, heatmap-grid joints and masks for N people of one frame.

    Args:
        frame_bgr: [H, W, 3] image as OpenCV reads it (uint8 BGR).
        coco_xy: [N, 17, 2] COCO-17 keypoints in original pixels. coco_score: [N, 17] their scores.
        system: "crowdnet", "jotr" or a ``SystemSpec``.
        fallback_boxes: optional [N, 4] (x1, y1, x2, y2) boxes (e.g. the detector's) to crop people whose pose
            cannot frame them; without it the extent of all their keypoints is used. Either way ``keep`` is False.

    Returns:
        ``PoseCrop``.
    """
    spec = _spec(system)
    frame = np.asarray(frame_bgr)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] frame, got shape {frame.shape}")
    coco_xy = np.asarray(coco_xy, dtype=np.float32).reshape(-1, 17, 2)
    coco_score = np.asarray(coco_score, dtype=np.float32).reshape(-1, 17)
    if len(coco_xy) != len(coco_score):
        raise ValueError(f"{len(coco_xy)} poses but {len(coco_score)} score rows")
    height, width = frame.shape[:2]
    n = len(coco_xy)

    xy19, sc19 = add_pelvis_neck(coco_xy, coco_score)
    valid19 = sc19 > spec.pose_thr
    raw, has = pose_box(xy19, valid19)
    boxes, ok = process_box(raw, width, height, spec.box_scale)
    keep = has & ok if spec.strict_box else has.copy()
    if spec.demo_filters:
        keep &= demo_keep(xy19, sc19, spec.pose_thr)
    usable = has & np.all(np.isfinite(boxes), axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    if not np.all(usable):
        bad = ~usable
        fb = None if fallback_boxes is None else np.asarray(fallback_boxes, dtype=np.float32).reshape(-1, 4)[bad]
        boxes[bad] = _fallback_boxes(coco_xy[bad], fb, width, height, spec.box_scale)
        keep &= usable
    trans, trans_inv = box_affine(boxes)

    img = np.empty((n, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i in range(n):
        crop = cv2.warpAffine(frame, trans[i], (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        img[i] = crop[:, :, ::-1].transpose(2, 0, 1)
    img /= 255.0

    grid_xy = _apply(trans, xy19) * (HM_SIZE / INPUT_SIZE)
    joints = coco19_to_input(grid_xy.astype(np.float32), sc19)
    jx, jy = joints[:, :, 0], joints[:, :, 1]
    inside = (jx >= 0) & (jx < HM_SIZE) & (jy >= 0) & (jy < HM_SIZE)
    mask = ((joints[:, :, 2] > spec.pose_thr) & inside).astype(np.float32)[:, :, None]
    return PoseCrop(img, joints, mask, trans, trans_inv, boxes, keep, spec.name)
