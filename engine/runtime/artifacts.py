"""Where exported artifacts live in the cache, and the one hook through which a missing one gets built.

The runtime only *opens* artifacts; building them (torch.onnx export, TensorRT builds, parity checks) belongs to
the ``export`` package, which the engine must not import. So the cache naming is defined here (both sides need it)
and building goes through an :class:`ArtifactBuilder` that ``export.artifacts.install_builder()`` registers: the
app and the benchmarks install it, and a process that did not gets a one-line error naming the export command
instead of an import of the exporter.

Cache names, keyed by content so an artifact is rebuilt exactly when needed:

* ONNX: ``<stem>-<path hash>-<checkpoint sha256>-b<max batch>-<exporter>-s<schema>.onnx``; the checkpoint hash is
  also inside the file's metadata and checked on load. Older exports of the same checkpoint path are pruned.
* Engine: ``<onnx stem>-<sha256(ONNX hash | TensorRT version | GPU name | precision)>.engine``; the header carries
  the same fields and the TensorRT backend refuses a mismatch (then it is rebuilt once).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

from ..errors import BackendError, ConfigError, ModelFileError
from .meta import SCHEMA

__all__ = ["CACHE_ENV", "DEFAULT_EXPORTER", "ArtifactBuilder", "cache_root", "engine_for_onnx", "engine_key",
           "file_sha256", "get_builder", "onnx_for_checkpoint", "set_builder"]

log = logging.getLogger(__name__)

CACHE_ENV = "INSTANCEHMR_CACHE_DIR"
DEFAULT_EXPORTER = "legacy"  # torch.onnx's TorchScript exporter: measured faster to export than dynamo


class ArtifactBuilder(Protocol):
    """Builds artifacts into the paths the runtime chose (implemented by ``export.artifacts``)."""

    def build_onnx(self, checkpoint: Path, out: Path, checkpoint_sha256: str, exporter: str, max_batch: int,
                   parity_tolerance: float) -> None: ...

    def build_engine(self, onnx_path: Path, out: Path, precision: str, device: str, timing_cache: Path) -> None: ...


_builder: ArtifactBuilder | None = None


def set_builder(builder: ArtifactBuilder | None) -> ArtifactBuilder | None:
    """Register the builder used for cache misses; returns the previous one (None clears it)."""
    global _builder
    previous, _builder = _builder, builder
    return previous


def get_builder() -> ArtifactBuilder | None:
    return _builder


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def engine_key(onnx_sha256: str, tensorrt_version: str, gpu: str, precision: str) -> str:
    """The engine cache key: any change in these four means the engine must be rebuilt."""
    return hashlib.sha256(f"{onnx_sha256}|{tensorrt_version}|{gpu}|{precision}".encode()).hexdigest()[:16]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else $INSTANCEHMR_CACHE_DIR, else $XDG_CACHE_HOME (~/.cache)/instancehmr-live."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
            "instancehmr-live"
    root = Path(cache_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the artifact cache dir {root} ({e.strerror}); pass --cache-dir or set "
                          f"{CACHE_ENV}") from e
    return root


def _need_builder(what: str, command: str) -> ArtifactBuilder:
    if _builder is None:
        raise BackendError(f"{what} is not in the cache and no exporter is loaded in this process; build it with "
                           f"`{command}`, or use --backend torch")
    return _builder


def onnx_for_checkpoint(checkpoint: str | Path, cache_dir: str | Path | None = None, *, exporter: str | None = None,
                        max_batch: int = 1, parity_tolerance: float = 1e-3) -> tuple[Path, str, bool]:
    """The cached ONNX export of ``checkpoint``, built through the registered builder if missing.

    Returns:
        (path, checkpoint sha256, whether it was built now).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ModelFileError(f"checkpoint not found: {checkpoint} (pass --checkpoint with a weights file)")
    exporter = exporter or DEFAULT_EXPORTER
    sha = file_sha256(checkpoint)
    where = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:8]
    prefix = f"{checkpoint.stem}-{where}-"
    path = cache_root(cache_dir) / f"{prefix}{sha[:16]}-b{max_batch}-{exporter}-s{SCHEMA}.onnx"
    if path.is_file():
        return path, sha, False
    builder = _need_builder(f"the ONNX export of {checkpoint.name}",
                            f"python -m export onnx --checkpoint {checkpoint.name} --output M.onnx")
    for stale in path.parent.glob(f"{prefix}*.onnx"):
        log.info("checkpoint changed: removing stale export %s", stale.name)
        stale.unlink(missing_ok=True)
    log.info("exporting %s to %s (first use of this checkpoint)", checkpoint.name, path)
    tmp = path.with_name(path.name + ".building.onnx")
    try:
        builder.build_onnx(checkpoint, tmp, sha, exporter, max_batch, parity_tolerance)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path, sha, True


def engine_for_onnx(onnx_path: Path, cache_dir: str | Path | None = None, *, precision: str = "fp16",
                    device: str = "cuda:0") -> tuple[Path, str, bool]:
    """The cached TensorRT engine for ``onnx_path`` on this GPU/TensorRT, built if missing. GPU machines only."""
    from .tensorrt_backend import gpu_name, import_tensorrt, require_cuda

    trt = import_tensorrt()
    require_cuda(device)
    onnx_sha = file_sha256(onnx_path)
    key = engine_key(onnx_sha, trt.__version__, gpu_name(device), precision)
    path = cache_root(cache_dir) / f"{onnx_path.stem}-{key}.engine"
    if path.is_file():
        return path, onnx_sha, False
    builder = _need_builder(f"the TensorRT engine for {onnx_path.name}",
                            f"python -m export tensorrt --onnx {onnx_path.name} --output M.engine")
    builder.build_engine(onnx_path, path, precision, device, cache_root(cache_dir) / "tensorrt.timing.cache")
    return path, onnx_sha, True
