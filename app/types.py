"""Plain data passed between the pipeline, the sinks and the UI (numpy only: the UI imports this, never torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.types import Letterbox, Meshes, People

    from .capture import Frame


@dataclass
class LiveSettings:
    """Settings the UI may change while running (plain attribute writes are atomic in CPython)."""

    threshold: float = 0.2
    max_people: int = 64
    smooth: bool = True
    smooth_strength: float = 1.0
    show_mesh: bool = True
    show_skeleton: bool = False
    show_centers: bool = False
    opacity: float = 0.8


@dataclass
class PipelineCfg:
    """Args:
    live: latest-frame capture and drop-oldest render queue (cameras/streams, or a file played in the window).
    pace: play a file at its frame rate (window without recording).
    render: draw overlays (off for headless runs with no video output).
    max_frames: stop after this many frames (0 = all).
    temporal: frames form a sequence (tracking memory and smoothing); False for image lists, whose images are
        unrelated (IDs restart per image and nothing is smoothed across images).
    live_faces: optional lower-resolution face list for overlays.
    coarse_faces: a coarser list still, for people who are small on screen.
    """

    live: bool = False
    pace: bool = False
    render: bool = True
    max_frames: int = 0
    temporal: bool = True
    queue_size: int = 4
    live_faces: np.ndarray | None = None
    coarse_faces: np.ndarray | None = None


@dataclass
class FrameOutput:
    """One processed frame as handed to sinks and the consumer."""

    frame: Frame
    people: People
    meshes: Meshes | None
    box: Letterbox
    overlay: np.ndarray | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0


@dataclass
class PeoplePacket:
    """What the model stage hands the render stage for one frame: the frame, its tracked (and smoothed) people,
    the letterbox they were found in, and the stage timings so far (the render stage adds its own)."""

    frame: Frame
    people: People
    box: Letterbox
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class RecordRequest:
    path: Path
    fps: float
    block: bool
    timed: bool
