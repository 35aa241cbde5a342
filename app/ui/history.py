"""What the window's Export menu exports: the people of every frame processed so far in this session.

A pipeline sink (``add`` runs on the render thread). Frames are keyed by their index in the source, so seeking back
and playing a part again replaces those frames instead of duplicating them, and an export is always in source
order. Mesh vertices are not kept (a person-frame's vertices are ~80 KiB, a minute of video with five people would
be ~700 MiB); joints and their projections are, so a results export has everything ``--save-npz`` writes without
``--save-verts``. Live sources run forever, so at most ``max_frames`` frames are kept, dropping the oldest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..types import FrameOutput


@dataclass(frozen=True)
class HistoryFrame:
    index: int
    name: str
    people: object  # engine.types.People (not imported: the UI stays free of the engine)
    joints: np.ndarray | None
    pj2d_org: np.ndarray | None


class ClipHistory:
    """Args: stem (the input's name, for file names), fps (source frame rate), per_frame (image lists: one result
    file per image), max_frames (the most frames kept)."""

    def __init__(self, stem: str, fps: float, per_frame: bool = False, max_frames: int = 18000) -> None:
        self.stem = stem
        self.fps = fps
        self.per_frame = per_frame
        self.max_frames = max_frames
        self._frames: dict[int, HistoryFrame] = {}
        self._lock = threading.Lock()
        self.dropped = 0

    def add(self, frame_index: int, name: str, people, meshes) -> None:
        joints = pj2d = None
        if meshes is not None:
            joints, pj2d = meshes.joints, meshes.pj2d_org
        item = HistoryFrame(frame_index, name, people, joints, pj2d)
        with self._lock:
            self._frames[frame_index] = item
            if len(self._frames) > self.max_frames:
                del self._frames[min(self._frames)]
                self.dropped += 1

    def add_output(self, out: FrameOutput) -> None:
        self.add(out.frame.index, out.frame.name, out.people, out.meshes)

    def frames(self) -> list[HistoryFrame]:
        """A snapshot in source order (safe to use while the pipeline keeps adding)."""
        with self._lock:
            items = list(self._frames.values())
        return sorted(items, key=lambda f: f.index)

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def tracks(self) -> dict[int, int]:
        """Track id -> number of frames it appears in."""
        counts: dict[int, int] = {}
        for f in self.frames():
            for tid in np.asarray(f.people.track_ids).tolist():
                counts[int(tid)] = counts.get(int(tid), 0) + 1
        return counts
