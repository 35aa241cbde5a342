"""Command line entry point (``python run_app.py``).

Minimal headless path for images; the live app grows from here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2

from engine.errors import AppError, CaptureError, ConfigError, OutputError

from .outputs import result_arrays, write_npz

log = logging.getLogger("app")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "assets" / "models" / "demo_mobilenetv3.pt"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_app.py", description="Real-time multi-person 3D human meshes (InstanceHMR)")
    p.add_argument("--input", help="image, folder of images, video file or stream URL")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="network weights (default: bundled demo)")
    p.add_argument("--body-model", choices=("anny", "smpl"), default="anny")
    p.add_argument("--smpl-dir", help="folder or file with SMPL_NEUTRAL.pkl/.npz (for --body-model smpl)")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime", "torch"), default="torch")
    p.add_argument("--threshold", type=float, default=0.2, help="centre-map score threshold (official: 0.2)")
    p.add_argument("--max-people", type=int, default=64)
    p.add_argument("--save-npz", help="write <stem>.npz results into this folder")
    p.add_argument("--headless", action="store_true", help="no window: process the input and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _images(src: Path) -> list[Path]:
    if src.is_dir():
        files = sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CaptureError(f"no images in folder {src} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if src.is_file() and src.suffix.lower() in IMAGE_SUFFIXES:
        return [src]
    raise CaptureError(f"input not found or not an image: {src}")


def run(args: argparse.Namespace) -> int:
    from engine.body import create_body_model
    from engine.checkpoint import load_network
    from engine.decode import DecodeCfg
    from engine.predictor import Predictor
    from engine.runtime.torch_backend import TorchBackend

    if not args.input:
        raise ConfigError("no input given: pass --input IMAGE|FOLDER")
    if not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be in [0, 1], got {args.threshold}")
    files = _images(Path(args.input))
    out_dir = Path(args.save_npz) if args.save_npz else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create --save-npz folder {out_dir}: {e.strerror}") from e
    net = load_network(args.checkpoint)
    body = create_body_model(args.body_model, smpl_path=args.smpl_dir)
    predictor = Predictor(TorchBackend(net), body, DecodeCfg(args.threshold, args.max_people))
    for f in files:
        frame = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if frame is None:
            raise CaptureError(f"cannot decode image {f} (corrupt or unsupported format)")
        result = predictor(frame)
        log.info("%s: %d people", f.name, len(result.people))
        if out_dir is not None:
            write_npz(out_dir / f"{f.stem}.npz", result_arrays(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except AppError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
