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


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    """Stack [3, S, S] inputs into a float32 [B, 3, S, S] batch."""
    return np.ascontiguousarray(np.stack(images, axis=0), dtype=np.float32)
