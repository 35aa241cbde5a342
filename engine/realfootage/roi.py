"""Rotated square regions of interest around people, and the crops the landmark network reads.

A ROI is (centre x, centre y, side, angle) in original-frame pixels; angle is the rotation (radians,
counter-clockwise in image coordinates as drawn, i.e. y down) that makes the person upright in the crop. The
landmark network was trained on crops framed the way its own detector frames people (the mid-hip at the centre,
the body upright, a margin around it); ROIs derived from its previous landmarks keep that framing frame to frame,
so the detector only has to find people who are new.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Rois", "crop_rois", "rois_from_alignment", "rois_from_boxes"]


@dataclass
class Rois:
    """N rotated squares. Attributes: centers [N, 2], sides [N], angles [N] (float32 arrays)."""

    centers: np.ndarray
    sides: np.ndarray
    angles: np.ndarray

    def __len__(self) -> int:
        return len(self.sides)

    def select(self, idx) -> Rois:
        return Rois(self.centers[idx], self.sides[idx], self.angles[idx])

    @classmethod
    def concat(cls, parts: list[Rois]) -> Rois:
        if not parts:
            return cls(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))
        return cls(np.concatenate([p.centers for p in parts]), np.concatenate([p.sides for p in parts]),
                   np.concatenate([p.angles for p in parts]))

    def crop_to_image(self, size: int) -> np.ndarray:
        """[N, 2, 3] affine maps from crop pixels (size x size) to frame pixels."""
        c, s = np.cos(self.angles), np.sin(self.angles)
        k = self.sides / size
        m = np.zeros((len(self), 2, 3), np.float64)
        # crop point u (pixels) -> frame: centre + R(-angle) * (u - size/2) * k  (y down)
        m[:, 0, 0], m[:, 0, 1] = c * k, s * k
        m[:, 1, 0], m[:, 1, 1] = -s * k, c * k
        half = size / 2.0
        m[:, :, 2] = self.centers - half * (m[:, :, 0] + m[:, :, 1])
        return m


def rois_from_boxes(boxes: np.ndarray, scale: float) -> Rois:
    """Upright squares around [N, 4] (x1, y1, x2, y2) boxes: side = ``scale`` x the longer box side."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * scale
    return Rois(centers.astype(np.float32), sides.astype(np.float32), np.zeros(len(boxes), np.float32))


def rois_from_alignment(center: np.ndarray, scale_point: np.ndarray, scale: float) -> Rois:
    """Squares from two alignment points per person (the landmark network's auxiliary hip-centre and scale points):
    centred on the first, side ``2 * scale * |p1 - p0|``, rotated so that p0 -> p1 points up."""
    v = np.asarray(scale_point, np.float64) - np.asarray(center, np.float64)
    radius = np.linalg.norm(v, axis=1)
    # the crop's "up" (0, -1) maps to R(angle) (0, -1) = (-sin, -cos) in the frame: make that v's direction
    angles = np.arctan2(-v[:, 0], -v[:, 1])
    return Rois(np.asarray(center, np.float32), (2 * scale * radius).astype(np.float32), angles.astype(np.float32))


def crop_rois(frame_rgb: np.ndarray, rois: Rois, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut every ROI out of the frame, upright, as float32 [N, size, size, 3] in [0, 1] (zero border).

    Returns:
        (crops, crop->frame affine maps [N, 2, 3]).
    """
    maps = rois.crop_to_image(size)
    out = np.empty((len(rois), size, size, 3), np.float32)
    for i, m in enumerate(maps):
        patch = cv2.warpAffine(frame_rgb, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        np.multiply(patch, 1.0 / 255.0, out=out[i], casting="unsafe")
    return out, maps
