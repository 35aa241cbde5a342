"""Frame in, people out: every model kind the app runs, and how to open each one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from .base import FramePeople, ModelInfo, PeopleModel, PeopleQuery

__all__ = ["FramePeople", "ModelInfo", "OpenedTracker", "PeopleModel", "PeopleQuery", "open_instancehmr",
           "open_poseguided", "open_realfootage", "open_tracker"]

LANDMARK_FILES = {"full": "blazepose_full.onnx", "lite": "blazepose_lite.onnx"}
# --landmarks choice -> (network that decides who is a person, network that follows the people tracked)
LANDMARK_CHOICES = {"full": ("full", "full"), "lite": ("lite", "lite"), "mixed": ("full", "lite")}
DETECTOR_FILE = "nanodet.onnx"
# its INT8 twin (``python -m export quantize``; written only when it matches the FP32 boxes and scores), run on CPU:
# the detector pass is the largest single cost of a CPU frame, and INT8 makes it ~1.6x faster
DETECTOR_INT8_FILE = "nanodet_int8.onnx"
# Detector score thresholds, measured on hand-boxed real footage: full BlazePose's pose flag rejects false
# detections better than lite's, so full can take the more permissive detector setting (both >= 0.89 precision);
# "mixed" judges new people with full.
DETECT_THRESHOLD = {"full": 0.35, "lite": 0.45, "mixed": 0.35}
LANDMARK_LABELS = {"full": "full", "lite": "lite", "mixed": "full + lite"}  # in the model's title (HUD, logs)


class OpenedTracker(NamedTuple):
    """What :func:`open_tracker` opened: the tracker, where its landmark network runs ("cpu", "cuda:0"), the
    detector threshold tuned for its landmark networks, and the detector's precision ("int8" or "fp32")."""

    tracker: Any  # engine.realfootage.tracker.LandmarkTracker (imported lazily: it pulls in OpenCV)
    device: str
    threshold: float
    detector_precision: str


def open_instancehmr(checkpoint: str | Path, backend: str = "auto", threads: int = 1,
                     synthetic_demo: bool = False, device: str = "auto") -> PeopleModel:
    """InstanceHMR from a checkpoint (or an exported .onnx/.engine) on the fastest available backend for
    ``device`` ("auto", "cpu", "cuda[:N]")."""
    from ..runtime.auto import open_backend
    from .bottomup import BottomUpModel

    opened = open_backend(checkpoint, backend, threads=threads, device=device)
    meta = getattr(opened, "meta", None)
    arch = (meta.model_cfg.get("backbone") if meta is not None else None) or getattr(
        getattr(getattr(opened, "model", None), "cfg", None), "backbone", None)
    label = f"InstanceHMR {arch}" if arch else "InstanceHMR"
    return BottomUpModel(opened, label, synthetic_demo)


# Intra-op threads of a detector that runs beside the landmark crops (``detect_lag`` > 0) on the CPU. It has
# ``detect_lag`` frames to finish, and with two threads of its own next to the landmark network's two, four compute
# threads shared two cores: every op of both networks waited for whichever of its threads had been pre-empted. With
# one, the README command on vtest.avi (400 frames, 6 people) ran 23.0-27.9 FPS, median 27.0, against 21.9-26.4,
# median 24.6, over seven interleaved pairs (outputs bit-identical); a webcam close-up alone in the picture, far
# above its target either way, waits a little longer for the rarer passes (45-53 FPS against 52-58).
BACKGROUND_DETECTOR_THREADS = 1


