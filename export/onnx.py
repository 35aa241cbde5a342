"""PyTorch -> ONNX, with metadata and a parity check against PyTorch on a real image.

The graph takes float32 RGB 0..255 (normalisation is inside the network), has a fixed spatial size and batch 1 by
default (``max_batch > 1`` makes the batch axis dynamic, bounded by ``max_batch`` in the metadata), and contains no
data-dependent shapes: peak picking, top-K and thresholding stay on the host (``engine.decode``), so TensorRT and
ORT see the same static graph.

Exporter choice, measured on the 2-core CPU (paired round-robin runs in ORT, intra_op=2, random weights, load ~2-3):
mobilenetv3@256 legacy 42 ms median / 16.7 ms best vs dynamo 45 / 18.0 (150 rounds); resnet50@512 legacy 414 / 306
vs dynamo 380 / 304 (10 rounds, a tie). The 2-3x gap reported earlier for R50 did not reproduce with torch 2.13 +
ORT 1.31. Legacy (``dynamo=False``, opset 17) stays the default: never slower at inference and 2-4x faster to export
(2.8 vs 12.7 s for mobilenetv3), which matters for the first-use export in ``open_backend``. ``exporter="dynamo"``
(opset 18, self-contained file) is kept working because torch will remove the legacy path.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from engine.errors import ExportError
from engine.models import InstanceHMR
from engine.runtime.artifacts import DEFAULT_EXPORTER, file_sha256
from engine.runtime.base import INPUT_NAME, OUTPUT_NAMES
from engine.runtime.meta import META_KEY, ArtifactMeta

from .compare import compare_maps

__all__ = ["DEFAULT_EXPORTER", "EXPORTERS", "ParityReport", "export_onnx", "file_sha256", "parity_check",
           "read_onnx_meta", "sample_image"]

log = logging.getLogger(__name__)

EXPORTERS = {"legacy": 17, "dynamo": 18}  # exporter -> opset (dynamo: 18 avoids its failing down-conversion)
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SAMPLE_IMAGES = ("basketball1.png", "basketball2.png")


class _Wrapper(nn.Module):
    """Dict outputs -> a tuple in OUTPUT_NAMES order, so the ONNX output names are fixed and ordered."""

    def __init__(self, model: InstanceHMR) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images)
        return tuple(out[k] for k in OUTPUT_NAMES)


def _torch_export(model: InstanceHMR, path: Path, exporter: str, opset: int, max_batch: int) -> None:
    wrapper = _Wrapper(model).eval()
    s = model.cfg.input_size
    x = torch.rand(1, 3, s, s) * 255.0
    dynamic = max_batch > 1
    sink = io.StringIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")  # deprecation / "torchvision not installed" chatter, not actionable here
        if exporter == "legacy":
            axes = {n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic else None
            torch.onnx.export(wrapper, (x,), str(path), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), dynamic_axes=axes, do_constant_folding=True)
        else:
            shapes = {"images": {0: torch.export.Dim("batch", min=1, max=max_batch)}} if dynamic else None
            prog = torch.onnx.export(wrapper, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                     output_names=list(OUTPUT_NAMES), dynamic_shapes=shapes, optimize=True,
                                     verbose=False)
            prog.save(str(path), external_data=False)


def export_onnx(model: InstanceHMR, output: str | Path, *, exporter: str = DEFAULT_EXPORTER, max_batch: int = 1,
                checkpoint_sha256: str = "") -> Path:
    """Export ``model`` to ``output`` (atomically) with :class:`ArtifactMeta` in ``metadata_props``.

    Args:
        exporter: "legacy" (TorchScript, default) or "dynamo".
        max_batch: 1 = fixed batch 1; > 1 = dynamic batch axis accepting 1..max_batch.
        checkpoint_sha256: hash of the source checkpoint, recorded so a cache can tell stale exports apart.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; expected one of {', '.join(EXPORTERS)}")
    if max_batch < 1:
        raise ExportError(f"--max-batch must be >= 1, got {max_batch}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    opset = EXPORTERS[exporter]
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    try:
        _torch_export(model, tmp, exporter, opset, max_batch)
        proto = onnx.load(str(tmp))
    except Exception as e:  # the exporters raise many unrelated types; report one line and keep the cause
        tmp.unlink(missing_ok=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ExportError(f"ONNX export ({exporter}) of {model.cfg.name} failed: {type(e).__name__}: {first}; "
                          f"try --exporter {'dynamo' if exporter == 'legacy' else 'legacy'}") from e
    meta = ArtifactMeta(model_cfg=model.cfg.to_dict(), checkpoint_sha256=checkpoint_sha256,
                        batch=0 if max_batch > 1 else 1, max_batch=max_batch, exporter=exporter, opset=opset)
    set_onnx_meta(proto, meta)
    proto.producer_name = "instancehmr-live"
    onnx.save(proto, str(tmp))
    tmp.replace(output)
    return output


def set_onnx_meta(proto: onnx.ModelProto, meta: ArtifactMeta) -> None:
    """Replace our metadata entry (other entries are kept)."""
    keep = [p for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()


def read_onnx_meta(proto: onnx.ModelProto, source: str) -> ArtifactMeta:
    from engine.errors import ModelFileError

    for p in proto.metadata_props:
        if p.key == META_KEY:
            return ArtifactMeta.from_json(p.value, source)
    raise ModelFileError(f"{source} has no {META_KEY!r} metadata (not exported by this app); re-export it with "
                         "`python -m export onnx --checkpoint CKPT`")


def sample_image(input_size: int) -> tuple[np.ndarray, str]:
    """A real photo letterboxed to the network input ([1, 3, S, S] float32), and where it came from.

    Falls back to a deterministic synthetic image (and says so) when Debian's opencv-doc samples are absent.
    """
    import cv2

    from engine.preprocess import letterbox

    for name in SAMPLE_IMAGES:
        path = OPENCV_DATA / name
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if frame is not None:
            return letterbox(frame, input_size)[0][None], str(path)
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    return letterbox(frame, input_size)[0][None], "synthetic image (apt-get install opencv-doc for real samples)"


@dataclass(frozen=True)
class ParityReport:
    """Per output: max |onnx - torch| and that divided by max |torch| (a scale-free relative error)."""

    image: str
    max_abs: dict[str, float]
    max_rel: dict[str, float]
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(np.isfinite(v) and v <= self.tolerance for v in self.max_rel.values())

    def lines(self) -> list[str]:
        out = [f"parity vs PyTorch on {self.image} (tolerance: rel {self.tolerance:g})"]
        for k in self.max_abs:
            flag = "ok" if np.isfinite(self.max_rel[k]) and self.max_rel[k] <= self.tolerance else "FAIL"
            out.append(f"  {k:12s} max abs {self.max_abs[k]:.3e}  max rel {self.max_rel[k]:.3e}  {flag}")
        return out


def parity_check(onnx_path: str | Path, model: InstanceHMR, tolerance: float = 1e-3,
                 image: np.ndarray | None = None, image_name: str = "given image") -> ParityReport:
    """Run the exported model in ONNX Runtime (CPU) and PyTorch on the same real image and compare every output."""
    from engine.runtime.onnxruntime_backend import OnnxRuntimeBackend

    if image is None:
        image, image_name = sample_image(model.cfg.input_size)
    with torch.inference_mode():
        ref = {k: v.numpy() for k, v in model.eval()(torch.from_numpy(image)).items()}
    backend = OnnxRuntimeBackend(onnx_path, providers=("CPUExecutionProvider",))
    try:
        got = backend.infer(image)
    finally:
        backend.close()
    abs_d, rel_d = compare_maps(ref, got)
    return ParityReport(image_name, abs_d, rel_d, tolerance)
