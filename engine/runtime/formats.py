"""The one table of artifact formats and the backends that open them, shared by the runtime, the exporter CLI and
the app's ``--backend`` choices.

A new format is one row here, one ``export/<fmt>.py`` and one backend in ``engine/runtime``: nothing else switches
on the format. Rows are ordered fastest first, which is also the order ``--backend auto`` tries them in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BACKENDS", "DEVICES", "FORMATS", "Format", "format_for_path"]


@dataclass(frozen=True)
class Format:
    """name: CLI sub-command; suffix: artifact file suffix; backend: runtime that opens it; cpu/gpu: where it runs."""

    name: str
    suffix: str
    backend: str
    cpu: bool
    gpu: bool
    description: str


FORMATS: dict[str, Format] = {
    "tensorrt": Format("tensorrt", ".engine", "tensorrt", False, True, "TensorRT engine with JSON header"),
    "onnx": Format("onnx", ".onnx", "onnxruntime", True, True, "ONNX, FP32 (or FP16 proxy), ONNX Runtime"),
    "torch": Format("torch", ".pt", "torch", True, True, "PyTorch checkpoint (eager, or CUDA graphs on a GPU)"),
}

BACKENDS: tuple[str, ...] = ("auto", *dict.fromkeys(f.backend for f in FORMATS.values()))
DEVICES = ("auto", "cpu", "cuda")  # plus cuda:N; see engine.runtime.device


def format_for_path(path: str) -> Format | None:
    """The format whose suffix ``path`` ends with (checkpoints: .pt/.pth/.pkl all map to torch)."""
    low = str(path).lower()
    if low.endswith((".pth", ".pkl")):
        return FORMATS["torch"]
    return next((f for f in FORMATS.values() if low.endswith(f.suffix)), None)
