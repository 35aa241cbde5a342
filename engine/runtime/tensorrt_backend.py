"""TensorRT engine backend (NVIDIA GPUs only; TensorRT is never installed on the CPU machines or in CI).

Everything TensorRT-specific is imported lazily, so this module imports fine anywhere and fails with one clear line
when used without TensorRT or a GPU. Buffers are torch CUDA tensors (no pycuda). The TensorRT 8 binding API and
the TensorRT 10 named-tensor API live in one adapter, :class:`_TrtIO`, chosen by feature detection. An engine file
carries a JSON header (see :mod:`engine.runtime.meta`) and is refused when it was built for another TensorRT
version, another GPU, or another ONNX model: serialized engines are not portable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ModelFileError
from .base import INPUT_NAME, OUTPUT_NAMES, Backend, BackendSpec
from .meta import read_engine_file

__all__ = ["MIN_TENSORRT", "TensorRTBackend", "gpu_name", "import_tensorrt", "tensorrt_status"]

log = logging.getLogger(__name__)

MIN_TENSORRT = (8, 5)  # named-tensor API and OBEY_PRECISION_CONSTRAINTS both exist from here
# releases where per-layer precision was reported to be ignored (NVIDIA/TensorRT#3941): FP32 islands may not hold
SUSPECT_TENSORRT = ("10.0.",)
_INSTALL_HINT = "pip install -r requirements-gpu.txt on a machine with an NVIDIA GPU"


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".")[:2] if p.isdigit())


def import_tensorrt() -> Any:
    """``import tensorrt`` or a one-line :class:`BackendError` (missing, broken libs, too old)."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendError(f"TensorRT is not available ({e.msg if hasattr(e, 'msg') else e}); {_INSTALL_HINT}, "
                           "or use --backend onnxruntime") from e
    except OSError as e:  # wheel present but libnvinfer missing
        raise BackendError(f"TensorRT is installed but its libraries do not load ({e}); {_INSTALL_HINT}") from e
    if _version_tuple(trt.__version__) < MIN_TENSORRT:
        raise BackendError(f"TensorRT {trt.__version__} is too old; need >= {'.'.join(map(str, MIN_TENSORRT))}")
    if trt.__version__.startswith(SUSPECT_TENSORRT):
        log.warning("TensorRT %s: layer precision constraints were reported ignored in this release "
                    "(NVIDIA/TensorRT#3941); check FP16 parity or upgrade", trt.__version__)
    return trt


def require_cuda(device: str = "cuda:0") -> Any:
    """torch with a visible CUDA device, or a one-line :class:`BackendError`."""
    import torch

    if not torch.cuda.is_available():
        raise BackendError("no NVIDIA GPU visible (torch.cuda.is_available() is False); TensorRT needs one — "
                           "use --backend onnxruntime on this machine")
    torch.cuda.get_device_properties(torch.device(device))  # raises for a bad index
    return torch


def gpu_name(device: str = "cuda:0") -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def tensorrt_status(device: str = "cuda:0") -> tuple[bool, str]:
    """(usable, reason) without raising: for ``--backend auto`` to explain its choice."""
    try:
        trt = import_tensorrt()
        require_cuda(device)
    except BackendError as e:
        return False, str(e)
    return True, f"TensorRT {trt.__version__} on {gpu_name(device)}"


