"""InstanceHMR (bottom-up): letterbox -> backend -> decode, the one place this chain is written."""

from __future__ import annotations

import time

import numpy as np

from ..decode import DecodeCfg, decode_people
from ..preprocess import letterbox
from ..runtime.base import Backend
from .base import FramePeople, ModelInfo, PeopleModel, PeopleQuery

__all__ = ["BottomUpModel"]


class BottomUpModel(PeopleModel):
    """One network pass over the whole frame; people are decoded from its centre and parameter maps.

    Args:
        backend: any :class:`~engine.runtime.base.Backend` (TensorRT, ONNX Runtime, torch).
        label: model name for the UI (e.g. the checkpoint's architecture).
        synthetic_demo: the bundled demo weights (trained on synthetic renders only).
    """

    def __init__(self, backend: Backend, label: str = "InstanceHMR", synthetic_demo: bool = False) -> None:
        self.backend = backend
        spec = backend.spec
        self.info = ModelInfo("instancehmr", f"{label}@{spec.input_size}",
                              f"{spec.name} {spec.device} {spec.precision}", synthetic_demo, 0.2)

    def __call__(self, frame_bgr: np.ndarray, query: PeopleQuery) -> FramePeople:
        resident = getattr(self.backend, "frame_people", None)
        if resident is not None and getattr(self.backend.spec, "device", "cpu") != "cpu":
            # GPU-resident frame: upload once, letterbox, infer and decode on the device, copy back the people
            t0 = time.perf_counter()
            people, box = resident(frame_bgr, DecodeCfg(query.threshold, query.max_people))
            return FramePeople(people, box, {"inference": (time.perf_counter() - t0) * 1e3})
        t0 = time.perf_counter()
        image, box = letterbox(frame_bgr, self.backend.input_size)
        t1 = time.perf_counter()
        maps = self.backend.infer(image[None])
        t2 = time.perf_counter()
        people = decode_people(maps["center_map"][0], maps["params_maps"][0], box.input_size,
                               DecodeCfg(query.threshold, query.max_people))
        t3 = time.perf_counter()
        return FramePeople(people, box, {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                                         "decode": (t3 - t2) * 1e3})

    def close(self) -> None:
        self.backend.close()
