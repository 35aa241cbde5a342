"""Self-describing artifacts: the metadata every exported ONNX model and TensorRT engine carries.

The runtime configures itself from this record (input size, I/O names, batch range, model cfg) instead of trusting
command-line flags, and refuses an artifact whose schema, checkpoint hash or build machine does not match.
It is stored as JSON (ONNX ``metadata_props`` key ``instancehmr``; a length-prefixed header in front of a TensorRT
engine) and parsed with :mod:`json` only, never ``eval``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from .base import INPUT_NAME, OUTPUT_NAMES

__all__ = ["APP_VERSION", "ENGINE_MAGIC", "META_KEY", "SCHEMA", "ArtifactMeta", "read_engine_file",
           "write_engine_file"]

APP_VERSION = "0.1.0"  # keep in step with pyproject.toml [project].version
SCHEMA = 1  # bump when the artifact layout or the meaning of a field changes
META_KEY = "instancehmr"  # ONNX metadata_props key
ENGINE_MAGIC = b"IHMRTRT1"  # first bytes of our engine files; a bare trtexec engine lacks them
_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class ArtifactMeta:
    """What an exported artifact is and how it was made.

    Attributes:
        model_cfg: :meth:`engine.models.ModelCfg.to_dict` of the exported network.
        checkpoint_sha256: content hash of the source checkpoint ("" when exported from an in-memory model).
        batch: fixed batch size, or 0 for a dynamic batch dimension (then ``max_batch`` bounds it).
        max_batch: largest batch the artifact accepts.
        exporter: "legacy" (TorchScript) or "dynamo".
        opset: ONNX opset.
        precision: "fp32" | "fp16" (for FP16 graphs/engines the FP32 islands are listed in ``fp32_islands``).
        fp32_islands: names of the nodes/layers kept in FP32.
        onnx_sha256, tensorrt_version, gpu_name: engine cache key parts (TensorRT only).
    """

    model_cfg: dict[str, Any]
    checkpoint_sha256: str = ""
    batch: int = 1
    max_batch: int = 1
    exporter: str = "legacy"
    opset: int = 17
    precision: str = "fp32"
    input_name: str = INPUT_NAME
    output_names: tuple[str, ...] = OUTPUT_NAMES
    input_range: str = "RGB float32 0..255, normalised inside the graph"
    fp32_islands: tuple[str, ...] = ()
    onnx_sha256: str = ""
    tensorrt_version: str = ""
    gpu_name: str = ""
    app_version: str = APP_VERSION
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return int(self.model_cfg["input_size"])

    def check_batch(self, shape: tuple[int, ...], artifact: str) -> None:
        """Refuse a batch this artifact was not built for, before it reaches the runtime (clear one-line error)."""
        n, size = shape[0], self.input_size
        if tuple(shape[1:]) != (3, size, size):
            raise ValueError(f"expected a batch [B, 3, {size}, {size}], got {tuple(shape)}")
        if (self.batch and n != self.batch) or n > self.max_batch:
            raise ValueError(f"{artifact} accepts batch {self.batch or f'1..{self.max_batch}'}, "
                             f"got {n} (export with --max-batch for larger batches)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> ArtifactMeta:
        """Parse and validate; every failure is a one-line :class:`ModelFileError` naming ``source``."""
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{source}: artifact metadata is not valid JSON ({e.msg if hasattr(e, 'msg') else e});"
                                 " re-export it with `python -m export`") from e
        if not isinstance(raw, dict) or "model_cfg" not in raw:
            raise ModelFileError(f"{source}: artifact metadata has no model_cfg; re-export it with `python -m export`")
        if raw.get("schema") != SCHEMA:
            raise ModelFileError(f"{source}: artifact schema {raw.get('schema')!r} != {SCHEMA} expected by this app "
                                 f"(app {APP_VERSION}); re-export it with `python -m export`")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in known}
        for k in ("output_names", "fp32_islands"):
            if k in kwargs:
                kwargs[k] = tuple(kwargs[k])
        meta = cls(**kwargs)
        if meta.input_name != INPUT_NAME or tuple(meta.output_names) != OUTPUT_NAMES:
            raise ModelFileError(f"{source}: artifact I/O {meta.input_name} -> {list(meta.output_names)} differs from "
                                 f"{INPUT_NAME} -> {list(OUTPUT_NAMES)}; re-export it with `python -m export`")
        return meta


def write_engine_file(path: Path, meta: ArtifactMeta, engine_bytes: bytes) -> Path:
    """``MAGIC | uint32 little-endian JSON length | JSON | serialized engine``, written atomically."""
    header = meta.to_json().encode()
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(ENGINE_MAGIC + _LEN.pack(len(header)) + header)
        f.write(engine_bytes)
    tmp.replace(path)
    return path


def read_engine_file(path: Path) -> tuple[ArtifactMeta, bytes]:
    """Split an engine file into (metadata, serialized engine); refuse files without our header."""
    if not path.is_file():
        raise ModelFileError(f"engine not found: {path} (build one with `python -m export tensorrt --onnx M.onnx`)")
    data = path.read_bytes()
    n = len(ENGINE_MAGIC)
    if data[:n] != ENGINE_MAGIC or len(data) < n + _LEN.size:
        raise ModelFileError(f"{path} is not an InstanceHMR engine (no {ENGINE_MAGIC.decode()} header; e.g. a bare "
                             "trtexec engine); rebuild it with `python -m export tensorrt`")
    (length,) = _LEN.unpack_from(data, n)
    start = n + _LEN.size
    if start + length > len(data):
        raise ModelFileError(f"{path} is truncated (header says {length} bytes of metadata); rebuild it with "
                             "`python -m export tensorrt`")
    meta = ArtifactMeta.from_json(data[start:start + length], str(path))
    body = data[start + length:]
    if not body:
        raise ModelFileError(f"{path} holds metadata but no engine; rebuild it with `python -m export tensorrt`")
    return meta, body
