"""The one table of export formats, shared by the exporter CLI and the runtime's ``open_backend``.

A new format is one row here, one ``export/<fmt>.py`` and one backend in ``engine/runtime``: nothing else switches
on the format.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FORMATS", "Format", "format_for_path"]


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
    "torch": Format("torch", ".pt", "torch", True, True, "PyTorch checkpoint (eager reference)"),
    "onnx": Format("onnx", ".onnx", "onnxruntime", True, True, "ONNX, FP32 (or FP16 proxy), ONNX Runtime"),
    "tensorrt": Format("tensorrt", ".engine", "tensorrt", False, True, "TensorRT engine with JSON header"),
}


def format_for_path(path: str) -> Format | None:
    """The format whose suffix ``path`` ends with (checkpoints: .pt/.pth/.pkl all map to torch)."""
    low = str(path).lower()
    if low.endswith((".pth", ".pkl")):
        return FORMATS["torch"]
    return next((f for f in FORMATS.values() if low.endswith(f.suffix)), None)
