"""3DCrowdNet / JOTR -> ONNX, with a parity report against PyTorch on a real person crop.

The graph takes the three official inputs (``img`` [B,3,256,256] RGB 0..1, ``joints`` [B,30,3] heatmap-frame
joints, ``joints_mask`` [B,30,1]) with a dynamic batch axis, because the app batches every person of a frame in one
call, and returns ``smpl_pose`` [B,72], ``smpl_shape`` [B,10], ``cam_param`` [B,3], ``joint_img`` [B,15,3].
Rotations are compared as matrices in the parity report: an axis-angle near pi may flip sign between runtimes while
describing the same rotation.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from engine.errors import ExportError
from engine.frame_models.poseguided import INPUT_NAMES, OUTPUT_NAMES
from engine.geometry import axis_angle_to_rotmat_np
from engine.runtime.meta import ArtifactMeta

from .onnx import OPENCV_DATA, SAMPLE_IMAGES, ParityReport, set_onnx_meta

__all__ = ["compare_outputs", "export_poseguided", "parity_poseguided", "sample_inputs"]

OPSET = 17
# A standing person's COCO-17 keypoints (x, y in a 100 x 200 box): the parity sample's pose.
_STANDING = np.array([[50, 20], [54, 17], [46, 17], [58, 19], [42, 19], [65, 45], [35, 45], [70, 75], [30, 75],
                      [72, 100], [28, 100], [60, 105], [40, 105], [61, 145], [39, 145], [62, 185], [38, 185]],
                     np.float32)


class _Wrapper(nn.Module):
    """Dict outputs -> a tuple in OUTPUT_NAMES order, so the ONNX output names are fixed and ordered."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, img: torch.Tensor, joints: torch.Tensor, joints_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(img, joints, joints_mask)
        return tuple(out[k] for k in OUTPUT_NAMES)


def sample_inputs(system: str, people: int = 2) -> tuple[dict[str, np.ndarray], str]:
    """Real-photo crops of ``people`` standing poses, prepared as the app prepares them, and where they came from."""
    import cv2

    from engine.poseguided import prepare

    frame, name = None, "synthetic image (apt-get install opencv-doc for real samples)"
    for fname in SAMPLE_IMAGES:
        path = OPENCV_DATA / fname
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if frame is not None:
            name = str(path)
            break
    if frame is None:
        rng = np.random.default_rng(0)
        frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    h, w = frame.shape[:2]
    xy = np.stack([_STANDING * (min(h, w) / 260.0) + (w * (0.2 + 0.5 * i / max(people, 1)), h * 0.1)
                   for i in range(people)]).astype(np.float32)
    score = np.full(xy.shape[:2], 0.9, np.float32)
    score[1:, 3] = 0.01  # one low-confidence joint: the mask path is exercised too
    crop = prepare(frame, xy, score, system)
    return {"img": crop.img, "joints": crop.joints, "joints_mask": crop.joints_mask}, name


def export_poseguided(model: nn.Module, output: str | Path, system: str, *, checkpoint_sha256: str = "",
                      max_batch: int = 64) -> Path:
    """Export a 3DCrowdNet/JOTR network to ``output`` (atomically) with :class:`ArtifactMeta` in its metadata."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    feeds, _ = sample_inputs(system, 2)
    args = tuple(torch.from_numpy(feeds[k]) for k in INPUT_NAMES)
    axes = {n: {0: "batch"} for n in (*INPUT_NAMES, *OUTPUT_NAMES)}
    sink = io.StringIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")  # tracer chatter, not actionable here
            torch.onnx.export(_Wrapper(model.eval()), args, str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                              do_constant_folding=True)
        proto = onnx.load(str(tmp))
    except Exception as e:  # the exporter raises many unrelated types; one line, the cause kept
        tmp.unlink(missing_ok=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ExportError(f"ONNX export of {system} failed: {type(e).__name__}: {first}; run it with --backend "
                          "torch") from e
    meta = ArtifactMeta(model_cfg={"system": system}, checkpoint_sha256=checkpoint_sha256, batch=0,
                        max_batch=max_batch, exporter="legacy", opset=OPSET, input_name=",".join(INPUT_NAMES),
                        output_names=OUTPUT_NAMES, input_range="img RGB float32 0..1; joints in the 64x64 grid")
    set_onnx_meta(proto, meta)
    proto.producer_name = "instancehmr-live"
    onnx.save(proto, str(tmp))
    tmp.replace(output)
    return output


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> tuple[dict[str, float],
                                                                               dict[str, float]]:
    """Max abs error and that over max |ref| per output; ``smpl_pose`` as the [B,24,3,3] rotation matrices it
    stands for."""
    abs_d, rel_d = {}, {}
    for k in OUTPUT_NAMES:
        a, b = np.asarray(ref[k], np.float64), np.asarray(got[k], np.float64)
        if k == "smpl_pose":
            a, b = (axis_angle_to_rotmat_np(x.reshape(-1, 3)) for x in (a, b))
        abs_d[k] = float(np.abs(a - b).max())
        rel_d[k] = abs_d[k] / max(float(np.abs(a).max()), 1e-12)
    return abs_d, rel_d


def parity_poseguided(onnx_path: str | Path, model: nn.Module, system: str,
                      tolerance: float = 1e-3) -> ParityReport:
    """Run the export in ONNX Runtime (CPU) and the module in PyTorch on the same real crops; compare every output."""
    from engine.runtime.graph import OnnxGraph, TorchGraph

    feeds, name = sample_inputs(system, 3)  # 3 people: a batch size where a cross over the wrong axis would show
    ref = TorchGraph(model, OUTPUT_NAMES).run(feeds)
    got = OnnxGraph(onnx_path, INPUT_NAMES, OUTPUT_NAMES, providers=("CPUExecutionProvider",)).run(feeds)
    return ParityReport(f"crops of {name}", *compare_outputs(ref, got), tolerance)
