"""What the window asks of the rest of the app, as plain data and one protocol.

The window never imports torch, a backend or the engine (their imports alone take seconds and would make every
widget test slow); the composition root (:mod:`app.gui`) implements :class:`Services` and hands it in. Everything
here is plain Python so a test can hand in a fake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..session import Session
    from ..types import FrameOutput
    from .history import ClipHistory

Progress = Callable[[int, int], None]  # (done, total); total 0 = unknown


@dataclass(frozen=True)
class InputChoice:
    """A new input: a file/folder path or a camera index (exactly one)."""

    path: str | None = None
    camera: int | None = None

    @property
    def label(self) -> str:
        return f"camera {self.camera}" if self.camera is not None else str(self.path)


@dataclass(frozen=True)
class ModelChoice:
    """Which people model runs, on what.

    Attributes:
        model: "realfootage", "demo" or "instancehmr" (a checkpoint file).
        checkpoint: the weights file for "instancehmr" (None otherwise).
        backend: "auto", "tensorrt", "onnxruntime" or "torch" (realfootage: auto/onnxruntime only).
        landmarks: realfootage landmark network, "full", "lite" or "mixed" (full finds people, lite follows).
    """

    model: str
    checkpoint: str | None = None
    backend: str = "auto"
    landmarks: str = "mixed"


class Services(Protocol):
    backends: tuple[str, ...]
    live_faces: int

    def model_choice(self, session: Session) -> ModelChoice: ...

    def build(self, current: Session, callbacks: tuple[Callable, Callable], source: InputChoice | None = None,
              model: ModelChoice | None = None) -> Session:
        """A new, not started session like ``current`` with another input and/or model; raises with a one-line
        message when it cannot be opened. Sessions built here write no command-line outputs (those belong to the
        run they were given for and are finalised when it is replaced)."""
        ...

    def probe_cameras(self, indices: range, skip: int | None) -> list[int]: ...

    def set_live_faces(self, session: Session, budget: int) -> None: ...

    def export_npz(self, history: ClipHistory, folder: Path, progress: Progress) -> list[Path]: ...

    def export_meshes(self, out: FrameOutput, folder: Path, fmt: str) -> list[Path]: ...

    def animation_unavailable(self) -> str:
        """Why animation export cannot run ("" when it can)."""
        ...

    def export_animation(self, session: Session, history: ClipHistory, folder: Path,
                         progress: Progress) -> list[Path]:
        """BVH per track and one animated glb of the clip so far."""
        ...
