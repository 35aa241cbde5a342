"""The whole per-frame path in one object, for scripts, tests and headless use:
letterbox -> backend -> decode -> body model -> projection. The app runs the same stages on separate threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .body import BodyModel
from .decode import DecodeCfg, decode_people
from .postprocess import people_to_meshes
from .preprocess import letterbox
from .runtime.base import Backend
from .types import Letterbox, Meshes, People


@dataclass
class FrameResult:
    people: People
    meshes: Meshes | None
    letterbox: Letterbox
    timings_ms: dict[str, float] = field(default_factory=dict)


class Predictor:
    def __init__(self, backend: Backend, body: BodyModel | None, decode: DecodeCfg | None = None) -> None:
        self.backend = backend
        self.body = body
        self.decode_cfg = decode or DecodeCfg()

    def __call__(self, frame_bgr: np.ndarray) -> FrameResult:
        t = [time.perf_counter()]
        image, box = letterbox(frame_bgr, self.backend.input_size)
        t.append(time.perf_counter())
        maps = self.backend.infer(image[None])
        t.append(time.perf_counter())
        people = decode_people(maps["center_map"][0], maps["params_maps"][0], box.input_size, self.decode_cfg)
        t.append(time.perf_counter())
        meshes = people_to_meshes(people, self.body, box) if self.body is not None else None
        t.append(time.perf_counter())
        names = ("preprocess", "inference", "decode", "body_model")
        return FrameResult(people, meshes, box, {k: (b - a) * 1e3 for k, a, b in zip(names, t, t[1:])})
