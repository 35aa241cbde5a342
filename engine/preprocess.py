"""Frame -> network input, exactly as the official loaders do it: centred black padding to a square, then a
cubic resize of the whole square. (Resizing first and padding after would be cheaper but shifts border pixels.)
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import Letterbox


def letterbox(frame_bgr: np.ndarray, input_size: int) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 [H, W, 3] -> (RGB float32 [3, S, S] in 0..255, geometry)."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected a colour frame [H, W, 3], got shape {frame_bgr.shape}")
    h, w = frame_bgr.shape[:2]
    box = Letterbox.for_frame(h, w, input_size)
    side = box.padded_side
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[box.pad_top:box.pad_top + h, box.pad_left:box.pad_left + w] = frame_bgr
    resized = cv2.resize(square, (input_size, input_size), interpolation=cv2.INTER_CUBIC)
    rgb = resized[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
    return np.ascontiguousarray(rgb), box


def letterbox_torch(frame_bgr, input_size: int):
    """The same letterbox on a torch uint8 [H, W, 3] BGR tensor (any device): (float32 [3, S, S] RGB 0..255, geometry).

    Why a second implementation: on a GPU the frame is uploaded once as uint8 (a quarter of the float bytes) and
    padded, resized and normalised there, so the host never touches the float image. It reproduces
    :func:`letterbox` to within one grey level: ``bicubic`` with ``align_corners=False`` uses OpenCV's cubic
    kernel (a = -0.75), pixel-centre mapping and clamped borders; the result is rounded and saturated to 0..255
    exactly as OpenCV's uint8 output is (OpenCV interpolates in fixed point, hence the remaining +-1).
    """
    import torch
    import torch.nn.functional as F

    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected a colour frame [H, W, 3], got shape {tuple(frame_bgr.shape)}")
    h, w = int(frame_bgr.shape[0]), int(frame_bgr.shape[1])
    box = Letterbox.for_frame(h, w, input_size)
    side = box.padded_side
    chw = frame_bgr.permute(2, 0, 1).flip(0).float()  # BGR HWC -> RGB CHW
    square = F.pad(chw, (box.pad_left, side - w - box.pad_left, box.pad_top, side - h - box.pad_top))
    if side == input_size:
        return square.contiguous(), box
    out = F.interpolate(square[None], size=(input_size, input_size), mode="bicubic", align_corners=False)[0]
    return torch.round(out).clamp_(0.0, 255.0), box
