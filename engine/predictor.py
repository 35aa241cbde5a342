"""The whole per-frame path in one object, for scripts, tests and headless use: people model -> body model ->
projection. The app runs the same stages on separate threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .body import BodyModel
from .frame_models.base import PeopleModel, PeopleQuery
from .postprocess import people_to_meshes
from .types import Letterbox, Meshes, People


@dataclass
class FrameResult:
    people: People
    meshes: Meshes | None
    letterbox: Letterbox
    timings_ms: dict[str, float] = field(default_factory=dict)


class Predictor:
    def __init__(self, model: PeopleModel, body: BodyModel | None, query: PeopleQuery | None = None) -> None:
        self.model = model
        self.body = body
        self.query = query or PeopleQuery(threshold=model.info.default_threshold)

    def __call__(self, frame_bgr: np.ndarray) -> FrameResult:
        result = self.model(frame_bgr, self.query)
        t0 = time.perf_counter()
        meshes = people_to_meshes(result.people, self.body, result.box) if self.body is not None else None
        timings = {**result.timings_ms, "body_model": (time.perf_counter() - t0) * 1e3}
        return FrameResult(result.people, meshes, result.box, timings)
