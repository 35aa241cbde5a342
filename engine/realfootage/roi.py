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

__all__ = ["Rois", "crop_rois", "cut_boxes", "extend_cut_boxes", "follow_points", "narrow_boxes", "narrow_cut",
           "rois_from_alignment", "rois_from_boxes"]

# Width / height of the box of a whole, upright person, about (arms at the sides or swinging). A box cut by the top
# or bottom of the frame that is wider than this holds only part of a body: the rest is outside the picture.
WHOLE_BODY_ASPECT = 0.45
EDGE_PX = 0.02  # a box side within this fraction of the frame's height (width) of its top / bottom (side) edge
# a cut box no wider than a whole person (its width says nothing): the whole body, in heights of the part in the picture
NARROW_CUT_HEIGHT = 1.8


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


def extend_cut_boxes(boxes: np.ndarray, frame_hw: tuple[int, int], at_least: float = 0.0) -> np.ndarray:
    """[N, 4] detector boxes with the part of the body outside the frame added back, where the frame cuts them.

    Why: the landmark network reads a crop framed around a whole body (the mid-hip at the centre). A person close to
    the camera (the webcam case: head and shoulders, or down to the waist) fills a detector box that ends at the
    frame's bottom edge; framed as if that box were the whole body, the crop shows a giant torso that the network
    reads as a small crouching body, or rejects. A box that touches the bottom edge and is wider than a whole
    person's box is extended downwards to the height a whole person of that width would have, even when it touches
    the top as well (a close-up's head reaches the top of the picture; its body goes on below); one cut at the top
    only is extended upwards. A narrower box at the bottom (a person standing close, seen down to the thighs; or
    one that a side edge cut as well, a player half out of the picture) says nothing by its width: it is extended
    to ``NARROW_CUT_HEIGHT`` x the height in the picture, a body seen from the head down to the hips or the
    thighs. Whether the box really is cut is for the landmark network to say (the tracker crops both framings).
    The tracker keeps that framing and moves it with the landmarks seen (:func:`follow_points`). ``at_least``
    extends every cut box to at least that many times its height in the picture (the tracker's deeper framing).
    """
    out = np.array(boxes, np.float32, copy=True).reshape(-1, 4)
    if not len(out):
        return out
    seen = out[:, 3] - out[:, 1]
    whole = np.maximum(seen, (out[:, 2] - out[:, 0]) / WHOLE_BODY_ASPECT)
    cut = cut_boxes(out, frame_hw)
    whole = np.where((cut != 0) & narrow_boxes(out), np.maximum(whole, NARROW_CUT_HEIGHT * seen), whole)
    whole = np.where(cut != 0, np.maximum(whole, at_least * seen), whole)
    down, up = cut > 0, cut < 0
    out[down, 3] = out[down, 1] + whole[down]
    out[up, 1] = out[up, 3] - whole[up]
    return out


