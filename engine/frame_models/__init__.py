"""Frame in, people out: every model kind the app runs, and how to open each one."""

from __future__ import annotations

from pathlib import Path

from .base import FramePeople, ModelInfo, PeopleModel, PeopleQuery

__all__ = ["FramePeople", "ModelInfo", "PeopleModel", "PeopleQuery", "open_instancehmr", "open_realfootage"]

LANDMARK_FILES = {"full": "blazepose_full.onnx", "lite": "blazepose_lite.onnx"}
DETECTOR_FILE = "nanodet.onnx"
# Detector score thresholds, measured on hand-boxed real footage: full BlazePose's pose flag rejects false
# detections better than lite's, so full can take the more permissive detector setting (both >= 0.89 precision).
DETECT_THRESHOLD = {"full": 0.35, "lite": 0.45}


def open_instancehmr(checkpoint: str | Path, backend: str = "auto", threads: int = 1,
                     synthetic_demo: bool = False) -> PeopleModel:
    """InstanceHMR from a checkpoint (or an exported .onnx/.engine) on the fastest available backend."""
    from ..runtime.auto import open_backend
    from .bottomup import BottomUpModel

    opened = open_backend(checkpoint, backend, threads=threads)
    meta = getattr(opened, "meta", None)
    arch = (meta.model_cfg.get("backbone") if meta is not None else None) or getattr(
        getattr(getattr(opened, "model", None), "cfg", None), "backbone", None)
    label = f"InstanceHMR {arch}" if arch else "InstanceHMR"
    return BottomUpModel(opened, label, synthetic_demo)


def open_realfootage(model_dir: str | Path, body, landmarks: str = "full", threads: int = 1,
                     detect_every: int = 2) -> PeopleModel:
    """The real-footage default from the converted models in ``model_dir``.

    Args:
        model_dir: folder with ``nanodet.onnx`` and ``blazepose_{full,lite}.onnx``.
        body: the body model the people will be rendered with (the IK fits its skeleton).
        landmarks: "full" or "lite" BlazePose.
        threads: ONNX Runtime intra-op threads per network.
        detect_every: detector period while people are tracked.
    """
    from ..bodyfit import BodyFitter
    from ..errors import ConfigError
    from ..realfootage.detector import PersonDetector
    from ..realfootage.landmarks import BlazePoseLandmarks
    from ..realfootage.tracker import LandmarkTracker, TrackerCfg
    from ..runtime.graph import OnnxGraph
    from .realfootage import RealFootageModel

    if landmarks not in LANDMARK_FILES:
        raise ConfigError(f"unknown landmark network {landmarks!r}; expected one of {', '.join(LANDMARK_FILES)}")
    model_dir = Path(model_dir)
    lmk = OnnxGraph(model_dir / LANDMARK_FILES[landmarks], (), BlazePoseLandmarks.OUTPUTS, threads)
    det = OnnxGraph(model_dir / DETECTOR_FILE, (), PersonDetector.OUTPUTS, threads)
    info = ModelInfo("realfootage", f"NanoDet + BlazePose {landmarks} + IK", f"onnxruntime {lmk.device} fp32",
                     synthetic_demo=False, default_threshold=DETECT_THRESHOLD[landmarks])
    tracker = LandmarkTracker(PersonDetector(det), BlazePoseLandmarks(lmk), TrackerCfg(detect_every=detect_every))
    return RealFootageModel(tracker, BodyFitter(body), info)
