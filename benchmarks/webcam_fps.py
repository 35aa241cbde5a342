#!/usr/bin/env python3
"""End-to-end FPS of the app on webcam-like clips: one person, or a group, close to the camera.

A script, not a unit test. The README main command measures a street (small people, the detector's case); a webcam
shows one person or a few filling the picture, where the landmark network and the renderer do most of the work. No
such footage can be recorded here, so each clip is made from a still photo the way the hand-boxed clip evaluation
makes them (``engine.realfootage.evaluate.swayed``: a slow zoom of 1.04-1.2x and a few pixels of sway, as a held or
bumped camera moves), cut to the camera's aspect as ``evaluate.camera_view`` does (a wide photo's centre columns, a
tall one's top rows) and scaled to its size, 300 frames at 30 FPS. Each clip then goes through ``run_app.py --input
CLIP --headless --record OUT.mp4 --save-npz DIR``, the user's own command, in a fresh process; rounds are
interleaved (clip after clip, then again) because a shared machine's speed drifts, and the medians are reported with
the range.

Photos: the three close-ups in the repository (``tests/data/closeup``: head and shoulders, waist up, knees up) and,
when ``benchmarks/photo_sets/fetch.py`` has fetched them, the six group photos (3-5 people seated or standing close,
cut by the bottom edge).

    .venv/bin/python benchmarks/webcam_fps.py                          # 640x480, two rounds
    .venv/bin/python benchmarks/webcam_fps.py --size 1280x720 --rounds 3 --json webcam.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from stages import cpu_name  # noqa: E402 - the per-stage benchmark beside this one

CLOSEUPS = ROOT / "tests" / "data" / "closeup"
GROUPS = ROOT / "benchmarks" / "photo_sets" / "group"
CLIP_FRAMES = 300
CLIP_FPS = 30.0
_SUMMARY = re.compile(r"(\d+) frames in ([\d.]+) s, ([\d.]+) FPS; mean ms per frame: (.*?); peak RSS")


@dataclass(frozen=True)
class Run:
    """One run of the app on one clip."""

    fps: float
    people_per_frame: float
    stages_ms: dict[str, float]


def webcam_clip(photo: Path, out: Path, width: int, height: int, frames: int = CLIP_FRAMES) -> Path:
    """Write ``frames`` frames of ``photo`` seen by a webcam of ``width`` x ``height`` (mp4v)."""
    import cv2

    from engine.realfootage.evaluate import camera_view, swayed

    img = cv2.imread(str(photo))
    if img is None:
        raise SystemExit(f"error: cannot read {photo}")
    img, _ = camera_view(img, {"people": []}, width, height)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"error: cannot write {out}")
    try:
        for i in range(frames):
            writer.write(swayed(img, {"people": [], "ignore": []}, i)[0])
    finally:
        writer.release()
    return out


def run_app(clip: Path, out_dir: Path, extra: list[str]) -> Run:
    """The README's headless command on ``clip``: FPS and stage means from its summary line, people from its npz."""
    cmd = [sys.executable, str(ROOT / "run_app.py"), "--input", str(clip), "--headless",
           "--record", str(out_dir / f"{clip.stem}.mp4"), "--save-npz", str(out_dir), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    found = _SUMMARY.search(done.stdout + done.stderr)
    if done.returncode != 0 or found is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"error: run_app.py failed on {clip.name} (exit {done.returncode}): {' | '.join(tail)}")
    stages = {k: float(v) for k, v in (p.rsplit(" ", 1) for p in found[4].split(", "))}
    with np.load(out_dir / f"{clip.stem}.npz", allow_pickle=False) as npz:
        rows, frames = len(npz["frame_ids"]), int(npz["num_frames"])
    return Run(float(found[3]), rows / max(frames, 1), stages)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x480", help="camera size WxH (default 640x480, a webcam's usual mode)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved runs of every clip")
    ap.add_argument("--frames", type=int, default=CLIP_FRAMES, help="frames of every clip")
    ap.add_argument("--photos", type=Path, nargs="+", help="photos to play (default: close-ups, + group photos)")
    ap.add_argument("--app-args", default="", help="extra run_app.py arguments, e.g. '--landmarks full'")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    found = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if found is None or args.rounds < 1 or args.frames < 1:
        print("error: --size must be WxH (e.g. 1280x720), --rounds and --frames at least 1", file=sys.stderr)
        return 2
    width, height = int(found[1]), int(found[2])
    photos = args.photos or sorted(CLOSEUPS.glob("*.jpg")) + sorted(GROUPS.glob("*.jpg"))
    missing = [p for p in photos if not p.is_file()]
    if missing or not photos:
        print(f"error: photo not found: {missing[0] if missing else CLOSEUPS}", file=sys.stderr)
        return 2
    if not args.photos and not any(GROUPS.glob("*.jpg")):
        print("note: group photos not fetched (benchmarks/photo_sets/fetch.py): close-ups only", file=sys.stderr)

    runs: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="webcam-fps-") as tmp:
        work = Path(tmp)
        clips = [webcam_clip(p, work / f"{p.stem}.mp4", width, height, args.frames) for p in photos]
        load = os.getloadavg()[0]
        for r in range(args.rounds):
            for clip in clips:
                run = run_app(clip, work / "out", args.app_args.split())
                runs.setdefault(clip.stem, []).append(run)
                print(f"round {r + 1}: {clip.stem:14s} {run.fps:5.1f} FPS, {run.people_per_frame:.1f} people/frame",
                      file=sys.stderr, flush=True)
    rows = {}
    for name, rs in runs.items():
        fps = [x.fps for x in rs]
        rows[name] = {"fps_median": round(statistics.median(fps), 1), "fps_min": min(fps), "fps_max": max(fps),
                      "people_per_frame": round(statistics.mean(x.people_per_frame for x in rs), 2),
                      "stages_ms_median": {k: round(statistics.median(x.stages_ms.get(k, 0.0) for x in rs), 1)
                                           for k in rs[0].stages_ms}}
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs",
              "load_avg_1m_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
              "settings": f"{width}x{height}, {args.frames} frames at {CLIP_FPS:g} FPS, run_app.py --headless "
                          f"--record --save-npz {args.app_args}".strip(), "rounds": args.rounds, "clips": rows}
    print(f"{'clip':14s} {'people':>6s} {'FPS median':>10s} {'range':>11s}  stages (ms, median)")
    for name, row in rows.items():
        stages = ", ".join(f"{k} {v}" for k, v in row["stages_ms_median"].items())
        print(f"{name:14s} {row['people_per_frame']:6.1f} {row['fps_median']:10.1f} "
              f"{row['fps_min']:5.1f}-{row['fps_max']:<5.1f}  {stages}")
    print(f"machine: {result['machine']}; load {result['load_avg_1m_before_after']}; {result['settings']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
