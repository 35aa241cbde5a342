"""``open_backend``: the fastest backend that works on this machine and device, opening cached artifacts.

``backend="auto"`` tries, fastest first (each skip is logged and recorded in ``spec.note`` with its reason):

1. TensorRT (the tensorrt package and a CUDA GPU),
2. ONNX Runtime on its TensorRT/CUDA execution providers (only when onnxruntime-gpu is installed and the provider
   actually loads: a session that fell back to the CPU does not count),
3. torch on CUDA (FP16 with FP32 islands, CUDA graphs; :mod:`.torch_cuda`),
4. ONNX Runtime on the CPU,
5. torch on the CPU (eager FP32, the reference).

``device`` narrows the list: ``cpu`` keeps 4-5 and never initialises CUDA; ``cuda[:N]`` keeps 1-3 and fails with
one line when no GPU is visible; ``auto`` tries all. Artifacts (ONNX exports, engines) are looked up in the cache
by :mod:`.artifacts`; a miss is built by the exporter's registered builder, never by importing ``export`` here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import AppError, BackendError, ConfigError, ModelFileError
from .artifacts import cache_root, engine_for_onnx, onnx_for_checkpoint
from .base import Backend
from .device import Device, cuda_status, ort_gpu_providers, parse_device, require_cuda_device
from .formats import BACKENDS, format_for_path

__all__ = ["BACKENDS", "Candidate", "cache_root", "candidates", "engine_for_onnx", "onnx_for_checkpoint",
           "open_backend"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One step of the auto order: a backend on a device kind ("cpu" / "cuda")."""

    backend: str
    device: str

    def __str__(self) -> str:
        return f"{self.backend} ({self.device})"


AUTO_ORDER = (Candidate("tensorrt", "cuda"), Candidate("onnxruntime", "cuda"), Candidate("torch", "cuda"),
              Candidate("onnxruntime", "cpu"), Candidate("torch", "cpu"))


def candidates(backend: str, device: Device) -> tuple[Candidate, ...]:
    """The steps tried for ``backend`` on ``device``, in order."""
    steps = AUTO_ORDER if backend == "auto" else tuple(c for c in AUTO_ORDER if c.backend == backend)
    if device.kind != "auto":
        steps = tuple(c for c in steps if c.device == device.kind)
    if not steps:
        raise ConfigError(f"--backend {backend} does not run on --device {device}; use --device cuda or --backend "
                          "auto")
    return steps


def _cuda_device(device: Device) -> str:
    """The CUDA device to use: the given one, or cuda:0 for auto (a one-line BackendError without a GPU)."""
    return require_cuda_device(device if device.kind == "cuda" else Device("cuda", 0))


def _open_tensorrt(checkpoint: Path, cache_dir, threads: int, precision: str, device: Device) -> Backend:
    from .tensorrt_backend import TensorRTBackend, tensorrt_status

    ok, why = tensorrt_status()
    if not ok:
        raise BackendError(why)
    dev = _cuda_device(device)
    onnx_path, _, _ = onnx_for_checkpoint(checkpoint, cache_dir)
    path, onnx_sha, built = engine_for_onnx(onnx_path, cache_dir, precision=precision, device=dev)
    try:
        return TensorRTBackend(path, device=dev, expect_onnx_sha256=onnx_sha)
    except ModelFileError as e:
        if built:
            raise
        log.warning("cached engine refused (%s); rebuilding", e)
        path.unlink(missing_ok=True)
        path, onnx_sha, _ = engine_for_onnx(onnx_path, cache_dir, precision=precision, device=dev)
        return TensorRTBackend(path, device=dev, expect_onnx_sha256=onnx_sha)


def _open_ort(path: Path, threads: int, providers: tuple[str, ...], sha: str | None = None) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    opened = OnnxRuntimeBackend(path, intra_op_threads=threads, providers=providers, expect_checkpoint_sha256=sha)
    if providers[0] != "CPUExecutionProvider" and opened.spec.device != "cuda":
        opened.close()
        raise BackendError(f"ONNX Runtime's GPU providers {list(providers[:-1])} did not load (the session fell back "
                           "to the CPU); check the CUDA/cuDNN libraries onnxruntime-gpu needs")
    return opened


def _ort_providers(device_kind: str, device: Device) -> tuple[str, ...]:
    if device_kind == "cpu":
        return ("CPUExecutionProvider",)
    gpu = ort_gpu_providers()
    if not gpu:
        raise BackendError("onnxruntime-gpu is not installed (the installed onnxruntime has no CUDA provider)")
    ok, why = cuda_status(device.index if device.kind == "cuda" else 0)
    if not ok:
        raise BackendError(why)
    if device.index != 0:
        raise BackendError(f"ONNX Runtime runs on cuda:0 here, not {device}; use --backend torch for another GPU")
    return (*gpu, "CPUExecutionProvider")


