"""Recall / precision of a people model on hand-boxed real footage (vtest.avi frames and photos from opencv-doc).

    python benchmarks/realfootage_eval.py                       # the real-footage default, both modes
    python benchmarks/realfootage_eval.py --model demo          # the synthetic InstanceHMR demo, for comparison
    python benchmarks/realfootage_eval.py --modes cold sequence agreement --detect-lag 1 2 3   # means over lags

Modes: ``cold`` runs each annotated image on its own (model reset first: the detector must find everyone);
``sequence`` plays the video from frame 0 and scores the annotated frames as they pass (ROI tracking on, as in the
app); ``agreement`` plays the whole video with the chosen schedule and compares every 10th frame with a cold,
everyone-measured pass on the same frame (about 480 people instead of the 58 hand-boxed ones: a steadier measure of
what the tracker's schedule costs, against the model's own best, not against the truth). A predicted person is the
box around its rendered mesh (see engine.realfootage.evaluate). Prints one line per image and a JSON summary;
``--json PATH`` writes it. ``--zoom`` adds closer views of the photos (bodies cut by the frame) to the cold
mode: ``--annotations tests/data/closeup_boxes.json --modes cold --zoom 1 1.3 1.7`` is the webcam case.
``clip`` plays every photo as a webcam-like clip (``--clip-frames`` frames of a slow zoom and sway, see
engine.realfootage.evaluate.swayed; photos wider than 960 px are scaled down first) with tracking on and scores
every frame, and through the app's id tracker (``app.tracking.Tracker.assign``, as the app runs it) counts how
often a found person's id changed and how many ids each had (``id_switches``, ``extra_ids``); ``clip_cold``
scores the same frames each on its own, the model's best on them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.realfootage.evaluate import IdentityScore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CLIP_WIDTH = 960  # photos are scaled down to this width for the clip modes (a webcam's size, and 4x fewer pixels)
TAKE_PHASE = 40  # frames the sway of a photo's third and fourth takes is ahead (see play_clip)


def open_model(args):
    from app.config import (
        DEFAULT_DETECT_EVERY,
        DEFAULT_DETECT_LAG,
        DEFAULT_LANDMARK_BUDGET,
        DEFAULT_LANDMARKS,
        DEMO_CHECKPOINT,
        REALFOOTAGE_DIR,
    )
    from engine.body import create_body_model
    from engine.frame_models import open_instancehmr, open_realfootage

    body = create_body_model("anny")
    if args.model == "realfootage":
        model = open_realfootage(REALFOOTAGE_DIR, body, landmarks=args.landmarks or DEFAULT_LANDMARKS,
                                 threads=args.threads,
                                 detect_every=DEFAULT_DETECT_EVERY if args.detect_every is None else args.detect_every,
                                 landmark_budget=DEFAULT_LANDMARK_BUDGET if args.landmark_budget is None
                                 else args.landmark_budget,
                                 detect_lag=DEFAULT_DETECT_LAG if args.detect_lag is None else args.detect_lag,
                                 int8_detector=not args.fp32_detector, detect_size=args.detect_size,
                                 fine_size=args.fine_size)
    else:
        ckpt = args.checkpoint or DEMO_CHECKPOINT
        model = open_instancehmr(ckpt, "onnxruntime", threads=args.threads, synthetic_demo=args.checkpoint is None)
    return model, body


def predicted_boxes(model, body, frame, query):
    from app.render.projection import project_points
    from engine.postprocess import people_to_meshes
    from engine.realfootage.evaluate import mesh_boxes

    result = model(frame, query)
    if len(result.people) == 0:
        return np.zeros((0, 4), np.float32), result
    meshes = people_to_meshes(result.people, body, result.box)
    px, _ = project_points(meshes.vertices, result.people.cam, result.box)
    return mesh_boxes(px, frame.shape[:2]), result


def read_frames(video: Path, wanted: set[int]):
    """Yield (index, frame) for every frame up to the last wanted one."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        for i in range(max(wanted) + 1):
            ok, frame = cap.read()
            if not ok:
                return
            yield i, frame
    finally:
        cap.release()