class _TrtIO:
    """One view over TensorRT 8's binding API and TensorRT 10's named-tensor API (detected, not version-parsed)."""

    def __init__(self, engine: Any, trt: Any) -> None:
        self.engine, self.trt = engine, trt
        self.tensor_api = not hasattr(engine, "num_bindings")  # TRT 10 removed bindings
        if self.tensor_api:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        else:
            names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
            self.inputs = [n for i, n in enumerate(names) if engine.binding_is_input(i)]
            self.dtypes = {n: np.dtype(trt.nptype(engine.get_binding_dtype(i))) for i, n in enumerate(names)}
        self.names = names
        self.outputs = [n for n in names if n not in self.inputs]

    def set_input_shape(self, ctx: Any, name: str, shape: tuple[int, ...]) -> None:
        if self.tensor_api:
            ok = ctx.set_input_shape(name, shape)
        else:
            ok = ctx.set_binding_shape(self.names.index(name), shape)
        if ok is False:
            raise ValueError(f"engine rejects input shape {shape} for {name} (outside its optimisation profile)")

    def shape(self, ctx: Any, name: str) -> tuple[int, ...]:
        dims = ctx.get_tensor_shape(name) if self.tensor_api else ctx.get_binding_shape(self.names.index(name))
        return tuple(int(d) for d in dims)

    def execute(self, ctx: Any, addresses: dict[str, int], stream_handle: int) -> None:
        if self.tensor_api:
            for n, ptr in addresses.items():
                ctx.set_tensor_address(n, ptr)
            ok = ctx.execute_async_v3(stream_handle)
        else:
            ok = ctx.execute_async_v2([addresses[n] for n in self.names], stream_handle)
        if not ok:
            raise BackendError("TensorRT execution failed (see the TensorRT log above)")


class TensorRTBackend(Backend):
    """Run an engine built by ``python -m export tensorrt``.

    Args:
        path: ``.engine`` file with our header.
        device: CUDA device.
        expect_onnx_sha256: if given, refuse an engine built from a different ONNX model.
    """

    def __init__(self, path: str | Path, device: str = "cuda:0", expect_onnx_sha256: str | None = None) -> None:
        trt = import_tensorrt()
        torch = require_cuda(device)
        self.path = Path(path)
        meta, blob = read_engine_file(self.path)
        here = {"tensorrt_version": trt.__version__, "gpu_name": gpu_name(device)}
        for key, now in here.items():
            if getattr(meta, key) != now:
                raise ModelFileError(f"{self.path} was built for {key.replace('_', ' ')} {getattr(meta, key)!r}, "
                                     f"this machine has {now!r}; engines are not portable — rebuild it")
        if expect_onnx_sha256 is not None and meta.onnx_sha256 != expect_onnx_sha256:
            raise ModelFileError(f"{self.path} was built from another ONNX model; rebuild it")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise ModelFileError(f"{self.path}: TensorRT could not deserialize the engine (corrupt file?); rebuild it")
        self.io = _TrtIO(self.engine, trt)
        if self.io.inputs != [INPUT_NAME] or sorted(self.io.outputs) != sorted(OUTPUT_NAMES):
            raise ModelFileError(f"{self.path}: engine I/O {self.io.inputs} -> {self.io.outputs} is not "
                                 f"{INPUT_NAME} -> {list(OUTPUT_NAMES)}; rebuild it from our ONNX export")
        self.context = self.engine.create_execution_context()
        self.meta, self._torch = meta, torch
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        in_dtype = self.io.dtypes[INPUT_NAME]
        precision = "fp16" if any(self.io.dtypes[n] == np.float16 for n in self.io.names) else meta.precision
        self.spec = BackendSpec("tensorrt", str(self.device), precision, meta.input_size,
                                note=f"TensorRT {trt.__version__}, {here['gpu_name']}, input {in_dtype}")

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        self.meta.check_batch(batch.shape, self.path.name)
        with torch.cuda.stream(self.stream):
            to = getattr(torch, str(self.io.dtypes[INPUT_NAME]))
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True).to(to)
            self.io.set_input_shape(self.context, INPUT_NAME, tuple(x.shape))
            outs = {name: torch.empty(self.io.shape(self.context, name), device=self.device,
                                      dtype=getattr(torch, str(self.io.dtypes[name]))) for name in self.io.outputs}
            addresses = {INPUT_NAME: x.data_ptr(), **{k: v.data_ptr() for k, v in outs.items()}}
            self.io.execute(self.context, addresses, self.stream.cuda_stream)
            host = {k: outs[k].float().cpu() for k in OUTPUT_NAMES}
        self.stream.synchronize()
        return {k: v.numpy() for k, v in host.items()}

    def close(self) -> None:
        self.context = self.engine = None
