"""``open_backend``: the fastest backend that works on this machine, with exported artifacts cached on disk.

``auto`` tries TensorRT (needs the tensorrt package and a CUDA GPU), then ONNX Runtime, then PyTorch eager, and
records in ``spec.note`` which one it picked and why the faster ones were skipped. ONNX models and engines are
built on first use and cached under a cache dir, keyed by content so they are rebuilt exactly when needed:

* ONNX: ``<stem>-<path hash>-<checkpoint sha256>-b<max batch>-<exporter>-s<schema>.onnx``; the checkpoint hash is
  also inside the file's metadata and checked on load. Older exports of the same checkpoint path are pruned.
* Engine: ``<onnx stem>-<sha256(ONNX hash | TensorRT version | GPU name | precision)>.engine``; the header carries
  the same fields and :class:`TensorRTBackend` refuses a mismatch (then it is rebuilt once).

The exporter is imported lazily: only a machine that needs to build an artifact pays for ``torch.onnx``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path

from ..errors import AppError, ConfigError, ModelFileError
from .base import Backend
from .meta import SCHEMA

__all__ = ["BACKENDS", "cache_root", "engine_for_onnx", "onnx_for_checkpoint", "open_backend"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
CACHE_ENV = "INSTANCEHMR_CACHE_DIR"


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


def onnx_for_checkpoint(checkpoint: str | Path, cache_dir: str | Path | None = None, *, exporter: str | None = None,
                        max_batch: int = 1, parity_tolerance: float = 1e-3) -> tuple[Path, str, bool]:
    """The cached ONNX export of ``checkpoint``, built (and parity-checked) if missing.

    Returns:
        (path, checkpoint sha256, whether it was built now).
    """
    from export.onnx import DEFAULT_EXPORTER, export_onnx, file_sha256, parity_check

    from ..checkpoint import load_network
    from ..models import CrowdNet, InstanceHMR

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
    for stale in path.parent.glob(f"{prefix}*.onnx"):
        log.info("checkpoint changed: removing stale export %s", stale.name)
        stale.unlink(missing_ok=True)
    log.info("exporting %s to %s (first use of this checkpoint)", checkpoint.name, path)
    model = load_network(checkpoint)
    tmp = path.with_name(path.name + ".building.onnx")
    if isinstance(model, InstanceHMR):
        export_onnx(model, tmp, exporter=exporter, max_batch=max_batch, checkpoint_sha256=sha)
        report = parity_check(tmp, model, tolerance=parity_tolerance)
    else:  # a 2D-pose-guided system: person crops in, batched over the people of a frame
        from export.poseguided import export_poseguided, parity_poseguided

        system = "crowdnet" if isinstance(model, CrowdNet) else "jotr"
        export_poseguided(model, tmp, system, checkpoint_sha256=sha, max_batch=max(max_batch, 64))
        report = parity_poseguided(tmp, model, system, tolerance=parity_tolerance)
    if not report.ok:
        tmp.unlink(missing_ok=True)
        from ..errors import ExportError

        raise ExportError(f"ONNX export of {checkpoint.name} does not match PyTorch ({report.lines()[1:]}); "
                          "try exporter 'dynamo' or --backend torch")
    tmp.replace(path)
    return path, sha, True


def engine_for_onnx(onnx_path: Path, cache_dir: str | Path | None = None, *, precision: str = "fp16",
                    device: str = "cuda:0") -> tuple[Path, str, bool]:
    """The cached TensorRT engine for ``onnx_path`` on this GPU/TensorRT, built if missing. GPU machines only."""
    from export.onnx import file_sha256
    from export.tensorrt import build_engine, engine_key

    from .tensorrt_backend import gpu_name, import_tensorrt, require_cuda

    trt = import_tensorrt()
    require_cuda(device)
    onnx_sha = file_sha256(onnx_path)
    key = engine_key(onnx_sha, trt.__version__, gpu_name(device), precision)
    path = cache_root(cache_dir) / f"{onnx_path.stem}-{key}.engine"
    if path.is_file():
        return path, onnx_sha, False
    build_engine(onnx_path, path, fp16=precision == "fp16", device=device,
                 timing_cache=cache_root(cache_dir) / "tensorrt.timing.cache")
    return path, onnx_sha, True


def _open_tensorrt(checkpoint: Path, cache_dir: str | Path | None, threads: int, precision: str) -> Backend:
    from .tensorrt_backend import TensorRTBackend, tensorrt_status

    ok, why = tensorrt_status()
    if not ok:
        from ..errors import BackendError

        raise BackendError(why)
    onnx_path, _, _ = onnx_for_checkpoint(checkpoint, cache_dir)
    path, onnx_sha, built = engine_for_onnx(onnx_path, cache_dir, precision=precision)
    try:
        return TensorRTBackend(path, expect_onnx_sha256=onnx_sha)
    except ModelFileError as e:
        if built:
            raise
        log.warning("cached engine refused (%s); rebuilding", e)
        path.unlink(missing_ok=True)
        path, onnx_sha, _ = engine_for_onnx(onnx_path, cache_dir, precision=precision)
        return TensorRTBackend(path, expect_onnx_sha256=onnx_sha)


def _open_onnxruntime(checkpoint: Path, cache_dir: str | Path | None, threads: int, precision: str) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    path, sha, built = onnx_for_checkpoint(checkpoint, cache_dir)
    try:
        return OnnxRuntimeBackend(path, intra_op_threads=threads, expect_checkpoint_sha256=sha)
    except ModelFileError as e:
        if built:
            raise
        log.warning("cached ONNX refused (%s); re-exporting", e)
        path.unlink(missing_ok=True)
        path, sha, _ = onnx_for_checkpoint(checkpoint, cache_dir)
        return OnnxRuntimeBackend(path, intra_op_threads=threads, expect_checkpoint_sha256=sha)


def _open_torch(checkpoint: Path, cache_dir: str | Path | None, threads: int, precision: str) -> Backend:
    from ..checkpoint import load_network
    from .torch_backend import TorchBackend

    return TorchBackend(load_network(checkpoint, system="instancehmr"), threads=threads)


_OPENERS = {"tensorrt": _open_tensorrt, "onnxruntime": _open_onnxruntime, "torch": _open_torch}


def _open_artifact(path: Path, threads: int) -> Backend:
    from export.formats import format_for_path

    fmt = format_for_path(str(path))
    if fmt is not None and fmt.backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, intra_op_threads=threads)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path)


def open_backend(checkpoint: str | Path, backend: str = "auto", cache_dir: str | Path | None = None, *,
                 threads: int = 2, precision: str = "fp16") -> Backend:
    """Open ``checkpoint`` (a .pt/.pth/.pkl checkpoint, or an exported .onnx / .engine) on ``backend``.

    Args:
        backend: "auto" | "tensorrt" | "onnxruntime" | "torch".
        cache_dir: where exported artifacts are cached (see :func:`cache_root`).
        threads: CPU threads for ONNX Runtime (intra-op) or torch.
        precision: TensorRT engine precision, "fp16" or "fp32".
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if precision not in ("fp16", "fp32"):
        raise ConfigError(f"precision must be fp16 or fp32, got {precision!r}")
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path} (pass --checkpoint with a weights file)")
    if path.suffix.lower() in (".onnx", ".engine"):
        wanted = "onnxruntime" if path.suffix.lower() == ".onnx" else "tensorrt"
        if backend not in ("auto", wanted):
            raise ConfigError(f"{path.name} runs on {wanted}, not {backend}; pass the checkpoint instead")
        return _open_artifact(path, threads)
    order = ("tensorrt", "onnxruntime", "torch") if backend == "auto" else (backend,)
    skipped: list[str] = []
    for name in order:
        try:
            opened = _OPENERS[name](path, cache_dir, threads, precision)
        except AppError as e:
            if backend != "auto" or isinstance(e, ConfigError) or name == order[-1]:
                raise
            skipped.append(f"{name} skipped: {e}")
            log.info("auto backend: %s skipped: %s", name, e)
            continue
        if backend == "auto":
            why = "; ".join(skipped) if skipped else "fastest available"
            opened.spec = replace(opened.spec, note=f"{opened.spec.note}; auto picked {name} ({why})")
            log.info("backend: %s (%s)", name, opened.spec.note)
        return opened
    raise ConfigError(f"no backend could be opened for {path}")  # not reached: the last failure re-raises