def _open_onnxruntime(checkpoint: Path, cache_dir, threads: int, precision: str, device: Device,
                      device_kind: str = "cpu") -> Backend:
    providers = _ort_providers(device_kind, device)
    path, sha, built = onnx_for_checkpoint(checkpoint, cache_dir)
    try:
        return _open_ort(path, threads, providers, sha)
    except ModelFileError as e:
        if built:
            raise
        log.warning("cached ONNX refused (%s); re-exporting", e)
        path.unlink(missing_ok=True)
        path, sha, _ = onnx_for_checkpoint(checkpoint, cache_dir)
        return _open_ort(path, threads, providers, sha)


def _open_torch(checkpoint: Path, cache_dir, threads: int, precision: str, device: Device,
                device_kind: str = "cpu") -> Backend:
    from ..checkpoint import load_network

    if device_kind == "cuda":
        dev = _cuda_device(device)  # before loading the weights: fail fast without a GPU
        from .torch_cuda import TorchCudaBackend

        return TorchCudaBackend(load_network(checkpoint, system="instancehmr"), dev, fp16=precision == "fp16")
    from .torch_backend import TorchBackend

    return TorchBackend(load_network(checkpoint, system="instancehmr"), threads=threads)


_OPENERS: dict[str, Callable[..., Backend]] = {
    "tensorrt": lambda ckpt, cache, threads, precision, device, kind: _open_tensorrt(ckpt, cache, threads, precision,
                                                                                     device),
    "onnxruntime": _open_onnxruntime,
    "torch": _open_torch,
}


def _open_artifact(path: Path, threads: int, device: Device) -> Backend:
    fmt = format_for_path(str(path))
    if fmt is not None and fmt.backend == "onnxruntime":
        if device.kind == "cpu":
            return _open_ort(path, threads, ("CPUExecutionProvider",))
        if device.kind == "cuda":
            return _open_ort(path, threads, _ort_providers("cuda", device))
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, intra_op_threads=threads)
    if device.kind == "cpu":
        raise ConfigError(f"{path.name} is a TensorRT engine: it runs on a GPU only, not on --device cpu")
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, device=_cuda_device(device) if device.kind == "cuda" else "cuda:0")


def open_backend(checkpoint: str | Path, backend: str = "auto", cache_dir: str | Path | None = None, *,
                 threads: int = 2, precision: str = "fp16", device: str | Device = "auto") -> Backend:
    """Open ``checkpoint`` (a .pt/.pth/.pkl checkpoint, or an exported .onnx / .engine) on ``backend``.

    Args:
        backend: "auto" | "tensorrt" | "onnxruntime" | "torch".
        cache_dir: where exported artifacts are cached (see :func:`cache_root`).
        threads: CPU threads for ONNX Runtime (intra-op) or torch.
        precision: GPU precision (TensorRT engine, torch CUDA), "fp16" or "fp32"; CPU backends run FP32.
        device: "auto" | "cpu" | "cuda" | "cuda:N" (see :mod:`.device`).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if precision not in ("fp16", "fp32"):
        raise ConfigError(f"precision must be fp16 or fp32, got {precision!r}")
    dev = parse_device(device)
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path} (pass --checkpoint with a weights file)")
    if path.suffix.lower() in (".onnx", ".engine"):
        wanted = "onnxruntime" if path.suffix.lower() == ".onnx" else "tensorrt"
        if backend not in ("auto", wanted):
            raise ConfigError(f"{path.name} runs on {wanted}, not {backend}; pass the checkpoint instead")
        return _open_artifact(path, threads, dev)
    steps = candidates(backend, dev)
    skipped: list[str] = []
    for i, step in enumerate(steps):
        try:
            opened = _OPENERS[step.backend](path, cache_dir, threads, precision, dev, step.device)
        except AppError as e:
            # an explicit device or backend with one step left reports that step's own reason
            if isinstance(e, ConfigError) or i == len(steps) - 1:
                if skipped and not isinstance(e, ConfigError):
                    log.info("backend: every step failed (%s)", "; ".join(skipped))
                raise
            if isinstance(e, ModelFileError) and step.backend == "torch":
                raise  # the checkpoint itself is bad: no other step can read it either
            skipped.append(f"{step} skipped: {e}")
            log.info("auto backend: %s skipped: %s", step, e)
            continue
        if len(steps) > 1:
            why = "; ".join(skipped) if skipped else "fastest available"
            opened.spec = replace(opened.spec, note=f"{opened.spec.note}; auto picked {step} ({why})")
            log.info("backend: %s (%s)", step, opened.spec.note)
        return opened
    raise ConfigError(f"no backend could be opened for {path}")  # not reached: the last failure re-raises
