"""Per-stage timings, FPS, latency and drop counters, shared by the HUD, the progress bar and the exit summary.

Workers call :meth:`Stats.add` from their own threads; readers take :meth:`Stats.snapshot`, a plain dataclass, so
the UI never holds a lock while painting. Windows are short (the last ~2 s) so the HUD reacts to changes; the
exit summary uses running totals over the whole run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

# InstanceHMR reports preprocess/inference/decode, the real-footage model detect/landmarks/fit
STAGES = ("capture", "preprocess", "inference", "decode", "detect", "landmarks", "fit", "track", "body_model",
          "render", "encode")
SHORT = {"capture": "cap", "preprocess": "pre", "inference": "infer", "decode": "dec", "detect": "det",
         "landmarks": "lmk", "fit": "fit", "track": "track", "body_model": "body", "render": "render",
         "encode": "enc"}


@dataclass
class StatsSnapshot:
    """Recent per-stage means (ms), output FPS and latency, and counters since the start."""

    stage_ms: dict[str, float] = field(default_factory=dict)
    fps: float = 0.0
    latency_ms: float = 0.0
    frames_out: int = 0
    dropped_capture: int = 0
    dropped_render: int = 0
    dropped_record: int = 0
    people: int = 0
    source_status: str = "ok"
    recording: str = ""

    def hud_lines(self) -> list[str]:
        s = self.stage_ms
        parts = " ".join(f"{SHORT[k]} {s[k]:.1f}" for k in STAGES if k in s)
        drops = self.dropped_capture + self.dropped_render + self.dropped_record
        lines = [f"{self.fps:5.1f} FPS  latency {self.latency_ms:5.0f} ms  people {self.people}  drops {drops}",
                 f"ms: {parts}"]
        if self.source_status != "ok":
            lines.append(f"source: {self.source_status}")
        if self.recording:
            lines.append(self.recording)
        return lines


class Stats:
    def __init__(self, window: int = 60) -> None:
        self._lock = threading.Lock()
        self._stage: dict[str, deque[float]] = {k: deque(maxlen=window) for k in STAGES}
        self._totals: dict[str, list[float]] = {k: [0.0, 0] for k in STAGES}  # type: ignore[misc]
        self._all: dict[str, deque[float]] = {k: deque(maxlen=20000) for k in STAGES}
        self._out_times: deque[float] = deque(maxlen=window)
        self._latency: deque[float] = deque(maxlen=window)
        self.frames_out = 0
        self.people = 0
        self.dropped_render = 0
        self.t_start = time.perf_counter()
        self.t_first_out: float | None = None
        self.t_last_out: float | None = None

    def add(self, timings_ms: dict[str, float]) -> None:
        with self._lock:
            for k, v in timings_ms.items():
                if k in self._stage:
                    self._stage[k].append(v)
                    self._all[k].append(v)
                    tot = self._totals[k]
                    tot[0] += v
                    tot[1] += 1

    def frame_out(self, latency_ms: float, people: int) -> None:
        now = time.perf_counter()
        with self._lock:
            self._out_times.append(now)
            self._latency.append(latency_ms)
            self.frames_out += 1
            self.people = people
            if self.t_first_out is None:
                self.t_first_out = now
            self.t_last_out = now

    def snapshot(self, **extra) -> StatsSnapshot:
        with self._lock:
            stage = {k: float(np.mean(v)) for k, v in self._stage.items() if v}
            t = self._out_times
            fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
            lat = float(np.mean(self._latency)) if self._latency else 0.0
            return StatsSnapshot(stage, fps, lat, self.frames_out, dropped_render=self.dropped_render,
                                 people=self.people, **extra)

    def summary(self) -> dict[str, object]:
        """Whole-run figures for the exit summary and benchmarks."""
        with self._lock:
            stage = {k: {"mean": float(np.mean(self._all[k])), "p95": float(np.percentile(self._all[k], 95))}
                     for k in STAGES if self._all[k]}
            span = ((self.t_last_out - self.t_first_out) if self.t_first_out is not None and self.t_last_out else 0.0)
            fps = (self.frames_out - 1) / span if span > 0 else 0.0
            lat = float(np.median(self._latency)) if self._latency else 0.0
            return {"frames": self.frames_out, "fps": fps, "latency_ms_recent": lat, "stages_ms": stage,
                    "dropped_render": self.dropped_render, "wall_s": time.perf_counter() - self.t_start}


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_summary(summary: dict[str, object]) -> str:
    stages = summary.get("stages_ms", {})
    parts = ", ".join(f"{k} {v['mean']:.1f}" for k, v in stages.items())  # type: ignore[union-attr]
    return (f"{summary['frames']} frames in {summary['wall_s']:.1f} s, {summary['fps']:.1f} FPS; "
            f"mean ms per frame: {parts}; peak RSS {peak_rss_mib():.0f} MiB")
