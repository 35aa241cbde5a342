"""People boxes from NanoDet, a COCO object detector trained on real photos (person = class 0).

Why a COCO detector in front of BlazePose: BlazePose's own detector is face-anchored and trained for close range;
on street footage it misses small, distant and back-turned people. NanoDet is anchor-free (GFL head): every cell of
three feature maps (strides 8, 16, 32) gives 80 class scores (already sigmoid) and, per box side, a distribution
over 0..reg_max cell units whose expectation is the distance from the cell to that side.

The network was trained at 416x416. The bundled file takes any height and width that are multiples of 32
(``python -m export realfootage`` rewrites its fixed-size upsampling; see export/dynamic_size.py), so the frame is
letterboxed to 416 on its long side and only padded up to the next multiple of 32 on the short one: a 4:3 frame
costs three quarters of a square pass and a 16:9 frame under two thirds, with the same pixels per person.

A frame larger than the street clip everything was tuned on (768x576) gets a larger input, keeping that clip's scale
up to ``MAX_SIZE`` on the long side: scaled to 416 whatever its size, an HD camera's view of a street shrinks its
people below what the network finds. Measured with the whole model on 2x2 mosaics of the hand-boxed vtest.avi frames
(1536x1152, the same people at the same pixel size in a view four times larger, 59 people): recall 0.73 at a 416
input, 0.88 at 512, 0.92 at 640, 0.93 at 832 (precision 0.96, 1.00, 0.98, 0.92). The pass costs with the input's
area (1.4x at 512 for a 16:9 frame, 2.3x at 640), and where the people were large enough already (vtest.avi
upscaled to 1280x720) 512 found no one more and drew 4 more false bodies in 53 people; 512 is the default, the
caller may allow more or less.

A frame larger still (one whose clip scale is at least ``FINE_GAIN`` x the input the pass gets: over 1123 px on its
long side at the defaults, so 1280x720 and up) holds people too small for that pass when it shows a crowd from afar:
on 3x3 mosaics of the hand-boxed vtest.avi frames (2304x1728, people 100-150 px tall) the 512 pass found 0.45 of 477
people. A larger single pass loses the big people instead (a group photo's people close to the camera outgrow what the
network was trained on: 640 px cost the group photos 0.89 -> 0.77 of recall). So such a frame gets a second, *fine*
pass at the clip's scale (up to ``FINE_SIZE``), whose boxes count only for people the first pass sees under
``SMALL_HEIGHT`` input pixels tall, where its own boxes are poor; the first pass keeps everyone taller (see
:meth:`PersonDetector.detect`). On those mosaics: 0.95 of the people, precision 0.96 -> 0.98; tracked, on a 1280x960
video of 3x3 tiles of vtest.avi (people 56-83 px tall, 321 hand-boxed), recall / precision 0.49 / 0.92 -> 0.81 / 0.92;
the group, wheel, sport and close-up photos are unchanged (nobody in them is that small). The fine pass costs up to 4x
the first (42 ms at 1024x576 on one core against 9.5, INT8), so the tracker runs it at every pass only while it
follows someone that small (see ``TrackerCfg.fine_backoff``); the caller may turn it off (``fine_size=0``), or run the
first pass larger instead (``max_size``: 1024 found 0.96 of the mosaics' people but loses the close ones as above).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..runtime.graph import OnnxGraph

__all__ = ["Detections", "PersonDetector", "PreparedFrame", "nms"]

PERSON = 0
# NanoDet's training normalisation (BGR order, 0..255 input)
NANODET_MEAN = (103.53, 116.28, 123.675)
NANODET_STD = (57.375, 57.12, 58.395)
STRIDES = (8, 16, 32)
TRAINED_SIZE = 416  # long side of the letterboxed input (the size the network was trained at)
MIN_SCALE = TRAINED_SIZE / 768  # frame -> input scale of the 768x576 street clip the detector was tuned on
MAX_SIZE = 512  # the longest input side a large frame gets by default (MIN_SCALE kept up to here)
# a cell's reference point is its centre: measured on hand-boxed vtest frames, the cell corner shifts every box
# up-left by half a stride (recall at IoU 0.5: 0.64 with the corner)
CELL_OFFSET = 0.5
FINE_SIZE = 1024  # the longest input side of the fine pass (0: no fine pass)
FINE_GAIN = 1.25  # the fine pass runs when it sees the frame at least this much larger than the first pass
# people shorter than this in the first pass's input are taken from the fine pass (measured on the 3x3 mosaics, where
# the first pass still finds most of them but boxes them badly: 48, 64 and 96 gave the same people)
SMALL_HEIGHT = 64
FINE_COVER = 0.5  # a fine box lying this much inside a taller person's box is a part of them (a bag, a child held)


@dataclass
class Detections:
    """M person boxes in frame pixels: boxes [M, 4] (x1, y1, x2, y2), scores [M], best first."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class PreparedFrame:
    """A frame resized for the detector: image [h, w, 3] uint8 (its own copy, long side at the input size), the
    frame -> input scale, the frame's (h, w), and the same for the fine pass when the frame gets one (``fine`` None
    otherwise). The float input is made from it by :meth:`PersonDetector.detect`, on the thread that runs the
    network: the model thread only pays for the resize."""

    image: np.ndarray
    scale: float
    frame_hw: tuple[int, int]
    fine: np.ndarray | None = None
    fine_scale: float = 0.0


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[M, 4] x [K, 4] boxes -> (intersection areas [M, K], areas of a [M], areas of b [K])."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    return inter, np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[M, 4] x [K, 4] boxes -> [M, K] intersection over union."""
    inter, area_a, area_b = _overlaps(a, b)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)


