"""``--device auto|cpu|cuda[:N]``: parsed once, checked with one clear line, shared by every backend.

``cpu`` must never initialise CUDA (a CPU run on a GPU box should not pay for a CUDA context, and must behave the
same as on a box without one), so nothing here touches ``torch.cuda`` unless the device asks for CUDA or ``auto``
probes for it. ONNX Runtime's GPU providers are only requested when the installed onnxruntime actually lists them:
the CPU-only wheel never does, and onnxruntime-gpu lists them even when their libraries fail to load, which
:func:`engine.runtime.graph.create_session` detects after the session is created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BackendError, ConfigError

__all__ = ["DEVICE_CHOICES_HELP", "Device", "cuda_status", "ort_gpu_providers", "parse_device", "providers_for",
           "require_cuda_device", "resolve_torch_device"]

DEVICE_CHOICES_HELP = "auto | cpu | cuda | cuda:N"
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """kind: "auto", "cpu" or "cuda"; index: the CUDA ordinal (0 unless given)."""

    kind: str
    index: int = 0

    @property
    def torch(self) -> str:
        """The torch device string ("cpu" / "cuda:N"); auto has none until resolved."""
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    def __str__(self) -> str:
        return self.kind if self.kind != "cuda" else f"cuda:{self.index}"


def parse_device(text: str | Device | None) -> Device:
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> :class:`Device`; anything else is a ConfigError."""
    if isinstance(text, Device):
        return text
    value = (text or "auto").strip().lower()
    if value in ("auto", "cpu"):
        return Device(value)
    m = _CUDA.match(value)
    if m is None:
        raise ConfigError(f"unknown device {text!r}; expected {DEVICE_CHOICES_HELP}")
    return Device("cuda", int(m.group(1) or 0))


def cuda_status(index: int = 0) -> tuple[bool, str]:
    """(usable, why not): torch sees a CUDA device with this ordinal."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a hard dependency
        return False, f"torch is not importable ({e})"
    if not torch.cuda.is_available():
        return False, "no CUDA device: torch.cuda.is_available() is False"
    count = torch.cuda.device_count()
    if index >= count:
        return False, f"no CUDA device {index}: torch sees {count} (cuda:0..cuda:{count - 1})"
    return True, ""


def require_cuda_device(device: Device) -> str:
    """The torch device string of a CUDA :class:`Device`, or a one-line BackendError saying what to do."""
    ok, why = cuda_status(device.index)
    if not ok:
        raise BackendError(f"{why}; use --device cpu")
    return device.torch


def resolve_torch_device(device: str | Device | None) -> str:
    """The torch device a choice means: auto -> cuda:0 when torch sees a GPU, else cpu; cuda[:N] must exist."""
    dev = parse_device(device)
    if dev.kind == "cpu":
        return "cpu"
    if dev.kind == "auto":
        return "cuda:0" if cuda_status(0)[0] else "cpu"
    return require_cuda_device(dev)


def ort_gpu_providers() -> tuple[str, ...]:
    """The GPU execution providers the installed onnxruntime offers (empty for the CPU-only wheel)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    have = set(ort.get_available_providers())
    return tuple(p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have)


def providers_for(device: str | Device | None) -> tuple[str, ...] | None:
    """ONNX Runtime providers for a device choice: cpu -> CPU only; cuda -> the GPU providers (then CPU, which ORT
    needs for the few ops a GPU provider does not take); auto -> None (= every provider present, fastest first)."""
    dev = parse_device(device)
    if dev.kind == "cpu":
        return ("CPUExecutionProvider",)
    if dev.kind == "auto":
        return None
    gpu = ort_gpu_providers()
    if not gpu:
        raise BackendError("ONNX Runtime has no CUDA provider here (the onnxruntime wheel is CPU-only); install "
                           "onnxruntime-gpu, or use --device cpu")
    return (*gpu, "CPUExecutionProvider")
