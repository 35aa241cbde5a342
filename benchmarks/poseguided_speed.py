"""CPU cost per person of 3DCrowdNet and JOTR (network only, and preprocessing), ONNX Runtime and torch.

The networks run at the same cost whatever their weights, so official-format checkpoints with random weights
(built from the official key layout) stand in for the released files, which cannot be downloaded here.
Prints medians per batch size and the per-person slope, with the machine and settings.

    .venv/bin/python -m benchmarks.poseguided_speed [--systems crowdnet,jotr] [--batches 1,2,4,8] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", default="crowdnet,jotr")
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--torch", action="store_true", help="also time the torch eager reference")
    args = p.parse_args()

    import synthetic_poseguided as sp
    import torch

    from engine.checkpoint import load_network
    from engine.runtime.graph import OnnxGraph, TorchGraph
    from export.poseguided import export_poseguided, sample_inputs

    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; torch {torch.__version__}; "
          f"median of {args.runs} runs")
    with tempfile.TemporaryDirectory() as tmp:
        for system in args.systems.split(","):
            ckpt = sp.save(sp.crowdnet_checkpoint(0) if system == "crowdnet" else sp.jotr_checkpoint(0),
                           Path(tmp) / f"{system}.pth")
            net = load_network(ckpt, system=system)
            onnx_path = export_poseguided(net, Path(tmp) / f"{system}.onnx", system)
            feeds_all, _ = sample_inputs(system, max(batches))
            runners = {f"ort x{t}": OnnxGraph(onnx_path, (), ("smpl_pose",), threads=t) for t in threads}
            if args.torch:
                torch.set_num_threads(max(threads))
                runners[f"torch x{max(threads)}"] = TorchGraph(net, ("smpl_pose",))
            for name, runner in runners.items():
                ms = []
                for b in batches:
                    feeds = {k: v[:b] for k, v in feeds_all.items()}
                    ms.append(_median_ms(lambda r=runner, f=feeds: r.run(f), args.runs))
                slope = float(np.polyfit(batches, ms, 1)[0]) if len(batches) > 1 else ms[0]
                cells = "  ".join(f"b{b} {m:7.1f} ms" for b, m in zip(batches, ms))
                print(f"{system:8s} {name:9s} {cells}  | per person {slope:6.1f} ms")
            from engine.poseguided import prepare

            frame = (np.random.default_rng(0).random((576, 768, 3)) * 255).astype(np.uint8)
            xy = np.tile(np.linspace(100, 400, 17, dtype=np.float32)[:, None], (max(batches), 1, 2))
            sc = np.full(xy.shape[:2], 0.9, np.float32)
            pre = _median_ms(lambda f=frame, x=xy, c=sc, s=system: prepare(f, x, c, s), args.runs)
            print(f"{system:8s} preprocess {max(batches)} people {pre:.1f} ms ({pre / max(batches):.2f} ms/person)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
