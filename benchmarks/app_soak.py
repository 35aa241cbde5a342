#!/usr/bin/env python3
"""Soak benchmark of the app pipeline: N frames (default 10,000) through capture -> model -> render -> record,
reporting end-to-end FPS, per-stage milliseconds, latency and resident-memory growth.

A script, not a unit test. The input video is looped so any clip gives N frames. Modes:

* ``record`` (default): every frame processed in order and written with the mp4v encoder, as
  ``run_app.py --input clip --record out.mp4`` does; FPS is the throughput.
* ``live``: the camera path: newest-frame capture paced at the clip's (or ``--fps``) rate, stale frames dropped;
  reports delivered FPS, drops and latency (what a webcam user sees). Add ``--record`` to record while live.

Examples::

    python benchmarks/app_soak.py --frames 10000
    python benchmarks/app_soak.py --mode live --fps 30 --frames 3000 --record
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from app.capture import FrameSource, VideoSource
from app.config import DEMO_CHECKPOINT
from app.pipeline import LiveSettings, Pipeline, PipelineCfg, RecordRequest
from app.session import coarse_faces, live_faces

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc; no psutil needed)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class LoopingVideo(FrameSource):
    """A video file played in a loop (reopened at the end); ``live`` makes the capture thread treat it as a camera."""

    def __init__(self, path: Path, live: bool, fps: float | None) -> None:
        self.path = path
        self.inner = VideoSource(str(path), live=False)
        self.name = path.stem
        self.live = live
        self.fps = fps or self.inner.fps
        self._period = 1.0 / self.fps if live else 0.0
        self._next = time.perf_counter()

    def read(self) -> np.ndarray | None:
        if self._period:  # a camera delivers at its own rate
            self._next += self._period
            wait = self._next - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                self._next = time.perf_counter()
        frame = self.inner.read()
        if frame is None:
            self.inner.release()
            self.inner = VideoSource(str(self.path), live=False)
            frame = self.inner.read()
        return frame

    def release(self) -> None:
        self.inner.release()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=VTEST)
    ap.add_argument("--checkpoint", type=Path, help="default: the bundled demo model, else a synthetic scene model")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--mode", choices=("record", "live"), default="record")
    ap.add_argument("--record", action="store_true", help="live mode: also record")
    ap.add_argument("--fps", type=float, help="live mode: camera rate (default: the clip's)")
    ap.add_argument("--sample-every", type=int, default=500, help="RSS sample period in frames")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.input.exists():
        print(f"input not found: {args.input} (apt-get install opencv-doc, or pass --input)", file=sys.stderr)
        return 2

    import torch

    from engine.body import create_body_model
    from engine.frame_models.bottomup import BottomUpModel
    from engine.runtime.auto import open_backend
    from testing.scene import make_scene_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    ckpt = args.checkpoint or (DEMO_CHECKPOINT if DEMO_CHECKPOINT.exists() else None)
    model_note = str(ckpt) if ckpt else "synthetic scene model (testing.scene; bundled demo model not present)"
    ckpt = ckpt or make_scene_checkpoint(tmp / "scene.pt")
    torch.set_num_threads(1)
    backend = open_backend(ckpt, args.backend, threads=args.threads)
    body = create_body_model("anny")
    live = args.mode == "live"
    source = LoopingVideo(args.input, live=live, fps=args.fps)
    record = None
    out_path = tmp / "soak.mp4"
    if not live or args.record:
        record = RecordRequest(out_path, source.fps, block=not live, timed=live)
    cfg = PipelineCfg(live=live, render=True, max_frames=args.frames, live_faces=live_faces(body, 1600),
                      coarse_faces=coarse_faces(body, 1600))
    samples: list[tuple[int, float]] = []
    pipe = Pipeline(source, BottomUpModel(backend), body, LiveSettings(), cfg, record=record)
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    pipe.start()
    next_sample = 0
    while not pipe.wait(0.2):
        n = pipe.stats.frames_out
        if n >= next_sample:
            samples.append((n, rss_mib()))
            next_sample = (n // args.sample_every + 1) * args.sample_every
            snap = pipe.snapshot()
            print(f"{n:6d} frames  {snap.fps:5.1f} FPS  rss {samples[-1][1]:7.1f} MiB  "
                  f"drops {snap.dropped_capture + snap.dropped_render}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    pipe.stop()
    samples.append((pipe.stats.frames_out, rss_mib()))
    summ = pipe.stats.summary()
    snap = pipe.snapshot()
    warm = [s for s in samples if s[0] >= min(1000, args.frames // 5)] or samples
    rss = np.array([s[1] for s in warm])
    x = np.array([s[0] for s in warm], float)
    slope = float(np.polyfit(x, rss, 1)[0] * 1000) if len(warm) > 2 else 0.0
    result = {
        "mode": args.mode + ("+record" if live and args.record else ""), "model": model_note,
        "backend": f"{backend.spec.name} {backend.spec.precision} ({backend.spec.note})",
        "frames": summ["frames"], "wall_s": round(wall, 1), "fps_end_to_end": round(summ["frames"] / wall, 2),
        "stages_ms_mean": {k: round(v["mean"], 2) for k, v in summ["stages_ms"].items()},
        "stages_ms_p95": {k: round(v["p95"], 2) for k, v in summ["stages_ms"].items()},
        "latency_ms_recent": round(summ["latency_ms_recent"], 1),
        "dropped_capture": snap.dropped_capture, "dropped_render": snap.dropped_render,
        "rss_mib_start": round(float(rss[0]), 1), "rss_mib_end": round(float(rss[-1]), 1),
        "rss_mib_max": round(max(s[1] for s in samples), 1), "rss_growth_mib_per_1000_frames": round(slope, 3),
        "recorded_frames": pipe.record_note, "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    out_path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
