#!/usr/bin/env python3
"""One-command GPU check: ``python benchmarks/gpu_check.py --out report.json`` (under 4 minutes on one GPU).

What it measures, each section in the JSON report (a section that cannot run records why instead of failing the
whole check, so one missing piece never costs the device time already spent):

* ``environment``: torch / CUDA / GPU, onnxruntime providers, TensorRT availability.
* ``network``: network-only milliseconds per variant (mobilenetv3@256, resnet18@320, resnet50@512, hrnet32@512,
  random weights) and precision (fp32 eager, fp16 eager, fp16 + CUDA graph), batch 1 and 8, channels-last,
  median of timed runs after warm-up, synchronised.
* ``parity``: FP16 (islands, CUDA graph, device letterbox + decoder) vs FP32 people on real frames, for a
  random R50@512 calibrated to about 5 people.
* ``end_to_end``: the headless app (``--device cuda``, recording on) at 1280x720 for the bundled model, an R50@512
  scene checkpoint with about 5 people and a crowd of 64; FPS and per-stage milliseconds from the app's own stats.
* ``realfootage``: the real-footage ONNX networks on ONNX Runtime's CUDA provider when onnxruntime-gpu is present:
  a landmark crop, and the detector's first and fine pass at a 1280x720 frame's inputs (512x288, 704x416).

``--cpu-smoke`` runs every section on the CPU at toy sizes with few iterations (the CUDA-graph rows use the eager
stand-in), so a CPU test proves the script end to end; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("gpu_check")

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DEMO_CLIP = ROOT / "assets" / "demo" / "demo_crowd.mp4"


@dataclass(frozen=True)
class Plan:
    """Sizes and iteration counts: the full GPU check, or the CPU smoke run."""

    device: str
    variants: tuple[tuple[str, int], ...]
    batches: tuple[int, ...]
    warmup: int
    runs: int
    frame_size: tuple[int, int]  # (w, h) of the end-to-end clip
    e2e_frames: int
    r50_size: int
    parity_frames: int
    crowd: int
    modes: tuple[str, ...] = ("fp32 eager", "fp16 eager", "fp16 + CUDA graph")


FULL = Plan("cuda:0", (("mobilenetv3", 256), ("resnet18", 320), ("resnet50", 512), ("hrnet32", 512)), (1, 8),
            warmup=10, runs=50, frame_size=(1280, 720), e2e_frames=240, r50_size=512, parity_frames=8, crowd=64)
# CPU autocast FP16 has no fast kernels (seconds per call), so the smoke run keeps one FP16 row and one parity frame
SMOKE = Plan("cpu", (("mobilenetv3", 64),), (1,), warmup=1, runs=1, frame_size=(192, 108), e2e_frames=3,
             r50_size=128, parity_frames=1, crowd=6, modes=("fp32 eager", "fp16 + CUDA graph"))


def _section(report: dict, name: str, fn: Callable[[], object]) -> None:
    """Run one section; record its result, or its one-line failure, and how long it took."""
    t = time.perf_counter()
    try:
        report[name] = fn()
    except Exception as e:  # a failed section is a finding, not a reason to lose the others
        log.error("%s failed: %s", name, e)
        report[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                        "traceback": traceback.format_exc(limit=4)}
    report.setdefault("seconds", {})[name] = round(time.perf_counter() - t, 1)


def environment(plan: Plan) -> dict:
    import torch

    from engine.runtime.device import ort_gpu_providers
    from engine.runtime.tensorrt_backend import tensorrt_status
    from engine.runtime.torch_cuda import device_summary

    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        ort_version = ort.__version__
    except ImportError:
        providers, ort_version = [], "not installed"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "device": plan.device, "gpu": device_summary(plan.device),
            "onnxruntime": ort_version,
            "ort_providers": providers, "ort_gpu_providers": list(ort_gpu_providers()),
            "tensorrt": dict(zip(("usable", "why"), tensorrt_status()))}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _time_ms(fn: Callable[[], object], device: str, warmup: int, runs: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def _modes(device: str) -> dict[str, dict]:
    """Precision modes: TorchCudaBackend arguments (on the CPU, graphs and fp16 run through the eager stand-in)."""
    from engine.runtime.torch_cuda import eager_capture

    cpu = {} if device.startswith("cuda") else {"capture": eager_capture}
    return {  # keyword arguments of TorchCudaBackend per mode
"fp32 eager": {"fp16": False, "cuda_graphs": False},
            "fp16 eager": {"fp16": True, "cuda_graphs": False, **cpu},
            "fp16 + CUDA graph": {"fp16": True, "cuda_graphs": True, **cpu}}


def network(plan: Plan) -> list[dict]:
    import torch

    from engine.runtime.torch_cuda import TorchCudaBackend
    from testing.random_models import random_model

    rows = []
    for variant, size in plan.variants:
        for mode, kw in _modes(plan.device).items():
            if mode not in plan.modes:
                continue
            be = TorchCudaBackend(random_model(variant, input_size=size), plan.device, **kw)
            for batch in plan.batches:
                x = torch.rand(batch, 3, size, size, device=plan.device) * 255
                try:
                    ms = _time_ms(lambda x=x, be=be: be.forward_tensor(x), plan.device, plan.warmup, plan.runs)
                    rows.append({"model": variant, "input": size, "mode": mode, "batch": batch,
                                 "ms": round(ms, 3), "captures": be.runner.captures})
                except Exception as e:  # e.g. out of memory at batch 8: keep the other rows
                    rows.append({"model": variant, "input": size, "mode": mode, "batch": batch,
                                 "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
                log.info("network %s", rows[-1])
            be.close()
    return rows


def _frames(plan: Plan, count: int) -> list[np.ndarray]:
    """Real street frames (vtest.avi, else the bundled demo clip), resized to the end-to-end frame size."""
    import cv2

    from export.compare import load_frames

    src = VTEST if VTEST.is_file() else DEMO_CLIP
    return [cv2.resize(f, plan.frame_size, interpolation=cv2.INTER_LINEAR) for f in load_frames(str(src), count, 3)]


def parity(plan: Plan) -> dict:
    from export.fp16 import torch_fp16_report
    from testing.random_models import force_detections, random_model

    frames = _frames(plan, plan.parity_frames)
    model = random_model("resnet50" if plan.device != "cpu" else "mobilenetv3", input_size=plan.r50_size)
    people = force_detections(model, frames[0], 5 if plan.device != "cpu" else 3)
    rel, diff = torch_fp16_report(model, frames, plan.device)
    return {"model": f"{model.cfg.name}@{plan.r50_size} random, calibrated to {people} people on frame 0",
            "frames": len(frames), "max_rel_map_error": rel, "matched": diff.matched, "missing": diff.missing,
            "extra": diff.extra, "max_error": {"cam": diff.cam, "pose_rad": diff.pose, "betas": diff.betas,
                                               "score": diff.score},
            "same_people": diff.same_detections, "summary": diff.summary()}


def _write_clip(path: Path, plan: Plan) -> Path:
    import cv2

    frames = _frames(plan, 40)
    w, h = plan.frame_size
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for i in range(plan.e2e_frames):
        out.write(frames[i % len(frames)])
    out.release()
    return path


def _scene_checkpoint(path: Path, plan: Plan, people: int, frame: np.ndarray) -> Path:
    """An R50 scene checkpoint (people placed like a street crowd) with its centre bias set for ``people``."""
    import torch

    from engine.checkpoint import load_network, save_checkpoint
    from engine.decode import DecodeCfg, detect_centers
    from engine.models import build_model
    from engine.preprocess import letterbox
    from testing.random_models import force_detections
    from testing.scene import make_scene_checkpoint

    variant = "resnet50" if plan.device != "cpu" else "mobilenetv3"
    base = load_network(make_scene_checkpoint(path.with_suffix(".base.pt"), variant), system="instancehmr")
    model = build_model(base.cfg, input_size=plan.r50_size)
    model.load_state_dict(base.state_dict())
    model.eval()
    with torch.inference_mode():
        cmap = model(torch.from_numpy(letterbox(frame, plan.r50_size)[0][None]))["center_map"][0].numpy()
    peaks = len(detect_centers(cmap, DecodeCfg(threshold=-np.inf, max_people=64))[0])
    got = force_detections(model, frame, max(1, min(people, peaks - 2)))  # a small map has fewer candidate cells
    log.info("scene checkpoint %s@%d: %d people on the first frame", variant, plan.r50_size, got)
    return save_checkpoint(model, path)


def _run_app(clip: Path, ckpt: Path, out_dir: Path, plan: Plan) -> dict:
    import contextlib
    import io

    from app.config import build_cfg, build_parser
    from app.headless import run_headless
    from app.session import build_session

    argv = ["--input", str(clip), "--checkpoint", str(ckpt), "--headless", "--record", str(out_dir / "out.mp4"),
            "--device", plan.device, "--backend", "torch", "--max-people", "64"]  # torch: the path built for GPUs
    cfg = build_cfg(build_parser().parse_args(argv))
    session = build_session(cfg, render=True)
    with contextlib.redirect_stdout(io.StringIO()) as text:
        rc = run_headless(session)
    summary = session.pipeline.stats.summary()
    info = session.pipeline.model.info
    return {"rc": rc, "fps": round(float(summary["fps"]), 1), "frames": summary["frames"],
            "people_last_frame": getattr(session.pipeline.stats, "people", None),
            "stages_ms": {k: round(v["mean"], 2) for k, v in summary["stages_ms"].items()},  # type: ignore[union-attr]
            "model": f"{info.label} ({info.backend})", "app_output": text.getvalue().strip().splitlines()[-2:]}


def end_to_end(plan: Plan, work: Path) -> dict:
    from app.config import DEMO_CHECKPOINT

    clip = _write_clip(work / "clip.mp4", plan)
    first = _frames(plan, 1)[0]
    cases = {"bundled": lambda: DEMO_CHECKPOINT,
             "r50 scene, 5 people": lambda: _scene_checkpoint(work / "r50_5.pt", plan, 5, first),
             f"r50 scene, crowd of {plan.crowd}": lambda: _scene_checkpoint(work / "r50_crowd.pt", plan, plan.crowd,
                                                                              first)}
    out = {"clip": f"{plan.frame_size[0]}x{plan.frame_size[1]}, {plan.e2e_frames} frames, recording on"}
    for name, ckpt in cases.items():
        try:
            out[name] = _run_app(clip, ckpt(), work, plan)
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        log.info("end-to-end %s: %s", name, out[name])
    return out


def realfootage(plan: Plan) -> dict:
    """Each real-footage network alone, at the inputs a ``plan.frame_size`` frame gives it: the landmark networks'
    fixed crop, and the detector's first pass and (where the frame gets one) its fine pass, whose sizes follow the
    frame (a size-free graph run at 1x1 would time nothing real)."""
    from app.config import REALFOOTAGE_DIR
    from engine.realfootage.detector import PersonDetector
    from engine.runtime.device import ort_gpu_providers, providers_for
    from engine.runtime.graph import OnnxGraph

    if plan.device.startswith("cuda") and not ort_gpu_providers():
        return {"skipped": "onnxruntime-gpu is not installed (the installed onnxruntime has no CUDA provider)"}
    providers = providers_for("cpu" if plan.device == "cpu" else "cuda")
    width, height = plan.frame_size
    frame = np.zeros((height, width, 3), np.uint8)
    rows = {}
    for name in ("nanodet", "blazepose_full", "blazepose_lite"):
        g = OnnxGraph(REALFOOTAGE_DIR / f"{name}.onnx", (), (), threads=1, providers=providers)
        inp = g.session.get_inputs()[0]
        if name == "nanodet":
            det = PersonDetector(g)
            passes = {"nanodet": det.preprocess(frame)[0]}
            if det.fine_side(height, width):
                passes["nanodet_fine"] = det.preprocess(frame, fine=True)[0]
        else:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]  # one crop
            passes = {name: np.random.default_rng(0).random(shape, dtype=np.float32)}
        names = [o.name for o in g.session.get_outputs()]
        for key, x in passes.items():
            feeds = {inp.name: x}
            ms = _time_ms(lambda g=g, feeds=feeds, names=names: g.session.run(names, feeds), "cpu", plan.warmup,
                          plan.runs)
            rows[key] = {"ms": round(ms, 3), "input": list(x.shape), "providers": list(g.providers), "note": g.note}
        g.close()
    return rows


def run(plan: Plan, out: Path, sections: tuple[str, ...]) -> dict:
    import os

    from engine.runtime.artifacts import CACHE_ENV
    from export.artifacts import install_builder

    install_builder()
    report: dict = {"plan": plan.__dict__ | {"variants": [list(v) for v in plan.variants]},
                    "smoke": plan.device == "cpu", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t0 = time.perf_counter()
    previous = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        if previous is None:  # no exports left behind in the user's cache
            os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        steps = {"environment": lambda: environment(plan), "network": lambda: network(plan),
                 "parity": lambda: parity(plan), "end_to_end": lambda: end_to_end(plan, Path(tmp)),
                 "realfootage": lambda: realfootage(plan)}
        try:
            for name in sections:
                _section(report, name, steps[name])
                out.write_text(json.dumps(report, indent=2, default=str))  # partial results survive a timeout
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(report, indent=2, default=str))
    return report


SECTIONS = ("environment", "network", "parity", "end_to_end", "realfootage")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check.json", help="JSON report path")
    p.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU: proves the script, measures nothing")
    p.add_argument("--device", default=None, help="CUDA device (default cuda:0)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--e2e-frames", type=int, help="frames per end-to-end case (default 240)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("torch", "torch.onnx", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    plan = SMOKE if args.cpu_smoke else FULL
    if args.device:
        plan = Plan(**{**plan.__dict__, "device": args.device})
    if args.e2e_frames:
        plan = Plan(**{**plan.__dict__, "e2e_frames": args.e2e_frames})
    import torch

    if plan.device == "cpu":
        torch.set_num_threads(1)  # the smoke run shares a small CPU; more threads only contend
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device: torch.cuda.is_available() is False; run with --cpu-smoke to check the "
                  "script on a CPU", file=sys.stderr)
            return 4
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"error: unknown sections {unknown}; expected a subset of {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    report = run(plan, Path(args.out), sections)
    failed = [k for k in sections if isinstance(report.get(k), dict) and "error" in report[k]]
    print(f"wrote {args.out} in {report['total_seconds']} s" + (f"; failed sections: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