def evaluate(args) -> dict:
    import cv2

    from engine.frame_models import PeopleQuery
    from engine.realfootage.evaluate import Score, load_annotations, score_image, zoomed

    model, body = open_model(args)
    threshold = model.info.default_threshold if args.threshold is None else args.threshold
    query = PeopleQuery(threshold=threshold)
    images = load_annotations(args.annotations)
    report: dict = {"model": model.info.title, "threshold": threshold, "annotations": str(args.annotations)}
    for mode in (m for m in args.modes if m != "agreement"):
        score = Score()
        times = []
        videos: dict[str, dict[int, dict]] = {}
        for im in images:
            if "frame" in im and mode in ("cold", "sequence"):  # the clip modes play the photos
                videos.setdefault(im["source"], {})[int(im["frame"])] = im
        for src, by_frame in videos.items():
            model.reset()
            for i, frame in read_frames(DATA / src, set(by_frame)):
                if mode == "cold" and i not in by_frame:
                    continue
                if mode == "cold":
                    model.reset()
                t = time.perf_counter()
                boxes, _ = predicted_boxes(model, body, frame, query)
                times.append((time.perf_counter() - t) * 1e3)
                if i in by_frame:
                    im = by_frame[i]
                    s = score_image(boxes, im["people"], im.get("ignore", []), args.iou)
                    score.add(s)
                    print(f"[{mode}] {src}#{i}: {s.tp}/{s.tp + s.fn} found (+{s.hard_found}/{s.hard_total} hard), "
                          f"{s.fp} false, {s.giant} giant")
        for im in images:
            if "frame" in im:
                continue
            photo = cv2.imread(im.get("path") or str(DATA / im["source"]))
            if mode in ("clip", "clip_cold"):
                for take in range(args.clip_takes):
                    scores, identities = play_clip(model, body, photo, im, query, args, cold=mode == "clip_cold",
                                                   take=take)
                    for s in scores:
                        score.add(s)
                    if identities is not None:
                        score.identities.append(identities)
                continue
            for z in args.zoom if mode == "cold" else [1.0]:
                frame, seen = zoomed(photo, im, z)
                model.reset()
                boxes, _ = predicted_boxes(model, body, frame, query)
                s = score_image(boxes, seen["people"], seen.get("ignore", []), args.iou)
                score.add(s)
                print(f"[{mode}] {im['source']}{f' x{z:g}' if z != 1.0 else ''}: {s.tp}/{s.tp + s.fn} found "
                      f"(+{s.hard_found}/{s.hard_total} hard), {s.fp} false, {s.giant} giant")
        report[mode] = {**score.summary(), "model_ms_median": float(np.median(times)) if times else float("nan")}
    return report


