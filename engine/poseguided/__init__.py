"""Inputs and outputs of the 2D-pose-guided mesh models (3DCrowdNet, JOTR): per-person crops and heatmap-grid
joints from a frame and COCO-17 poses (``preprocess``), the joint orders and the BlazePose -> COCO-17 conversion
(``joints``), and the crop camera -> original camera conversion (``camera``)."""

from .camera import cam_param_to_translation, crop_to_original, default_focal, joint_img_to_grid
from .joints import INPUT_JOINTS, OUTPUT_JOINTS, blazepose_to_coco17, coco17_from_landmarks
from .preprocess import SYSTEMS, PoseCrop, SystemSpec, prepare

__all__ = [
    "INPUT_JOINTS",
    "OUTPUT_JOINTS",
    "SYSTEMS",
    "PoseCrop",
    "SystemSpec",
    "blazepose_to_coco17",
    "cam_param_to_translation",
    "coco17_from_landmarks",
    "crop_to_original",
    "default_focal",
    "joint_img_to_grid",
    "prepare",
]