def cut_boxes(boxes: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """[N] int8: where a detector box may hold only part of a body, the side the body would go on: 1 below the
    frame, -1 above it; 0 for a whole body (see :func:`extend_cut_boxes`).

    Every box that touches the bottom edge may: people close to the camera are cut there (a group photo, a webcam
    user), and a narrow box is no sign of a whole body, as a person standing close and seen down to the thighs has
    a whole person's width / height too (in six group photos 5 of the 18 people the bottom edge cuts have narrow
    boxes; framed as whole bodies, 3 of them were turned down and one drawn as a small figure over the face). At
    the top edge only a box wider than a whole person's, or one a side edge cuts as well, is a candidate: a whole
    body whose head touches the top of the picture is the common case there."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    height, width = float(frame_hw[0]), float(frame_hw[1])
    bottom, top = b[:, 3] >= (1.0 - EDGE_PX) * height, b[:, 1] <= EDGE_PX * height
    partial = ~narrow_boxes(b) | _side_cut(b, width)
    return np.where(bottom, 1, np.where(partial & top, -1, 0)).astype(np.int8)


def _side_cut(b: np.ndarray, width: float) -> np.ndarray:
    return (b[:, 0] <= EDGE_PX * width) | (b[:, 2] >= (1.0 - EDGE_PX) * width)


def narrow_cut(boxes: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """[N] bool: the cut candidates of :func:`cut_boxes` whose boxes are no wider than a whole person's, so only
    an edge suggests the cut. That is weak evidence: a whole person walking in at the bottom, or at a bottom
    corner, has such a box too."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return (cut_boxes(b, frame_hw) != 0) & narrow_boxes(b)


def narrow_boxes(b: np.ndarray) -> np.ndarray:
    """[N] bool: boxes no wider than a whole, upright person's (``WHOLE_BODY_ASPECT``)."""
    return b[:, 2] - b[:, 0] <= WHOLE_BODY_ASPECT * (b[:, 3] - b[:, 1])


def follow_points(rois: Rois, before: np.ndarray, after: np.ndarray, seen: np.ndarray, min_points: int = 4,
                  max_zoom: float = 1.25) -> Rois:
    """The ROIs moved and scaled as the points seen in both measurements moved (the angle is kept).

    Why: for a body cut by the frame the landmark network's alignment points (mid-hip, scale point) are a guess,
    and a biased one: the unseen hips land near the centre of whatever crop it reads (that is where training put
    them), so each crop framed from the last one grew by a sixth to a third, without end, until the person was a
    speck in the crop (measured on close-up portraits). The points it does see are not biased, so the crop follows
    them: translated with their centroid, scaled with their spread (clipped to ``max_zoom`` per step).

    Args:
        rois: the ROIs the ``after`` points were measured in.
        before, after: [N, K, 2] the same points at the previous measurement and now (frame pixels).
        seen: [N, K] points seen in both; rows with fewer than ``min_points`` keep their ROI.
    """
    w = np.asarray(seen, np.float64)
    count = w.sum(axis=1)
    safe = np.maximum(count, 1.0)[:, None]
    cb = (w[..., None] * before).sum(axis=1) / safe
    ca = (w[..., None] * after).sum(axis=1) / safe
    sb = np.sqrt((w * ((before - cb[:, None]) ** 2).sum(-1)).sum(axis=1) / safe[:, 0])
    sa = np.sqrt((w * ((after - ca[:, None]) ** 2).sum(-1)).sum(axis=1) / safe[:, 0])
    ok = (count >= min_points) & (sb > 1e-6)
    zoom = np.where(ok, np.clip(sa / np.maximum(sb, 1e-6), 1.0 / max_zoom, max_zoom), 1.0)
    centers = np.where(ok[:, None], ca + zoom[:, None] * (rois.centers - cb), rois.centers)
    return Rois(centers.astype(np.float32), (rois.sides * zoom).astype(np.float32), rois.angles.copy())


def rois_from_alignment(center: np.ndarray, scale_point: np.ndarray, scale: float) -> Rois:
    """Squares from two alignment points per person (the landmark network's auxiliary hip-centre and scale points):
    centred on the first, side ``2 * scale * |p1 - p0|``, rotated so that p0 -> p1 points up."""
    v = np.asarray(scale_point, np.float64) - np.asarray(center, np.float64)
    radius = np.linalg.norm(v, axis=1)
    # the crop's "up" (0, -1) maps to R(angle) (0, -1) = (-sin, -cos) in the frame: make that v's direction
    angles = np.arctan2(-v[:, 0], -v[:, 1])
    return Rois(np.asarray(center, np.float32), (2 * scale * radius).astype(np.float32), angles.astype(np.float32))


def crop_rois(frame_bgr: np.ndarray, rois: Rois, size: int,
              keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut every ROI out of the frame, upright, as RGB float32 [N, size, size, 3] in [0, 1] (zero border).

    The frame stays BGR (as captured): the crops are cut from it and their channels swapped, which is exactly
    cutting them from an RGB copy (the warp treats channels alike) without converting the whole frame on every
    frame for a few 256-pixel crops.

    Args:
        keep: [N, 4] frame boxes (x1, y1, x2, y2), or None: each crop's pixels outside its box are blanked, as
            beyond the frame's edge, so the network reads that person alone (neighbours in a close group fill
            a square crop too; see ``TrackerCfg.alone_pad``).

    Returns:
        (crops, crop->frame affine maps [N, 2, 3]).
    """
    maps = rois.crop_to_image(size)
    patches = np.empty((len(rois), size, size, 3), np.uint8)
    for i, m in enumerate(maps):
        patch = cv2.warpAffine(frame_bgr, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if keep is not None:  # the box's corners in crop pixels (a quadrilateral where the ROI is rotated)
            x1, y1, x2, y2 = keep[i]
            inv = cv2.invertAffineTransform(m)
            poly = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64) @ inv[:, :2].T + inv[:, 2]
            mask = np.zeros((size, size), np.uint8)
            cv2.fillConvexPoly(mask, np.round(poly).astype(np.int32), 1)
            patch *= mask[:, :, None]
        cv2.cvtColor(patch, cv2.COLOR_BGR2RGB, dst=patches[i])
    out = np.empty(patches.shape, np.float32)
    np.multiply(patches, 1.0 / 255.0, out=out, casting="unsafe")  # one contiguous pass (a reversed view: 3x slower)
    return out, maps