def play_clip(model, body, photo, im: dict, query, args, cold: bool,
              take: int = 0) -> tuple[list, IdentityScore | None]:
    """Scores of every frame of ``photo`` played as a webcam-like clip (tracked, or each frame ``cold``), and
    when tracked how steadily its people kept their ids (the app's own id assignment). ``take`` k > 0 plays it
    mirrored (odd k) and with the sway TAKE_PHASE frames further on per pair of takes."""
    import cv2

    from app.tracking import Tracker
    from engine.realfootage.evaluate import IdentityScore, camera_view, mirrored, score_image, swayed

    if take % 2:
        photo, im = mirrored(photo, im)
    phase = TAKE_PHASE * (take // 2)

    k = min(1.0, CLIP_WIDTH / photo.shape[1])
    if args.clip_size:
        photo, im = camera_view(photo, im, *args.clip_size)
    elif k < 1.0:
        photo = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        im = {**im, "people": [{**p, "box": [v * k for v in p["box"]]} for p in im["people"]],
              "ignore": [[v * k for v in r] for r in im.get("ignore", [])]}
    model.reset()
    tracker = Tracker()
    scores, ids = [], []
    for i in range(args.clip_frames):
        frame, seen = swayed(photo, im, i + phase)
        if cold:
            model.reset()
        boxes, result = predicted_boxes(model, body, frame, query)
        if not cold:  # cold frames have no ids to follow
            ids.append(tracker.assign(result.people, result.box, frame).ids)
        scores.append(score_image(boxes, seen["people"], seen.get("ignore", []), args.iou))
    found = sum(s.tp for s in scores)
    total = sum(s.tp + s.fn for s in scores)
    identities = None if cold else IdentityScore.of_clip(scores, ids)
    name = im["source"] + (f" take {take}" if take else "")
    print(f"[{'clip_cold' if cold else 'clip'}] {name}: {found}/{total} person-frames found, "
          f"{sum(s.fp for s in scores)} false" + ("" if cold else f", {identities.switches} id switches, "
                                                  f"{identities.extra_ids} extra ids"))
    return scores, identities


def agreement(args, step: int = 10) -> dict:
    """Recall / precision of the tracked run against cold per-frame runs of the same model on every ``step``-th
    frame of vtest.avi, and the model's mean milliseconds per frame on the frames between."""
    import cv2

    from engine.frame_models import PeopleQuery
    from engine.realfootage.detector import iou_matrix
    from engine.realfootage.tracker import match_boxes

    model, body = open_model(args)
    query = PeopleQuery(threshold=model.info.default_threshold if args.threshold is None else args.threshold)
    cap = cv2.VideoCapture(str(DATA / "vtest.avi"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    schedule = model.tracker.cfg
    reference = {}
    model.tracker.cfg = replace(schedule, landmark_budget=0.0, detect_lag=0)
    for i in range(0, len(frames), step):
        model.reset()
        reference[i], _ = predicted_boxes(model, body, frames[i], query)
    model.tracker.cfg = schedule
    model.reset()
    tp = fp = fn = 0
    times = []
    for i, frame in enumerate(frames):
        if i in reference:
            boxes, _ = predicted_boxes(model, body, frame, query)
            ref = reference[i]
            pairs = match_boxes(iou_matrix(ref, boxes), args.iou)
            tp, fn, fp = tp + len(pairs), fn + len(ref) - len(pairs), fp + len(boxes) - len(pairs)
        else:
            t = time.perf_counter()
            model(frame, query)
            times.append((time.perf_counter() - t) * 1e3)
    return {"recall": tp / max(tp + fn, 1), "precision": tp / max(tp + fp, 1), "reference_people": tp + fn,
            "frames_compared": len(reference), "model_ms_mean": float(np.mean(times)),
            "model_ms_median": float(np.median(times))}


def _size(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"(\d{2,5})x(\d{2,5})", text)
    if found is None:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480; got {text!r}")
    return int(found[1]), int(found[2])


def _with(args: argparse.Namespace, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", type=Path, default=ROOT / "tests" / "data" / "realfootage_boxes.json")
    ap.add_argument("--model", choices=("realfootage", "demo", "instancehmr"), default="realfootage")
    ap.add_argument("--checkpoint", type=Path, help="InstanceHMR checkpoint (--model instancehmr)")
    ap.add_argument("--landmarks", choices=("full", "lite", "mixed"), default=None,
                    help="landmark networks (default: the app's)")
    ap.add_argument("--detect-every", type=int, default=None, help="detector period (default: the app's)")
    ap.add_argument("--landmark-budget", type=float, default=None,
                    help="landmark crops per frame on average (0: everyone every frame; default: the app's)")
    ap.add_argument("--detect-lag", type=int, nargs="+", default=None,
                    help="frames a background detector pass has (default: the app's; 0 = the detector on the model "
                         "thread); several lags run the tracked modes once per lag and report their mean, the "
                         "steadier figure for comparing two builds (one person moves a single run's video column by "
                         "0.02 and the lag alone by up to 0.05)")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--fp32-detector", action="store_true", help="the FP32 detector even where the app runs INT8")
    ap.add_argument("--detect-size", type=int, default=None,
                    help="the detector's longest input side for frames over 768 px (default: the app's)")
    ap.add_argument("--fine-size", type=int, default=None,
                    help="the detector's fine pass's longest input side for frames over 1123 px (0: none; default: "
                         "the app's)")
    ap.add_argument("--zoom", type=float, nargs="+", default=[1.0],
                    help="cold mode: also score every photo as a camera this many times closer would see it (the "
                         "webcam case: bodies cut by the frame), e.g. --zoom 1 1.3 1.7")
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", nargs="+", choices=("cold", "sequence", "agreement", "clip", "clip_cold"),
                    default=["cold", "sequence"])
    ap.add_argument("--clip-frames", type=int, default=60, help="frames of each photo's clip (clip modes)")
    ap.add_argument("--clip-size", type=_size, default=None, metavar="WxH",
                    help="clip modes: play each photo as a camera of this size frames it (cut to the camera's "
                         "aspect: a wide photo's centre, a tall one's top; e.g. 640x480); default: the whole photo "
                         "scaled to 960 px wide")
    ap.add_argument("--clip-takes", type=int, default=1, choices=range(1, 5),
                    help="clip modes: play each photo this many times: as it is, mirrored, and both again with the "
                         "sway 40 frames on (a tracked clip turns on single decisions; more takes, steadier sums)")
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    if "agreement" in args.modes and args.model != "realfootage":
        raise SystemExit("--modes agreement compares tracker schedules of the realfootage model")
    lags = args.detect_lag or [None]
    report = {}
    untracked = [m for m in ("cold", "clip_cold") if m in args.modes]
    if untracked:  # each image on its own: the lag plays no part
        report = evaluate(_with(args, modes=untracked, detect_lag=lags[0]))
    tracked_modes = [m for m in ("sequence", "clip") if m in args.modes]
    per_lag = {}
    for lag in lags:
        one = _with(args, detect_lag=lag)
        tracked = evaluate(_with(one, modes=tracked_modes)) if tracked_modes else {}
        if "agreement" in args.modes:
            tracked["agreement"] = agreement(one)
        per_lag[lag] = tracked
    if len(lags) == 1:
        report.update(per_lag[lags[0]])
    else:
        for key in ("model", "threshold", "annotations"):  # what ran (the same for every lag)
            report.setdefault(key, per_lag[lags[0]].get(key))
        for mode in ("sequence", "clip", "agreement"):
            runs = [per_lag[lag][mode] for lag in lags if mode in per_lag[lag]]
            if runs:
                report[mode] = {"lags": lags, **{k: float(np.mean([r[k] for r in runs])) for k in
                                                 ("recall", "precision")}, "per_lag": runs}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
