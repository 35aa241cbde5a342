"""Detection quality on hand-boxed real images: what a user sees (the rendered bodies) against the people there.

A predicted person is the box around its projected mesh, i.e. exactly the body drawn over the picture, so a
correct detection with a wildly wrong size counts as a miss plus a false positive. Greedy matching by IoU (best
pairs first). People marked ``hard`` (less than half visible or tiny) and ``ignore`` regions (posters,
reflections) neither count as misses nor make a detection on them a false positive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from .detector import iou_matrix

__all__ = ["IdentityScore", "ImageScore", "Score", "camera_view", "load_annotations", "mesh_boxes", "score_image",
           "swayed", "zoomed"]


def load_annotations(path: str | Path) -> list[dict]:
    """The ``images`` list of a boxes file (format 1): source, frame (videos), people [{box, hard}], ignore.

    A file whose images ship beside it names their folder (``images_dir``, relative to the file); each image then
    also gets ``path``, the file to read. Without it, sources are files of Debian's opencv-doc examples."""
    path = Path(path)
    data = json.loads(path.read_text())
    if data.get("format") != 1:
        raise ValueError(f"{path}: unknown annotation format {data.get('format')!r}")
    images = data["images"]
    if "images_dir" in data:
        folder = path.parent / data["images_dir"]
        images = [{**im, "path": str(folder / im["source"])} for im in images]
    return images


def mesh_boxes(vertices_px: np.ndarray, frame_hw: tuple[int, int] | None = None) -> np.ndarray:
    """[N, V, 2] projected vertices -> [N, 4] boxes, clipped to the frame when ``frame_hw`` is given.

    Why clip: the annotations box what the picture shows, and so does the user's eye. A person cut by the frame edge
    (a close-up, someone walking in) is drawn with a whole body whose off-frame part nobody sees; unclipped, a body
    that fits the visible part exactly would score as a miss, and one squeezed into the frame as a hit."""
    if len(vertices_px) == 0:
        return np.zeros((0, 4), np.float32)
    boxes = np.concatenate([vertices_px.min(axis=1), vertices_px.max(axis=1)], axis=1)
    if frame_hw is not None:
        h, w = frame_hw
        boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], np.float64))
    return boxes.astype(np.float32)


