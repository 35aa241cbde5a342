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

from ..errors import ModelFileError
from .base import INPUT_NAME, OUTPUT_NAMES, Backend, BackendSpec
from .graph import DEFAULT_PROVIDERS, create_session, device_of
from .meta import META_KEY, ArtifactMeta

__all__ = ["DEFAULT_PROVIDERS", "OnnxRuntimeBackend"]

log = logging.getLogger(__name__)


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
        self.path = Path(path)
        hint = "export one with `python -m export onnx --checkpoint CKPT --output M.onnx`"
        self.session, used, note = create_session(self.path, intra_op_threads, inter_op_threads, providers, hint)
        self.meta = self._read_meta()
        if expect_checkpoint_sha256 is not None and self.meta.checkpoint_sha256 != expect_checkpoint_sha256:
            raise ModelFileError(f"{self.path} was exported from another checkpoint (sha256 "
                                 f"{self.meta.checkpoint_sha256[:12] or '?'} != {expect_checkpoint_sha256[:12]}); "
                                 "re-export it")
        self._check_io()
        self.providers = used
        fp = "fp16" if self.session.get_inputs()[0].type == "tensor(float16)" else self.meta.precision
        self.spec = BackendSpec("onnxruntime", device_of(used[0]), fp, self.meta.input_size, note)
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
