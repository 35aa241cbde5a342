#!/usr/bin/env python3
"""Per-frame cost of the non-inference stages (tracking + smoothing, body model, overlay render) on real detections.

A script, not a unit test. It runs the app's model once over a clip to collect what the render thread sees (the
frame, the tracked people, the letterbox), then replays only the CPU stages on those frames ``--repeat`` times and
prints the median milliseconds per stage, with the machine, the load average and the settings. Replaying fixed
detections keeps the inference network (and its share of the two cores) out of the numbers, so a change in the
renderer or the tracker shows up as itself.

Three scenarios:

* ``street``: the default real-footage model on the OpenCV street clip (about 5-6 people per frame);
* ``crowd``: the same detections, each person repeated 8 times side-shifted (``--copies``): ~47 people per frame
  at the clip's real screen sizes, the crowd size the issue's targets quote;
* ``overlap``: the bundled InstanceHMR demo model with ``--threshold 0 --max-people 64``, which keeps every
  candidate centre: ~25 mostly spurious bodies per frame, many of them frame-sized and stacked on each other (a
  stress case for overdraw, not a realistic scene).

Examples::

    python benchmarks/render_cost.py --scenario street --frames 200 --cache street.npz   # keep the detections
    python benchmarks/render_cost.py --scenario crowd --frames 200 --cache street.npz    # reuse them, x8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SCENARIOS = {  # name: (app arguments, default copies)
    "street": ([], 1),
    "crowd": ([], 8),
    "overlap": (["--model", "demo", "--threshold", "0.0", "--max-people", "64"], 1),
}
_PEOPLE_FIELDS = ("center_preds", "center_confs", "cam", "global_orient", "body_pose", "betas", "cam_trans",
                  "track_ids")


def collect(clip: Path, scenario: str, frames: int) -> list[tuple[np.ndarray, object, object]]:
    """Run the app's model over the clip; (image, people, letterbox) per frame, as the render thread gets them."""
    from app.config import build_cfg, build_parser
    from app.session import build_session

    args = build_parser().parse_args(["--input", str(clip), "--headless", "--max-frames", str(frames),
                                      *SCENARIOS[scenario][0]])
    got: list[tuple[np.ndarray, object, object]] = []
    session = build_session(build_cfg(args), render=False,
                            on_output=lambda out: got.append((out.frame.image, out.people, out.box)))
    session.pipeline.start()
    while not session.pipeline.wait(0.2):
        pass
    session.pipeline.stop()
    return got


def save(path: Path, scenes: list) -> None:
    arrays: dict[str, np.ndarray] = {}
    for i, (img, people, box) in enumerate(scenes):
        arrays[f"{i}_image"] = img
        for name in _PEOPLE_FIELDS:
            arrays[f"{i}_{name}"] = getattr(people, name)
        arrays[f"{i}_box"] = np.array([box.orig_h, box.orig_w, box.padded_side, box.pad_top, box.pad_left,
                                       box.input_size], np.int64)
    np.savez(path, n=np.array(len(scenes)), **arrays)


def load(path: Path) -> list:
    from engine.types import Letterbox, People

    out = []
    with np.load(path) as d:
        for i in range(int(d["n"])):
            people = People(**{name: d[f"{i}_{name}"] for name in _PEOPLE_FIELDS})
            box = Letterbox(*(int(v) for v in d[f"{i}_box"]))
            out.append((d[f"{i}_image"], people, box))
    return out


def densify(scenes: list, copies: int) -> list:
    """Add ``copies - 1`` side-shifted copies of every detected person (new track IDs): a denser crowd at the
    clip's real screen sizes, for the crowd sizes the issue quotes when the model finds fewer."""
    if copies <= 1:
        return scenes
    out = []
    for img, people, box in scenes:
        parts = []
        for c in range(copies):
            p = replace(people, cam=people.cam.copy(), track_ids=people.track_ids + c * 100_000)
            p.cam[:, 1] = (p.cam[:, 1] + 1.0 + 0.37 * c) % 2.0 - 1.0  # shift right, wrap inside the square
            parts.append(p)
        merged = replace(people, **{name: np.concatenate([getattr(p, name) for p in parts])
                                    for name in _PEOPLE_FIELDS})
        out.append((img, merged, box))
    return out


