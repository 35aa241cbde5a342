"""Build-on-first-use for the runtime's artifact cache: the exporter side of ``engine.runtime.artifacts``.

The runtime decides *where* an artifact lives and opens it; this module knows *how* to build one (ONNX export
with its parity check, TensorRT engine build). :func:`install_builder` registers it with the runtime; importing the
``export`` package does that, so any process that can build (the app, the benchmarks, ``python -m export``) builds
on a cache miss, and the engine never imports the exporter.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ExportError
from engine.runtime import artifacts

__all__ = ["ExportBuilder", "install_builder"]


class ExportBuilder:
    """:class:`engine.runtime.artifacts.ArtifactBuilder` backed by :mod:`export.onnx` / :mod:`export.tensorrt`."""

    def build_onnx(self, checkpoint: Path, out: Path, checkpoint_sha256: str, exporter: str, max_batch: int,
                   parity_tolerance: float) -> None:
        from engine.checkpoint import load_network
        from engine.models import CrowdNet, InstanceHMR

        from .onnx import export_onnx, parity_check

        model = load_network(checkpoint)
        if isinstance(model, InstanceHMR):
            export_onnx(model, out, exporter=exporter, max_batch=max_batch, checkpoint_sha256=checkpoint_sha256)
            report = parity_check(out, model, tolerance=parity_tolerance)
        else:  # a 2D-pose-guided system: person crops in, batched over the people of a frame
            from .poseguided import export_poseguided, parity_poseguided

            system = "crowdnet" if isinstance(model, CrowdNet) else "jotr"
            export_poseguided(model, out, system, checkpoint_sha256=checkpoint_sha256, max_batch=max(max_batch, 64))
            report = parity_poseguided(out, model, system, tolerance=parity_tolerance)
        if not report.ok:
            raise ExportError(f"ONNX export of {checkpoint.name} does not match PyTorch ({report.lines()[1:]}); "
                              "try exporter 'dynamo' or --backend torch")

    def build_engine(self, onnx_path: Path, out: Path, precision: str, device: str, timing_cache: Path) -> None:
        from .tensorrt import build_engine

        build_engine(onnx_path, out, fp16=precision == "fp16", device=device, timing_cache=timing_cache)


def install_builder() -> None:
    """Make the runtime build missing ONNX exports / TensorRT engines with this package (idempotent)."""
    if not isinstance(artifacts.get_builder(), ExportBuilder):
        artifacts.set_builder(ExportBuilder())
