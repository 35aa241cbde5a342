"""Joint orders of the 2D-pose-guided models (3DCrowdNet, JOTR) and the conversion from our BlazePose landmarks.

Both networks take their 2D pose in the 30-joint order of their SMPL joint set (the 24 SMPL joints plus nose,
eyes, ears and head top): one heatmap channel per joint, so the order is part of the trained weights. Only the
COCO-17 keypoints plus two derived points (pelvis = mid-hips, neck = mid-shoulders) are ever filled at test time;
the other 11 channels stay zero and masked. The networks predict 15 joints (``OUTPUT_JOINTS``) in their own order.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLAZEPOSE_TO_COCO17",
    "COCO17_JOINTS",
    "COCO19_JOINTS",
    "COCO19_TO_INPUT",
    "INPUT_JOINTS",
    "NUM_INPUT_JOINTS",
    "NUM_OUTPUT_JOINTS",
    "OUTPUT_FROM_INPUT",
    "OUTPUT_JOINTS",
    "add_pelvis_neck",
    "blazepose_to_coco17",
    "coco17_from_landmarks",
    "coco19_to_input",
]

# The networks' input order (index = heatmap channel).
INPUT_JOINTS: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Torso", "L_Knee", "R_Knee", "Spine", "L_Ankle", "R_Ankle", "Chest",
    "L_Toe", "R_Toe", "Neck", "L_Thorax", "R_Thorax", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist", "L_Hand", "R_Hand", "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "Head_top",
)
NUM_INPUT_JOINTS = len(INPUT_JOINTS)

# The 15 joints the position branch predicts (``joint_img``), a subset of INPUT_JOINTS.
OUTPUT_JOINTS: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Neck", "Head_top",
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist",
)
NUM_OUTPUT_JOINTS = len(OUTPUT_JOINTS)
OUTPUT_FROM_INPUT: tuple[int, ...] = tuple(INPUT_JOINTS.index(n) for n in OUTPUT_JOINTS)

COCO17_JOINTS: tuple[str, ...] = (
    "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle",
)
# COCO-17 followed by the two derived points, in the order the official loaders append them.
COCO19_JOINTS: tuple[str, ...] = (*COCO17_JOINTS, "Pelvis", "Neck")
COCO19_TO_INPUT: tuple[int, ...] = tuple(INPUT_JOINTS.index(n) for n in COCO19_JOINTS)

# BlazePose landmark index of each COCO-17 joint. A direct point-for-point mapping: BlazePose's hips are its own
# definition (they are not annotated like COCO's), but no documented offset exists to correct them with, so none
# is applied.
BLAZEPOSE_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

_L_HIP, _R_HIP = COCO17_JOINTS.index("L_Hip"), COCO17_JOINTS.index("R_Hip")
_L_SHO, _R_SHO = COCO17_JOINTS.index("L_Shoulder"), COCO17_JOINTS.index("R_Shoulder")


def blazepose_to_coco17(points: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose landmarks -> COCO-17 keypoints.

    Args:
        points: [N, 33, >=2] landmark pixels (x, y first; extra columns such as BlazePose's depth are dropped).
        scores: [N, 33] per-landmark confidence in [0, 1].

    Returns:
        ``coco_xy`` [N, 17, 2] float32 and ``coco_score`` [N, 17] float32.
    """
    points = np.asarray(points)
    scores = np.asarray(scores)
    if points.ndim != 3 or points.shape[1] != 33 or points.shape[2] < 2 or scores.shape != points.shape[:2]:
        raise ValueError(f"expected points [N, 33, >=2] and scores [N, 33], got {points.shape} and {scores.shape}")
    idx = list(BLAZEPOSE_TO_COCO17)
    return points[:, idx, :2].astype(np.float32), scores[:, idx].astype(np.float32)


def coco17_from_landmarks(landmarks) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 keypoints from a ``Landmarks`` result (frame pixels), scored by landmark visibility.

    Visibility (the probability the point is seen, not occluded and inside the crop) is used rather than presence
    (merely inside the frame) because it is the nearer analogue of a keypoint detector's heatmap confidence, which
    is what the models' score thresholds were tuned on; it is also the confidence the body fitter uses.
    """
    return blazepose_to_coco17(landmarks.image, landmarks.visibility)


def add_pelvis_neck(coco_xy: np.ndarray, coco_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append pelvis (mid-hips) and neck (mid-shoulders) as the official loaders do.

    The position is the midpoint; the score is the *product* of the two parents' scores, so the derived point only
    passes a threshold when both parents are reasonably confident.

    Returns:
        ``xy`` [N, 19, 2] and ``score`` [N, 19] (float32), in ``COCO19_JOINTS`` order.
    """
    xy = np.asarray(coco_xy, dtype=np.float32)
    sc = np.asarray(coco_score, dtype=np.float32)
    pelvis = (xy[:, _L_HIP] + xy[:, _R_HIP]) * 0.5
    neck = (xy[:, _L_SHO] + xy[:, _R_SHO]) * 0.5
    xy19 = np.concatenate([xy, pelvis[:, None], neck[:, None]], axis=1)
    sc19 = np.concatenate([sc, (sc[:, _L_HIP] * sc[:, _R_HIP])[:, None], (sc[:, _L_SHO] * sc[:, _R_SHO])[:, None]],
                          axis=1)
    return xy19, sc19


def coco19_to_input(xy19: np.ndarray, score19: np.ndarray) -> np.ndarray:
    """Scatter COCO-19 rows into the 30-joint input order: [N, 30, 3] = (x, y, score), unfilled joints all zero."""
    n = len(xy19)
    out = np.zeros((n, NUM_INPUT_JOINTS, 3), np.float32)
    idx = list(COCO19_TO_INPUT)
    out[:, idx, :2] = xy19
    out[:, idx, 2] = score19
    return out