def replay(scenes: list, repeat: int, live_budget: int, tiny: int) -> dict:
    """Median ms per stage over every frame of every repeat (a fresh tracker and smoother each repeat)."""
    import torch

    from app.render import MeshAnnotator, Scene, render_overlay
    from app.render.lod import tiny_faces
    from app.session import coarse_faces, live_faces
    from app.smoothing import PeopleSmoother
    from app.tracking import Tracker
    from engine.body import create_body_model
    from engine.postprocess import people_to_meshes

    torch.set_num_threads(1)  # as the app's render thread runs beside the model thread
    body = create_body_model("anny")
    mesh = MeshAnnotator(0.8, faces=live_faces(body, live_budget), coarse_faces=coarse_faces(body, live_budget),
                         tiny_faces=tiny_faces(body, tiny) if tiny > 0 else None)
    times: dict[str, list[float]] = {"track_smooth": [], "body_model": [], "render": [], "total": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    faces_drawn: list[int] = []
    for _ in range(repeat):
        tracker, smoother = Tracker(), PeopleSmoother(1.0)
        for k, (img, people, box) in enumerate(scenes):
            c0, t0 = time.thread_time(), time.perf_counter()
            upd = tracker.assign(people, box)
            p = replace(people, track_ids=upd.ids)
            smoother.drop(upd.ended)
            p = smoother.apply(p, k / 10.0)
            c1, t1 = time.thread_time(), time.perf_counter()
            meshes = people_to_meshes(p, body, box)
            c2, t2 = time.thread_time(), time.perf_counter()
            render_overlay(img, Scene(p, meshes, box), [mesh])
            c3, t3 = time.thread_time(), time.perf_counter()
            for name, dt, dc in (("track_smooth", t1 - t0, c1 - c0), ("body_model", t2 - t1, c2 - c1),
                                 ("render", t3 - t2, c3 - c2), ("total", t3 - t0, c3 - c0)):
                times[name].append(dt * 1e3)
                cpu[name].append(dc * 1e3)
            faces_drawn.append(mesh.last_faces_drawn)
    return {"median_ms": {k: round(statistics.median(v), 2) for k, v in times.items()},
            "p90_ms": {k: round(float(np.percentile(v, 90)), 2) for k, v in times.items()},
            # this thread's CPU time: the stages without waits for other processes (a busy machine's slower cores
            # still show in it)
            "median_cpu_ms": {k: round(statistics.median(v), 2) for k, v in cpu.items()},
            "faces_drawn_median": int(statistics.median(faces_drawn))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="street")
    ap.add_argument("--input", type=Path, default=VTEST)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="replays of the collected frames (medians over all)")
    ap.add_argument("--live-faces", type=int, default=1600, help="the app's --live-faces budget")
    ap.add_argument("--tiny-faces", type=int, default=None, help="faces of the level for people under 120 px "
                    "(default: the app's, app.render.lod.TINY_FACES; 0 = no such level)")
    ap.add_argument("--copies", type=int, help="repeat each person this many times, side-shifted (default: "
                    "the scenario's)")
    ap.add_argument("--cache", type=Path, help="store the collected detections here, or reuse them if present")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.cache is not None and args.cache.exists():
        scenes = load(args.cache)
    else:
        if not args.input.exists():
            print(f"input not found: {args.input} (apt-get install opencv-doc, or pass --input)", file=sys.stderr)
            return 2
        scenes = collect(args.input, args.scenario, args.frames)
        if args.cache is not None:
            save(args.cache, scenes)
    copies = args.copies or SCENARIOS[args.scenario][1]
    scenes = densify(scenes, copies)
    people = [len(p) for _, p, _ in scenes]
    load_before = os.getloadavg()
    from app.render.lod import TINY_FACES

    tiny = TINY_FACES if args.tiny_faces is None else args.tiny_faces
    res = replay(scenes, args.repeat, args.live_faces, tiny)
    result = {
        "scenario": args.scenario + (f" (x{copies})" if copies > 1 else ""), "clip": args.input.name,
        "frames": len(scenes), "repeat": args.repeat,
        "frame_size": list(scenes[0][0].shape[:2]) if scenes else None,
        "people_per_frame_mean": round(float(np.mean(people)), 1) if people else 0.0,
        **res,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "python": platform.python_version(),
        "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "settings": "torch 1 thread, opacity 0.8, mesh only, Anny body, live faces "
                    f"{args.live_faces} (coarse {args.live_faces // 2} below 220 px"
                    + (f", tiny {tiny} below 120 px)" if tiny > 0 else ")"),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