def cover_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[M, 4] x [K, 4] boxes -> [M, K] the share of each ``b`` box's area that the ``a`` box covers."""
    inter, _, area_b = _overlaps(a, b)
    return inter / np.maximum(area_b[None, :], 1e-6)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    ious = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(scores), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= ious[i] > iou
    return np.asarray(keep, np.int64)


class PersonDetector:
    """NanoDet on a letterboxed frame (keeps the aspect ratio: people are not squashed).

    Args:
        graph: the converted detector with outputs ``cls_8/16/32`` [1, HW, 80] and ``box_8/16/32`` [1, HW, 4*(R+1)];
            its input is NCHW, square and fixed or with symbolic height and width.
        mean / std: per-channel input normalisation in the channel order the network expects (BGR for NanoDet),
            from the model's provenance record.
        iou: NMS overlap above which the weaker box is dropped.
        size: long side of the input when the graph takes any size (a fixed-size graph uses its own), for frames
            up to ``size / MIN_SCALE`` on their long side; a larger frame keeps that scale, up to ``max_size``.
        max_size: the longest input side (``size`` or less: every frame at ``size``).
        fine_size: the longest input side of the fine pass for large frames (0: none; see the module docstring).
    """

    OUTPUTS = tuple(f"{k}_{s}" for k in ("cls", "box") for s in STRIDES)

    def __init__(self, graph: OnnxGraph, mean: tuple[float, float, float] = NANODET_MEAN,
                 std: tuple[float, float, float] = NANODET_STD, bgr: bool = True, iou: float = 0.5,
                 size: int = TRAINED_SIZE, max_size: int = MAX_SIZE, fine_size: int = FINE_SIZE) -> None:
        self.graph = graph
        self.input_name = graph.input_names[0]
        h, w = graph.input_shapes[self.input_name][-2:]
        self.fixed = isinstance(h, int) and isinstance(w, int)  # an older square export
        self.size = int(w) if self.fixed else int(size)
        self.max_size = self.size if self.fixed else max(self.size, int(max_size))
        self.fine_size = 0 if self.fixed else int(fine_size)
        if self.size % STRIDES[-1] or self.max_size % STRIDES[-1] or self.fine_size % STRIDES[-1]:
            raise ValueError(f"detector input sizes {self.size}, {self.max_size}, {self.fine_size} are not multiples "
                             f"of {STRIDES[-1]}")
        self.mean = np.asarray(mean, np.float32)
        self.inv_std = 1.0 / np.asarray(std, np.float32)
        self.bgr = bgr
        self.iou = iou
        self._grids: dict[tuple[int, int, int], np.ndarray] = {}

    def _grid(self, stride: int, height: int, width: int) -> np.ndarray:
        """Cell centres (input pixels) of one stride's feature map, row-major as the network flattens it."""
        key = (stride, height, width)
        if key not in self._grids:
            rows, cols = height // stride, width // stride
            ys, xs = np.divmod(np.arange(rows * cols), cols)
            self._grids[key] = (np.stack([xs, ys], axis=1).astype(np.float32) + CELL_OFFSET) * stride
        return self._grids[key]

    def long_side(self, height: int, width: int) -> int:
        """The input's long side for a frame: ``size``, or more for a frame large enough to need it (see the module
        docstring), a multiple of 32."""
        return int(min(max(self.size, _clip_scale(height, width)), self.max_size))

    def fine_side(self, height: int, width: int) -> int:
        """The fine pass's long side for a frame, or 0 when the frame is not large enough to need one."""
        side = min(_clip_scale(height, width), self.fine_size)
        return side if side >= FINE_GAIN * self.long_side(height, width) else 0

    def small_height(self, height: int, width: int) -> float:
        """Frame pixels under which the first pass boxes people poorly and the fine pass takes over; 0 for a frame
        that gets no fine pass."""
        return SMALL_HEIGHT * max(height, width) / self.long_side(height, width) if self.fine_side(height, width) \
            else 0.0

    def input_hw(self, height: int, width: int) -> tuple[int, int]:
        """The network input (height, width) for a frame: the long side at :meth:`long_side`, the short side padded
        up to a multiple of 32 (square for a fixed-size graph)."""
        if self.fixed:
            return self.size, self.size
        k = self.long_side(height, width) / max(height, width)
        step = STRIDES[-1]
        return (max(step, -(-round(height * k) // step) * step), max(step, -(-round(width * k) // step) * step))

    def preprocess(self, frame_bgr: np.ndarray, fine: bool = False) -> tuple[np.ndarray, float]:
        """Letterbox to the top-left of the input canvas: (NCHW float32 [1, 3, H, W], frame->input scale), of the
        first pass, or of the fine pass with ``fine`` (a frame that gets none: ValueError)."""
        prepared = self.prepare(frame_bgr, fine)
        if fine and prepared.fine is None:
            raise ValueError(f"a {frame_bgr.shape[1]}x{frame_bgr.shape[0]} frame gets no fine pass")
        return self._tensor(prepared, fine), prepared.fine_scale if fine else prepared.scale

    def __call__(self, frame_bgr: np.ndarray, threshold: float, max_people: int = 64,
                 fine: bool = True) -> Detections:
        return self.detect(self.prepare(frame_bgr, fine), threshold, max_people)

    def prepare(self, frame_bgr: np.ndarray, fine: bool = True) -> PreparedFrame:
        """The frame resized for the network (a copy: the frame itself may be drawn on once this returns), and for
        the fine pass too when the frame is large enough to need one and ``fine`` (False: the first pass alone, its
        boxes as they are, the way a frame too small for a fine pass gets it)."""
        h, w = frame_bgr.shape[:2]
        k = self.long_side(h, w) / max(h, w)
        img = cv2.resize(frame_bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_LINEAR)
        side = self.fine_side(h, w) if fine else 0
        if not side:
            return PreparedFrame(img, k, (h, w))
        kf = side / max(h, w)
        small = cv2.resize(frame_bgr, (max(1, round(w * kf)), max(1, round(h * kf))), interpolation=cv2.INTER_AREA)
        return PreparedFrame(img, k, (h, w), small, kf)

    def _tensor(self, prepared: PreparedFrame, fine: bool = False) -> np.ndarray:
        """The network input: the resized frame (or the fine one) normalised, at the top-left of a zero canvas,
        NCHW."""
        img = prepared.fine if fine else prepared.image
        img = img if self.bgr else img[:, :, ::-1]
        nh, nw = img.shape[:2]
        step = STRIDES[-1]  # a size-free graph takes the image padded to the stride: input_hw's rule, for either pass
        ih, iw = self.input_hw(*prepared.frame_hw) if self.fixed else (-(-nh // step) * step, -(-nw // step) * step)
        x = np.zeros((1, 3, ih, iw), np.float32)
        for c in range(3):
            x[0, c, :nh, :nw] = (img[:, :, c] - self.mean[c]) * self.inv_std[c]
        return x

    def detect(self, prepared: PreparedFrame, threshold: float, max_people: int = 64) -> Detections:
        """Network + decoding of a prepared frame (thread-safe: it touches no state but the grid cache).

        With a fine pass: the people the first pass sees at least ``SMALL_HEIGHT`` input pixels tall, and the
        fine pass's shorter ones that do not lie inside one of them, overlaps suppressed."""
        first = self._pass(prepared, threshold, max_people, fine=False)
        if prepared.fine is None:
            return first
        small = self.small_height(*prepared.frame_hw)
        found = self._pass(prepared, threshold, max_people, fine=True)
        tall = first.boxes[:, 3] - first.boxes[:, 1] >= small
        keep = found.boxes[:, 3] - found.boxes[:, 1] < small
        if tall.any() and keep.any():
            keep &= cover_matrix(first.boxes[tall], found.boxes).max(axis=0) < FINE_COVER
        boxes = np.concatenate([first.boxes[tall], found.boxes[keep]])
        scores = np.concatenate([first.scores[tall], found.scores[keep]])
        order = nms(boxes, scores, self.iou)[:max_people]
        return Detections(boxes[order], scores[order])

    def _pass(self, prepared: PreparedFrame, threshold: float, max_people: int, fine: bool) -> Detections:
        """One network pass over the prepared frame (or its fine copy), decoded to frame pixels."""
        x, k = self._tensor(prepared, fine), prepared.fine_scale if fine else prepared.scale
        ih, iw = x.shape[2:]
        out = self.graph.run({self.input_name: x})
        boxes, scores = [], []
        for s in STRIDES:
            cls = out[f"cls_{s}"][0, :, PERSON]
            keep = np.flatnonzero(cls > threshold)
            if len(keep) == 0:
                continue
            dist = out[f"box_{s}"][0, keep].reshape(len(keep), 4, -1)
            dist = np.exp(dist - dist.max(axis=2, keepdims=True))
            dist /= dist.sum(axis=2, keepdims=True)
            d = (dist @ np.arange(dist.shape[2], dtype=np.float32)) * s  # [K, 4] left, top, right, bottom
            c = self._grid(s, ih, iw)[keep]
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            scores.append(cls[keep])
        if not boxes:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        b = np.concatenate(boxes) / k
        sc = np.concatenate(scores)
        h, w = prepared.frame_hw
        b = np.clip(b, 0, [w, h, w, h]).astype(np.float32)
        keep = nms(b, sc, self.iou)[:max_people]
        return Detections(b[keep], sc[keep].astype(np.float32))


def _clip_scale(height: int, width: int) -> int:
    """The long side (a multiple of 32) that shows a frame's people at the street clip's scale (``MIN_SCALE``)."""
    step = STRIDES[-1]
    return int(-(-round(max(height, width) * MIN_SCALE) // step) * step)