def open_tracker(model_dir: str | Path, landmarks: str = "full", threads: int = 1, detect_every: int = 2,
                 device: str = "auto", landmark_budget: float = 0.0, detect_lag: int = 0,
                 int8_detector: bool = True, detect_size: int | None = None,
                 fine_size: int | None = None) -> OpenedTracker:
    """The landmark tracker (NanoDet + BlazePose from ``model_dir``) that 2D-pose-driven models share.

    ``int8_detector``: on the CPU, run ``nanodet_int8.onnx`` when it is there (False: always the FP32 file). On a
    GPU the FP32 file runs: the INT8 one was built and judged for ONNX Runtime's CPU kernels only. ``detect_size``:
    the detector's longest input side, for frames over 768 px; ``fine_size``: its fine pass's, for frames over
    1123 px (0: none). None: the detector's defaults (see :mod:`engine.realfootage.detector`).
    """
    from ..errors import ConfigError
    from ..realfootage.detector import PersonDetector
    from ..realfootage.landmarks import BlazePoseLandmarks
    from ..realfootage.tracker import LandmarkTracker, TrackerCfg
    from ..runtime.graph import OnnxGraph

    if landmarks not in LANDMARK_CHOICES:
        raise ConfigError(f"unknown landmark network {landmarks!r}; expected one of {', '.join(LANDMARK_CHOICES)}")
    model_dir = Path(model_dir)

    def graph(name: str) -> OnnxGraph:
        return OnnxGraph(model_dir / LANDMARK_FILES[name], (), BlazePoseLandmarks.OUTPUTS, threads, device=device)

    find, follow = LANDMARK_CHOICES[landmarks]
    lmk = graph(find)
    quantized = model_dir / DETECTOR_INT8_FILE
    precision = "int8" if int8_detector and lmk.device == "cpu" and quantized.is_file() else "fp32"
    det = OnnxGraph(quantized if precision == "int8" else model_dir / DETECTOR_FILE, (), PersonDetector.OUTPUTS,
                    min(threads, BACKGROUND_DETECTOR_THREADS) if detect_lag > 0 else threads, device=device)
    cfg = TrackerCfg(detect_every=detect_every, landmark_budget=landmark_budget, detect_lag=detect_lag)
    sizes = {k: v for k, v in (("max_size", detect_size), ("fine_size", fine_size)) if v is not None}
    person = PersonDetector(det, **sizes)
    tracker = LandmarkTracker(person, BlazePoseLandmarks(lmk), cfg,
                              follow=BlazePoseLandmarks(graph(follow)) if follow != find else None)
    return OpenedTracker(tracker, lmk.device, DETECT_THRESHOLD[landmarks], precision)


def open_realfootage(model_dir: str | Path, body, landmarks: str = "full", threads: int = 1,
                     detect_every: int = 2, device: str = "auto", landmark_budget: float = 0.0,
                     detect_lag: int = 0, int8_detector: bool = True, detect_size: int | None = None,
                     fine_size: int | None = None) -> PeopleModel:
    """The real-footage default from the converted models in ``model_dir``.

    Args:
        model_dir: folder with ``nanodet.onnx`` and ``blazepose_{full,lite}.onnx``.
        body: the body model the people will be rendered with (the IK fits its skeleton).
        landmarks: "full" or "lite" BlazePose, or "mixed" (full finds people, lite follows them).
        threads: ONNX Runtime intra-op threads per network.
        detect_every: detector period while people are tracked.
        device: "auto" (ONNX Runtime's GPU providers when onnxruntime-gpu works, else CPU), "cpu", "cuda[:N]".
        landmark_budget: landmark crops per frame on average (0 = everyone, every frame; see
            :class:`engine.realfootage.tracker.TrackerCfg`).
        detect_lag: frames a background detector pass has before its people are taken in (0 = no background
            thread: the detector runs on the caller's thread).
        int8_detector: on the CPU, the INT8 detector when it is shipped (see :func:`open_tracker`).
        detect_size: the detector's longest input side, for frames over 768 px (see :func:`open_tracker`).
        fine_size: its fine pass's longest input side, for frames over 1123 px (0: none; see :func:`open_tracker`).
    """
    from ..bodyfit import BodyFitter
    from .realfootage import RealFootageModel

    opened = open_tracker(model_dir, landmarks, threads, detect_every, device, landmark_budget, detect_lag,
                          int8_detector, detect_size, fine_size)
    schedule = f", {landmark_budget:g} crops/frame" if landmark_budget > 0 else ""
    title = f"NanoDet + BlazePose {LANDMARK_LABELS[landmarks]}{schedule} + IK"
    precision = "fp32" if opened.detector_precision == "fp32" else "fp32, detector int8"
    info = ModelInfo("realfootage", title, f"onnxruntime {opened.device} {precision}", synthetic_demo=False,
                     default_threshold=opened.threshold)
    return RealFootageModel(opened.tracker, BodyFitter(body), info)