def _ioa(pred: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """[M] largest share of each predicted box's area inside any region."""
    if len(regions) == 0 or len(pred) == 0:
        return np.zeros(len(pred))
    lt = np.maximum(pred[:, None, :2], regions[None, :, :2])
    rb = np.minimum(pred[:, None, 2:], regions[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.maximum(np.prod(pred[:, 2:] - pred[:, :2], axis=1), 1e-6)
    return (inter / area[:, None]).max(axis=1)


@dataclass
class ImageScore:
    """Counts for one image: true positives (non-hard people found), misses, false positives, hard people found,
    for every match the predicted/true box height ratio, and which prediction matched each person (``matched``:
    person index -> prediction index, hard people included), so a clip can follow a person's id."""

    tp: int
    fn: int
    fp: int
    hard_found: int
    hard_total: int
    height_ratios: list[float] = field(default_factory=list)
    giant: int = 0
    matched: dict[int, int] = field(default_factory=dict)


def score_image(pred: np.ndarray, people: list[dict], ignore: list, iou: float = 0.5) -> ImageScore:
    """Score predicted boxes [M, 4] against one image's annotation."""
    gt = np.asarray([p["box"] for p in people], np.float32).reshape(-1, 4)
    hard = np.asarray([bool(p.get("hard", False)) for p in people], bool)
    pred = np.asarray(pred, np.float32).reshape(-1, 4)
    ious = iou_matrix(pred, gt) if len(pred) and len(gt) else np.zeros((len(pred), len(gt)))
    matched_p, matched_g, pairs = set(), set(), {}
    for flat in np.argsort(-ious, axis=None):
        i, j = divmod(int(flat), max(len(gt), 1))
        if ious[i, j] < iou:
            break
        if i in matched_p or j in matched_g:
            continue
        matched_p.add(i)
        matched_g.add(j)
        pairs[j] = i
    tp = sum(1 for j in matched_g if not hard[j])
    hard_found = sum(1 for j in matched_g if hard[j])
    unmatched = np.asarray([i for i in range(len(pred)) if i not in matched_p], np.int64)
    fp = 0
    if len(unmatched):
        # a detection on a hard person (matched loosely) or in an ignore region is not a false positive
        excuse = np.zeros(len(unmatched), bool)
        if hard.any():
            excuse |= (iou_matrix(pred[unmatched], gt[hard]) >= iou / 2).any(axis=1)
        excuse |= _ioa(pred[unmatched], np.asarray(ignore, np.float32).reshape(-1, 4)) > 0.5
        fp = int((~excuse).sum())
    heights_gt = gt[:, 3] - gt[:, 1]
    ratios = []
    for i in matched_p:
        j = int(np.argmax(ious[i]))
        ratios.append(float((pred[i, 3] - pred[i, 1]) / max(heights_gt[j], 1.0)))
    tallest = float(heights_gt.max()) if len(gt) else float("inf")
    giant = int(((pred[:, 3] - pred[:, 1]) > 2.0 * tallest).sum()) if len(pred) else 0
    return ImageScore(tp, int((~hard).sum()) - tp, fp, hard_found, int(hard.sum()), ratios, giant,
                      pairs)


@dataclass
class Score:
    """Totals over a set of images."""

    images: list[ImageScore] = field(default_factory=list)
    identities: list[IdentityScore] = field(default_factory=list)

    def add(self, s: ImageScore) -> None:
        self.images.append(s)

    @property
    def recall(self) -> float:
        tp = sum(s.tp for s in self.images)
        return tp / max(tp + sum(s.fn for s in self.images), 1)

    @property
    def recall_all(self) -> float:
        found = sum(s.tp + s.hard_found for s in self.images)
        return found / max(sum(s.tp + s.fn + s.hard_total for s in self.images), 1)

    @property
    def precision(self) -> float:
        tp = sum(s.tp + s.hard_found for s in self.images)
        return tp / max(tp + sum(s.fp for s in self.images), 1)

    def summary(self) -> dict[str, float]:
        ratios = [r for s in self.images for r in s.height_ratios]
        return {"recall": self.recall, "recall_incl_hard": self.recall_all, "precision": self.precision,
                "people": sum(s.tp + s.fn for s in self.images),
                "hard_people": sum(s.hard_total for s in self.images),
                "false_positives": sum(s.fp for s in self.images),
                "giant_bodies": sum(s.giant for s in self.images),
                "height_ratio_median": float(np.median(ratios)) if ratios else float("nan"),
                **(IdentityScore.total(self.identities).summary() if self.identities else {})}


@dataclass
class IdentityScore:
    """How steadily a clip's people keep one id: over the frames where a person is found, ``switches`` counts
    the frames whose id differs from the person's previous one, ``extra_ids`` the ids a person had beyond the
    first, over ``found`` person-frames. A churning tracker (a person's crop lost and found again under a new id,
    two people's ids swapped) raises both; the recall of the same frames does not see it."""

    switches: int = 0
    extra_ids: int = 0
    found: int = 0
    people: int = 0

    @classmethod
    def of_clip(cls, frames: list[ImageScore], ids: list[np.ndarray]) -> IdentityScore:
        """``ids[f][k]``: the id of prediction k on frame f (the frames' ``matched`` name the predictions)."""
        seen: dict[int, list[int]] = {}
        for score, frame_ids in zip(frames, ids, strict=True):
            for person, pred in score.matched.items():
                seen.setdefault(person, []).append(int(frame_ids[pred]))
        out = cls(people=len(seen))
        for track in seen.values():
            out.found += len(track)
            out.switches += sum(a != b for a, b in pairwise(track))
            out.extra_ids += len(set(track)) - 1
        return out

    @classmethod
    def total(cls, parts: list[IdentityScore]) -> IdentityScore:
        return cls(*(sum(getattr(p, k) for p in parts) for k in ("switches", "extra_ids", "found", "people")))

    def summary(self) -> dict[str, float]:
        return {"id_switches": self.switches, "id_switches_per_100": 100.0 * self.switches / max(self.found, 1),
                "extra_ids": self.extra_ids, "ids_per_person": 1.0 + self.extra_ids / max(self.people, 1)}


def zoomed(photo: np.ndarray, im: dict, zoom: float) -> tuple[np.ndarray, dict]:
    """The photo as a camera ``zoom`` times closer would see it (same size), and its annotation moved along.

    The window is centred across on the people and starts just above the highest head, as a closer webcam frames
    its user: the bodies are cut by the bottom edge. A person left with under a quarter of their box in the
    picture counts as hard."""
    if zoom == 1.0:
        return photo, im
    h, w = photo.shape[:2]
    people = np.array([p["box"] for p in im["people"]], np.float64).reshape(-1, 4)
    cw, ch = w / zoom, h / zoom
    x0 = float(np.clip((people[:, 0].min() + people[:, 2].max()) / 2 - cw / 2, 0, w - cw))
    y0 = float(np.clip(people[:, 1].min() - 0.05 * ch, 0, h - ch))
    return _view(photo, im, zoom, x0, y0)


def camera_view(photo: np.ndarray, im: dict, width: int, height: int) -> tuple[np.ndarray, dict]:
    """The photo as a ``width`` x ``height`` camera framing its people sees it: cut to the camera's aspect (the
    centre columns of a photo wider than the camera, the top rows of a taller one: a camera is aimed so that heads
    are in the picture, and a portrait's head is at its top), scaled to its size, and the annotation moved along
    (people left with under a quarter of their box in the picture count as hard).

    Why: a webcam's usual 640x480 is both smaller and narrower than a photo, so a group at a webcam fills the
    picture edge to edge, cut at the sides as well as the bottom; scaling the whole photo keeps its roomier
    framing. (Cut about its centre, a 16:9 view of a head-and-shoulders portrait lost the eyes.)"""
    h, w = photo.shape[:2]
    if w * height > h * width:  # wider than the camera: keep the centre columns
        cw, ch = h * width / height, float(h)
    else:
        cw, ch = float(w), w * height / width
    x0, y0 = (w - cw) / 2.0, 0.0
    rows, cols = slice(round(y0), round(y0 + ch)), slice(round(x0), round(x0 + cw))
    frame = cv2.resize(photo[rows, cols], (width, height), interpolation=cv2.INTER_AREA)
    return frame, _moved(im, x0, y0, width / cw, width, height)


def swayed(photo: np.ndarray, im: dict, index: int) -> tuple[np.ndarray, dict]:
    """Frame ``index`` of the photo played as a webcam-like clip (same size), and its annotation moved along.

    Why: a still photo tells how a person is found, not how they are followed; a clip made from it does, with a
    truth for every frame. The view zooms slowly between 1.04x and 1.2x around the centre and sways by a few pixels
    (6 across, 3 up and down), as a camera held or bumped by its user does."""
    h, w = photo.shape[:2]
    zoom = 1.12 + 0.08 * np.sin(index / 15.0)
    dx, dy = 6.0 * np.sin(index / 5.0), 3.0 * np.cos(index / 7.0)
    return _view(photo, im, zoom, (w * (zoom - 1.0) / 2.0 + dx) / zoom, (h * (zoom - 1.0) / 2.0 + dy) / zoom)


def mirrored(photo: np.ndarray, im: dict) -> tuple[np.ndarray, dict]:
    """The photo flipped left to right, and its annotation with it: another view of the same people for the clip
    modes (the networks are not mirror-symmetric, and a tracked clip's outcome turns on single decisions, so a
    second take of each photo halves the noise of a comparison between two builds)."""
    w = photo.shape[1]

    def flip(b):
        return [w - b[2], b[1], w - b[0], b[3]]

    return (np.ascontiguousarray(photo[:, ::-1]),
            {**im, "people": [{**p, "box": flip(p["box"])} for p in im["people"]],
             "ignore": [flip(r) for r in im.get("ignore", [])]})


def _view(photo: np.ndarray, im: dict, zoom: float, x0: float, y0: float) -> tuple[np.ndarray, dict]:
    """The photo magnified ``zoom`` times from its point (x0, y0) at the top-left, same size, and the annotation
    moved along (see :func:`_moved`)."""
    h, w = photo.shape[:2]
    frame = cv2.warpAffine(photo, np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]]), (w, h),
                           flags=cv2.INTER_LINEAR)
    return frame, _moved(im, x0, y0, zoom, w, h)


def _moved(im: dict, x0: float, y0: float, k: float, w: int, h: int) -> dict:
    """The annotation of a view whose top-left is the photo's (x0, y0), scaled ``k`` times, ``w`` x ``h``: boxes
    clipped to it, people outside it dropped, and people left with under a quarter of their box in it hard."""

    def moved(b):
        b = (np.asarray(b, np.float64) - [x0, y0, x0, y0]) * k
        return b, np.clip(b, 0, [w, h, w, h])

    def area(b):
        return max(b[2] - b[0], 0) * max(b[3] - b[1], 0)

    out = []
    for p in im["people"]:
        full, vis = moved(p["box"])
        if area(vis) > 0:
            out.append({"box": vis.tolist(), "hard": bool(p.get("hard", False)) or area(vis) < 0.25 * area(full)})
    return {**im, "people": out, "ignore": [moved(r)[1].tolist() for r in im.get("ignore", [])]}
