"""Comparing backends where it matters: raw output maps and, above all, the decoded people.

Two backends agree when they find the same people (same centre cells) with close parameters; small differences in
the maps far from any centre do not matter to the app, a flipped peak does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.runtime.base import OUTPUT_NAMES
from engine.types import People

__all__ = ["PeopleDiff", "compare_maps", "compare_people"]


def compare_maps(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, float]]:
    """Per output: max |got - ref| and that divided by max |ref| (scale-free; per-element ratios explode near 0)."""
    abs_d, rel_d = {}, {}
    for k in OUTPUT_NAMES:
        a, b = np.asarray(got[k], np.float64), np.asarray(ref[k], np.float64)
        d = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
        abs_d[k], rel_d[k] = d, d / max(float(np.max(np.abs(b))), 1e-12)
    return abs_d, rel_d


@dataclass
class PeopleDiff:
    """Accumulated difference between reference and candidate decodings over a set of frames.

    ``matched`` people share a centre cell; ``missing`` are in the reference only, ``extra`` in the candidate only.
    Parameter errors are maxima over matched people: cam (s, tx, ty), pose (axis-angle, radians, root + body),
    betas, and the centre score.
    """

    frames: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    cam: float = 0.0
    pose: float = 0.0
    betas: float = 0.0
    score: float = 0.0

    @property
    def same_detections(self) -> bool:
        return self.missing == 0 and self.extra == 0

    def add(self, ref: People, got: People) -> PeopleDiff:
        self.frames += 1
        key_r = {tuple(np.round(c, 3)): i for i, c in enumerate(ref.center_preds)}
        key_g = {tuple(np.round(c, 3)): i for i, c in enumerate(got.center_preds)}
        common = sorted(set(key_r) & set(key_g))
        self.matched += len(common)
        self.missing += len(set(key_r) - set(key_g))
        self.extra += len(set(key_g) - set(key_r))
        if common:
            ir = np.array([key_r[k] for k in common])
            ig = np.array([key_g[k] for k in common])

            def err(a: np.ndarray, b: np.ndarray) -> float:
                return float(np.max(np.abs(a[ir].astype(np.float64) - b[ig]))) if a.size else 0.0

            self.cam = max(self.cam, err(ref.cam, got.cam))
            self.pose = max(self.pose, err(ref.smpl_thetas, got.smpl_thetas))
            self.betas = max(self.betas, err(ref.betas, got.betas))
            self.score = max(self.score, err(ref.center_confs, got.center_confs))
        return self

    def summary(self) -> str:
        return (f"{self.frames} frames: {self.matched} people matched, {self.missing} missing, {self.extra} extra; "
                f"max error cam {self.cam:.2e}, pose {self.pose:.2e} rad, betas {self.betas:.2e}, "
                f"score {self.score:.2e}")


def compare_people(refs: list[People], gots: list[People]) -> PeopleDiff:
    diff = PeopleDiff()
    for r, g in zip(refs, gots):
        diff.add(r, g)
    return diff


VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")


def load_frames(path: str, count: int, step: int = 1) -> list[np.ndarray]:
    """Up to ``count`` BGR frames from a video (every ``step``-th) or a single image; raises CaptureError."""
    import cv2

    from engine.errors import CaptureError

    if not str(path).lower().endswith(VIDEO_SUFFIXES):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise CaptureError(f"cannot read image {path}")
        return [img]
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CaptureError(f"cannot open video {path} (missing file? vtest.avi comes with apt-get install opencv-doc)")
    frames: list[np.ndarray] = []
    i = 0
    try:
        while len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(frame)
            i += 1
    finally:
        cap.release()
    if not frames:
        raise CaptureError(f"no frames could be decoded from {path}")
    return frames
