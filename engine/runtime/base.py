"""One inference interface, several interchangeable backends (TensorRT, ONNX Runtime, PyTorch eager).

A backend only maps a preprocessed batch to the three official output maps; decoding stays on the host so every
backend is judged on the same numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

OUTPUT_NAMES = ("center_map", "joint_maps", "params_maps")
INPUT_NAME = "images"


@dataclass(frozen=True)
class BackendSpec:
    """What a backend runs: name (tensorrt/onnxruntime/torch), device, precision, input size and a short note
    (e.g. the execution provider actually used, or why a faster backend was not picked)."""

    name: str
    device: str
    precision: str
    input_size: int
    note: str = ""


class Backend(ABC):
    """``infer(batch)``: float32 [B, 3, S, S] RGB 0..255 -> {center_map, joint_maps, params_maps} as numpy."""

    spec: BackendSpec

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def warmup(self, runs: int = 1) -> None:
        dummy = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
        for _ in range(runs):
            self.infer(dummy)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release native resources (sessions, CUDA contexts)."""