def open_poseguided(checkpoint: str | Path, system: str, model_dir: str | Path, body, backend: str = "auto",
                    landmarks: str = "full", threads: int = 1, detect_every: int = 2,
                    device: str = "auto", landmark_budget: float = 0.0, detect_lag: int = 0,
                    detect_size: int | None = None, fine_size: int | None = None) -> PeopleModel:
    """3DCrowdNet or JOTR from an official checkpoint (or its exported .onnx), guided by the landmark tracker.

    Args:
        checkpoint: the released weights file, or an ONNX file exported from one (``python -m export onnx``).
        system: "crowdnet" or "jotr" (see :func:`engine.checkpoint.checkpoint_system`).
        model_dir: folder of the tracker's networks (as for :func:`open_realfootage`).
        body: the body model the people will be rendered with (its rest skeleton places them).
        backend: "auto" (ONNX Runtime, exported and parity-checked on first use, else torch), "onnxruntime" or
            "torch" (the fp32 reference).
    """
    import logging

    import torch

    from ..errors import AppError, ConfigError
    from ..runtime.graph import OnnxGraph, TorchGraph
    from .poseguided import INPUT_NAMES, OUTPUT_NAMES, PoseGuidedModel

    names = {"crowdnet": "3DCrowdNet", "jotr": "JOTR"}
    if system not in names:
        raise ConfigError(f"unknown pose-guided system {system!r}; expected one of {', '.join(names)}")
    if backend == "tensorrt":
        raise ConfigError(f"{names[system]} runs on ONNX Runtime (CPU, or CUDA with onnxruntime-gpu) or torch; the "
                          "TensorRT runtime serves InstanceHMR only: use --backend auto")
    checkpoint = Path(checkpoint)
    runner = None
    if checkpoint.suffix.lower() == ".onnx":
        if backend == "torch":
            raise ConfigError(f"{checkpoint.name} is an ONNX export; pass the .pth checkpoint for --backend torch")
        runner = OnnxGraph(checkpoint, INPUT_NAMES, OUTPUT_NAMES, threads, device=device)
    elif backend in ("auto", "onnxruntime"):
        from ..runtime.auto import onnx_for_checkpoint

        try:
            path, _, _ = onnx_for_checkpoint(checkpoint)
            runner = OnnxGraph(path, INPUT_NAMES, OUTPUT_NAMES, threads, device=device)
        except AppError as e:
            if backend != "auto" or isinstance(e, ConfigError):
                raise
            logging.getLogger(__name__).warning("ONNX Runtime not used for %s (%s); running torch eager",
                                                checkpoint.name, e)
    if runner is None:
        from ..checkpoint import load_network
        from ..runtime.device import resolve_torch_device

        runner = TorchGraph(load_network(checkpoint, system=system), OUTPUT_NAMES, resolve_torch_device(device))
    where = f"torch {runner.device} fp32" if isinstance(runner, TorchGraph) else f"onnxruntime {runner.device} fp32"
    tracker, _, threshold, _ = open_tracker(model_dir, landmarks, threads, detect_every, device, landmark_budget,
                                            detect_lag, detect_size=detect_size, fine_size=fine_size)
    with torch.inference_mode():
        rest = body(torch.zeros(1, 3), torch.zeros(1, 69), root_align=False).joints[0, :24].numpy()
    info = ModelInfo(system, f"{names[system]} (2D poses: NanoDet + BlazePose {LANDMARK_LABELS[landmarks]})", where,
                     synthetic_demo=False, default_threshold=threshold)
    return PoseGuidedModel(tracker, runner, system, rest, info)
