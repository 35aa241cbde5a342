#!/usr/bin/env python3
"""Per-stage benchmark of the whole per-frame path on a video: where the milliseconds go.

``python benchmarks/stages.py --checkpoint CKPT | --model VARIANT | --realfootage full [--backend B --device D]``
(this was ``python -m export bench``: it renders, so it lives with the other benchmarks, outside ``export``).

Stages, timed separately per frame: decode frame (OpenCV), the people model's own stages (InstanceHMR: preprocess,
inference, decode; the real-footage model: detect, landmarks, fit), body model (mesh for every person), render
overlay (mesh painter), encode video (mp4v). The model runs through the same :class:`PeopleModel` call as the app.
The pipeline here runs them sequentially on one thread, so end-to-end FPS is 1000 / mean per-frame total; the app
overlaps stages on threads and can do better. Body model and renderer are imported lazily and reported as
"n/a (not available)" when their modules are missing. ``profile_ops`` runs ONNX Runtime's profiler to show which
nodes dominate inference.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.frame_models.base import PeopleModel, PeopleQuery
from engine.runtime.device import DEVICE_CHOICES_HELP
from engine.runtime.formats import BACKENDS

__all__ = ["STAGES", "BenchResult", "build_parser", "cpu_name", "machine_info", "main", "profile_ops", "run_bench"]

log = logging.getLogger(__name__)

STAGES = ("decode frame", "body model", "render overlay", "encode video")  # plus the model's own stages
MODEL_STAGE = "model"  # total of the model's stages (the "inference" line of a bottom-up network)


@dataclass
class BenchResult:
    model: str
    frames: int
    people_mean: float
    times_ms: dict[str, list[float]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    model_stages: tuple[str, ...] = ()

    @property
    def model_times(self) -> dict[str, list[float]]:
        return {s: v for s, v in self.times_ms.items() if s in self.model_stages}

    def stat(self, stage: str) -> tuple[float, float]:
        v = self.times_ms.get(stage) or [float("nan")]
        return float(np.median(v)), float(np.percentile(v, 95))

    @property
    def total_ms(self) -> np.ndarray:
        return np.sum([np.asarray(v) for v in self.times_ms.values() if v], axis=0)

    def lines(self) -> list[str]:
        out = [f"model {self.model}, {self.frames} timed frames, {self.people_mean:.1f} people/frame"]
        out.append(f"  {'stage':16s} {'median ms':>10s} {'p95 ms':>10s}")
        for s in [*self.times_ms, *self.unavailable]:
            if s in self.unavailable:
                out.append(f"  {s:16s} {self.unavailable[s]}")
            else:
                med, p95 = self.stat(s)
                out.append(f"  {s:16s} {med:10.2f} {p95:10.2f}")
        model = [np.asarray(v) for s, v in self.model_times.items() if v]
        if model:
            m = np.sum(model, axis=0)
            out.append(f"  {'model (all)':16s} {np.median(m):10.2f} {np.percentile(m, 95):10.2f}")
        others = [np.asarray(v) for s, v in self.times_ms.items() if s not in self.model_times and v]
        if others:
            o = np.sum(others, axis=0)
            out.append(f"  {'non-model':16s} {np.median(o):10.2f} {np.percentile(o, 95):10.2f}")
        tot = self.total_ms
        out.append(f"  {'total':16s} {np.median(tot):10.2f} {np.percentile(tot, 95):10.2f}   "
                   f"end-to-end {1000.0 / np.mean(tot):.1f} FPS (sequential)")
        return out


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "torch", "onnxruntime", "onnx", "cv2"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "not installed"
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def machine_info(threads: int) -> list[str]:
    cpu = cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import torch

    vers = ", ".join(f"{k} {v}" for k, v in _versions().items())
    return [f"machine: {cpu}, {os.cpu_count()} logical CPUs, inference threads {threads}, torch threads "
            f"{torch.get_num_threads()}, load average {load:.2f} at start", f"versions: {vers}"]


def _body_and_renderer() -> tuple[object | None, object | None, dict[str, str]]:
    missing: dict[str, str] = {}
    body = renderer = None
    try:
        from engine.body import create_body_model

        body = create_body_model("anny")
    except Exception as e:  # module still being written, or its data missing: report, don't fail the benchmark
        missing["body model"] = f"n/a (not available: {type(e).__name__}: {str(e)[:80]})"
    try:
        from app.render import MeshAnnotator, Scene, render_overlay

        renderer = (MeshAnnotator(), Scene, render_overlay)
    except Exception as e:
        missing["render overlay"] = f"n/a (not available: {type(e).__name__}: {str(e)[:80]})"
    if body is None:
        missing.setdefault("render overlay", "n/a (needs the body model)")
    return body, renderer, missing


def run_bench(model: PeopleModel, video: str, frames: int, warmup: int = 3, threshold: float | None = None,
              record: bool = True) -> BenchResult:
    """Time every stage on up to ``frames`` frames of ``video`` (after ``warmup`` untimed frames)."""
    import cv2

    from engine.errors import CaptureError

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise CaptureError(f"cannot open video {video} (vtest.avi comes with apt-get install opencv-doc)")
    body, renderer, missing = _body_and_renderer()
    if body is not None:
        from engine.postprocess import people_to_meshes
    times: dict[str, list[float]] = {}
    res = BenchResult(model.info.title, 0, 0.0, times, missing)
    query = PeopleQuery(threshold=model.info.default_threshold if threshold is None else threshold)
    tmp = tempfile.TemporaryDirectory()
    writer = None
    people_total = 0
    try:
        for i in range(frames + warmup):
            step: dict[str, float] = {}
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            step["decode frame"] = (time.perf_counter() - t0) * 1e3
            result = model(frame, query)
            people, box = result.people, result.box
            res.model_stages = tuple(result.timings_ms)
            step.update(result.timings_ms)
            meshes = None
            if body is not None:
                t0 = time.perf_counter()
                meshes = people_to_meshes(people, body, box) if len(people) else None
                step["body model"] = (time.perf_counter() - t0) * 1e3
            out = frame
            if renderer is not None and body is not None:
                annot, scene_cls, render = renderer
                t0 = time.perf_counter()
                out = render(frame, scene_cls(people, meshes, box), [annot])
                step["render overlay"] = (time.perf_counter() - t0) * 1e3
            if record:
                t0 = time.perf_counter()
                if writer is None:
                    h, w = out.shape[:2]
                    writer = cv2.VideoWriter(str(Path(tmp.name) / "bench.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                             25.0, (w, h))
                writer.write(out)
                step["encode video"] = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                for stage, ms in step.items():
                    times.setdefault(stage, []).append(ms)
                people_total += len(people)
                res.frames += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        tmp.cleanup()
    if not record:
        missing["encode video"] = "skipped (--no-record)"
    res.people_mean = people_total / max(res.frames, 1)
    return res


def profile_ops(onnx_path: str | Path, runs: int = 20, threads: int = 2, top: int = 12) -> list[str]:
    """ONNX Runtime profile of ``runs`` inferences: time per op type and the most expensive nodes."""
    import onnxruntime as ort

    from engine.runtime.meta import ArtifactMeta

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    tmp = tempfile.TemporaryDirectory()
    opts.profile_file_prefix = str(Path(tmp.name) / "ort")
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    meta = ArtifactMeta.from_json(sess.get_modelmeta().custom_metadata_map["instancehmr"], str(onnx_path))
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, meta.input_size, meta.input_size)).astype(np.float32)
    for _ in range(runs):
        sess.run(None, {"images": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    tmp.cleanup()
    by_type: dict[str, float] = {}
    by_node: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_type[op] = by_type.get(op, 0.0) + e["dur"] / 1e3 / runs
            node = e["name"].removesuffix("_kernel_time")
            by_node[node] = by_node.get(node, 0.0) + e["dur"] / 1e3 / runs
    total = sum(by_type.values())
    by_part: dict[str, float] = {}
    for node, ms in by_node.items():  # legacy-exporter names: /model/<module>/...
        parts = node.split("/")
        part = "backbone" if len(parts) > 2 and parts[2] == "backbone" else "heads + ID/param branches"
        by_part[part] = by_part.get(part, 0.0) + ms
    lines = [f"ORT profile of {Path(onnx_path).name}: {total:.2f} ms of kernels per run ({runs} runs); "
             + ", ".join(f"{k} {v:.1f} ms ({100 * v / total:.0f}%)" for k, v in sorted(by_part.items()))]
    for op, ms in sorted(by_type.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {op:24s} {ms:8.2f} ms  {100 * ms / total:5.1f}%")
    lines.append(f"  top {top} nodes:")
    for node, ms in sorted(by_node.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {ms:7.2f} ms  {node}")
    return lines


VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def build_parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog="benchmarks/stages.py", description="per-stage timings on a video")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="InstanceHMR checkpoint (.pt/.pth/.pkl)")
    src.add_argument("--model", help="random-weight variant (resnet50, hrnet32, resnet18, mobilenetv3), for timing")
    src.add_argument("--realfootage", choices=("full", "lite", "mixed"),
                     help="the bundled real-footage model (detector + BlazePose full/lite/mixed + body fit)")
    b.add_argument("--input-size", type=int, help="override the network input size (multiple of 32)")
    b.add_argument("--seed", type=int, default=0, help="seed for --model")
    b.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
    b.add_argument("--device", default="cpu", help=f"{DEVICE_CHOICES_HELP} (default cpu: the CPU benchmark)")
    b.add_argument("--input", default=VTEST, help="video file")
    b.add_argument("--frames", type=int, default=50)
    b.add_argument("--threads", type=int, default=2, help="inference threads (ORT intra-op; torch)")
    b.add_argument("--torch-threads", type=int, default=1,
                   help="torch threads for the body model when inference is not torch (2 threads on a shared 2-core "
                        "box ran the body model 50x slower than 1)")
    b.add_argument("--people", type=int, default=5, help="--model: calibrate the centre bias to ~N people")
    b.add_argument("--cache-dir", help="artifact cache (default: ~/.cache/instancehmr-live)")
    b.add_argument("--no-record", action="store_true", help="skip the encode-video stage")
    b.add_argument("--profile-ops", action="store_true", help="onnxruntime: also print ORT's per-node profile")
    b.add_argument("--debug", action="store_true", help="show tracebacks")
    return b


def _load_model(args: argparse.Namespace):
    from engine.checkpoint import load_network
    from engine.models import build_model
    from testing.random_models import random_model

    if args.model:
        overrides = {"input_size": args.input_size} if args.input_size else {}
        return random_model(args.model, args.seed, **overrides)
    model = load_network(args.checkpoint, system="instancehmr")
    if args.input_size and args.input_size != model.cfg.input_size:
        resized = build_model(model.cfg, input_size=args.input_size)
        resized.load_state_dict(model.state_dict())
        model = resized.eval()
    return model


def _bench_realfootage(args: argparse.Namespace) -> int:
    import torch

    from app.config import REALFOOTAGE_DIR
    from engine.body import create_body_model
    from engine.frame_models import open_realfootage

    torch.set_num_threads(args.torch_threads)
    model = open_realfootage(REALFOOTAGE_DIR, create_body_model("anny"), landmarks=args.realfootage,
                             threads=args.threads)
    print("\n".join(machine_info(args.threads)))
    res = run_bench(model, args.input, args.frames, record=not args.no_record)
    print("\n".join(res.lines()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.realfootage:
        return _bench_realfootage(args)
    import torch

    from engine.checkpoint import save_checkpoint
    from engine.frame_models.bottomup import BottomUpModel
    from engine.runtime.auto import cache_root, onnx_for_checkpoint, open_backend
    from export.artifacts import install_builder
    from export.compare import load_frames
    from testing.random_models import force_detections

    install_builder()
    model = _load_model(args)
    if args.model:  # a random network finds nobody: shift its centre bias to ~N people on the first frame
        n = force_detections(model, load_frames(args.input, 1)[0], args.people)
        log.info("random %s calibrated to %d people on frame 0", args.model, n)
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt is None or (args.input_size and args.input_size != model.cfg.input_size):
        tag = args.model or Path(args.checkpoint).stem
        ckpt = save_checkpoint(model, cache_root(args.cache_dir) / "bench" /
                               f"{tag}-{model.cfg.input_size}-seed{args.seed}-p{args.people}.pt")
    backend = open_backend(ckpt, args.backend, args.cache_dir, threads=args.threads, device=args.device)
    if backend.spec.name != "torch":
        torch.set_num_threads(args.torch_threads)
    print("\n".join(machine_info(args.threads)))
    backend.warmup(2)
    print(f"model {model.cfg.name}@{model.cfg.input_size} ({'random weights' if args.model else ckpt}), "
          f"{backend.spec.name} {backend.spec.device} {backend.spec.precision}")
    res = run_bench(BottomUpModel(backend, model.cfg.name), args.input, args.frames, record=not args.no_record)
    print("\n".join(res.lines()))
    if args.profile_ops and backend.spec.name == "onnxruntime":
        print("\n".join(profile_ops(onnx_for_checkpoint(ckpt, args.cache_dir)[0], threads=args.threads)))
    return 0


def main(argv: list[str] | None = None) -> int:
    from engine.errors import AppError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("torch", "torch.onnx", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return cmd_bench(args)
    except AppError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
