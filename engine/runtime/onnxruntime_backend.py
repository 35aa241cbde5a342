"""ONNX Runtime backend: the fastest FP32 path on the project's CPUs, and the GPU path through the CUDA/TensorRT
execution providers when onnxruntime-gpu is installed.

The session is configured from the model's own metadata (input size, batch range), never from flags, and the
providers actually used are read from ``session.get_providers()`` after creation: onnxruntime-gpu lists CUDA/TensorRT
as *available* even when their libraries fail to load, then silently runs on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import BackendError, ModelFileError
from .base import INPUT_NAME, OUTPUT_NAMES, Backend, BackendSpec
from .meta import META_KEY, ArtifactMeta

__all__ = ["DEFAULT_PROVIDERS", "OnnxRuntimeBackend"]

log = logging.getLogger(__name__)

# preference order; only the ones compiled into the installed onnxruntime are requested
DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_DEVICE = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}


class OnnxRuntimeBackend(Backend):
    """Run an exported ``.onnx`` (see ``python -m export onnx``).

    Args:
        path: the ONNX file (must carry our metadata).
        intra_op_threads: threads inside one op (default 2 = the project CPU; try 1 when render/capture share it).
        inter_op_threads: threads across ops (1: the graph is a chain, parallel ops only add contention).
        providers: requested execution providers in order; None = every GPU provider present, then CPU.
        expect_checkpoint_sha256: if given, refuse a model exported from a different checkpoint.
    """

    def __init__(self, path: str | Path, intra_op_threads: int = 2, inter_op_threads: int = 1,
                 providers: Sequence[str] | None = None, expect_checkpoint_sha256: str | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"ONNX model not found: {self.path} (export one with "
                                 "`python -m export onnx --checkpoint CKPT --output M.onnx`)")
        available = set(ort.get_available_providers())
        wanted = [p for p in (providers or DEFAULT_PROVIDERS) if p in available]
        if not wanted:
            raise BackendError(f"none of the requested ONNX Runtime providers {list(providers or [])} is available "
                               f"(installed: {sorted(available)})")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # provider load failures are reported through get_providers() below
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=wanted)
        except Exception as e:  # ORT raises Fail/InvalidProtobuf/InvalidGraph/NotImplemented (pybind types)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise ModelFileError(f"{self.path} is not a loadable ONNX model ({type(e).__name__}: {first}); "
                                 "re-export it with `python -m export onnx --checkpoint CKPT`") from e
        self.meta = self._read_meta()
        if expect_checkpoint_sha256 is not None and self.meta.checkpoint_sha256 != expect_checkpoint_sha256:
            raise ModelFileError(f"{self.path} was exported from another checkpoint (sha256 "
                                 f"{self.meta.checkpoint_sha256[:12] or '?'} != {expect_checkpoint_sha256[:12]}); "
                                 "re-export it")
        self._check_io()
        used = self.session.get_providers()
        if wanted[0] != used[0]:
            log.warning("ONNX Runtime could not use %s; running on %s", wanted[0], used[0])
        self.providers = tuple(used)
        fp = "fp16" if self.session.get_inputs()[0].type == "tensor(float16)" else self.meta.precision
        note = f"{used[0]}, intra_op={intra_op_threads}"
        if wanted[0] != used[0]:
            note += f" ({wanted[0]} failed to load)"
        self.spec = BackendSpec("onnxruntime", _DEVICE.get(used[0], used[0]), fp, self.meta.input_size, note)
        self._fp16_input = fp == "fp16" and self.session.get_inputs()[0].type == "tensor(float16)"

    def _read_meta(self) -> ArtifactMeta:
        custom = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in custom:
            raise ModelFileError(f"{self.path} has no {META_KEY!r} metadata (not exported by this app); re-export it "
                                 "with `python -m export onnx --checkpoint CKPT`")
        return ArtifactMeta.from_json(custom[META_KEY], str(self.path))

    def _check_io(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        names_in, names_out = [i.name for i in inputs], [o.name for o in outputs]
        if names_in != [INPUT_NAME] or sorted(names_out) != sorted(OUTPUT_NAMES):
            raise ModelFileError(f"{self.path}: graph I/O {names_in} -> {names_out} does not match the metadata "
                                 f"({INPUT_NAME} -> {list(OUTPUT_NAMES)}); re-export it")
        shape = inputs[0].shape
        s = self.meta.input_size
        if len(shape) != 4 or list(shape[1:]) != [3, s, s]:
            raise ModelFileError(f"{self.path}: input shape {shape} does not match the metadata input size {s} "
                                 "(expected [B, 3, S, S]); re-export it")

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float16 if self._fp16_input else np.float32)
        self.meta.check_batch(batch.shape, self.path.name)
        outs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return {k: v.astype(np.float32, copy=False) for k, v in zip(OUTPUT_NAMES, outs)}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]  # frees the native session
