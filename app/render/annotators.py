"""Composable overlay annotators: ``annotate(frame, scene) -> frame`` (drawing is in place).

Style goes in the constructor, data in the call; the render stage is an ordered list of annotators and copies
the frame once before running them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from engine.types import Letterbox, Meshes, People

from .colors import track_color
from .projection import person_boxes

# SMPL-24 kinematic tree (parent of each joint); the first 24 output joints of every body model follow it.
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


@dataclass
class Scene:
    """What the annotators draw: the people (smoothed, with track IDs), their meshes and the frame geometry."""

    people: People
    meshes: Meshes | None
    box: Letterbox


class Annotator(ABC):
    @abstractmethod
    def annotate(self, frame: np.ndarray, scene: Scene) -> np.ndarray:
        """Draw onto ``frame`` in place and return it."""


class SkeletonAnnotator(Annotator):
    """2D SMPL-24 skeletons from ``Meshes.pj2d_org`` in each track's colour."""

    def __init__(self, thickness: int = 2, joint_radius: int = 3) -> None:
        self.thickness = thickness
        self.joint_radius = joint_radius

    def annotate(self, frame: np.ndarray, scene: Scene) -> np.ndarray:
        if scene.meshes is None or len(scene.meshes) == 0:
            return frame
        pj = scene.meshes.pj2d_org[:, :24]
        for i, tid in enumerate(scene.people.track_ids):
            color = tuple(int(c * 0.6) for c in track_color(int(tid)))
            pts = np.round(pj[i]).astype(np.int32)
            lines = [np.stack([pts[j], pts[p]]) for j, p in enumerate(SMPL_PARENTS) if p >= 0]
            cv2.polylines(frame, lines, False, color, self.thickness, cv2.LINE_AA)
            for x, y in pts:
                cv2.circle(frame, (int(x), int(y)), self.joint_radius, (255, 255, 255), -1, cv2.LINE_AA)
        return frame


class CenterAnnotator(Annotator):
    """Body-centre dots with the track ID and score, so users can see what the tracker decided."""

    def __init__(self, radius: int = 5, labels: bool = True) -> None:
        self.radius = radius
        self.labels = labels

    def annotate(self, frame: np.ndarray, scene: Scene) -> np.ndarray:
        p = scene.people
        if len(p) == 0:
            return frame
        centers, _ = person_boxes(p.cam, scene.box)
        for (x, y), tid, conf in zip(centers, p.track_ids, p.center_confs):
            c = (int(np.rint(x)), int(np.rint(y)))
            color = track_color(int(tid))
            cv2.circle(frame, c, self.radius + 2, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(frame, c, self.radius, color, -1, cv2.LINE_AA)
            if self.labels:
                text = f"#{tid} {conf:.2f}" if tid >= 0 else f"{conf:.2f}"
                org = (c[0] + self.radius + 3, c[1] - self.radius - 3)
                cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
        return frame

