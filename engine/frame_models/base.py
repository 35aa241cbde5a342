"""The one model interface of the app: a frame in, people out.

Two kinds of systems sit behind it: the bottom-up InstanceHMR network (one pass over the letterboxed frame, people
decoded from its maps) and the real-footage default (a person detector, per-person landmarks, inverse kinematics to
the body model). The pipeline, the benchmark and the tests only see :class:`PeopleModel`, so tracking, smoothing,
rendering, recording and exports are the same whichever model runs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from ..types import Letterbox, People

__all__ = ["FramePeople", "ModelInfo", "PeopleModel", "PeopleQuery"]


@dataclass(frozen=True)
class ModelInfo:
    """What runs, for the window title, the HUD and the logs.

    Attributes:
        name: short id ("realfootage", "instancehmr").
        label: human name ("BlazePose landmarks + IK", "InstanceHMR mobilenetv3@256").
        backend: where it runs ("onnxruntime cpu fp32").
        synthetic_demo: trained on synthetic renders only: the user is told so on real input.
        default_threshold: the person-score threshold this model is tuned for.
    """

    name: str
    label: str
    backend: str
    synthetic_demo: bool = False
    default_threshold: float = 0.2

    @property
    def title(self) -> str:
        demo = " (synthetic demo model: expect misses on real footage)" if self.synthetic_demo else ""
        return f"{self.label} · {self.backend}{demo}"


@dataclass(frozen=True)
class PeopleQuery:
    """Per-frame settings the user can change live: score threshold and the most people to return."""

    threshold: float = 0.2
    max_people: int = 64


@dataclass
class FramePeople:
    """People of one frame, with the geometry that maps their cameras to the frame and per-stage timings."""

    people: People
    box: Letterbox
    timings_ms: dict[str, float] = field(default_factory=dict)


class PeopleModel(abc.ABC):
    """Frame (BGR uint8 [H, W, 3]) in, :class:`FramePeople` out. May keep state across frames of one clip (ROI
    tracking); :meth:`reset` forgets it (a new clip, a seek, unrelated images)."""

    info: ModelInfo

    @abc.abstractmethod
    def __call__(self, frame_bgr: np.ndarray, query: PeopleQuery) -> FramePeople: ...

    def reset(self) -> None:  # noqa: B027 - stateless models need nothing
        """Forget what was seen in earlier frames."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources."""
