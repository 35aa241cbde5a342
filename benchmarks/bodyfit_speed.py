"""Median BodyFitter time for 1, 5 and 10 people (IK alone and with the body forward), on CPU.

Prints the speed-up against ``REFERENCE_MS``: the same measurement of the implementation before the IK was batched
by tree level (per-joint loops, np.cross/np.linalg.norm), taken interleaved with the current one on the development
machine (2 shared cores, torch threads 1; median of four interleaved runs). The results of both agree to ~1e-14.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from engine.body import create_body_model
from engine.bodyfit import BodyFitter, landmarks_from_body
from train.poses import sample_pose

# N -> (solve ms, fit ms) of the reference implementation (median).
REFERENCE_MS: dict[int, tuple[float, float]] = {1: (16.8, 22.5), 5: (18.5, 25.5), 10: (17.6, 26.2)}


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the body forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"torch threads {args.threads}, repeats {args.repeats}, body anny")
    body = create_body_model("anny")
    fitter = BodyFitter(body)
    rng = np.random.default_rng(0)
    for n in (1, 5, 10):
        pose = np.stack([sample_pose(rng).body_pose for _ in range(n)])
        with torch.no_grad():
            out = body(torch.tensor([[np.pi, 0.0, 0.0]] * n, dtype=torch.float32), torch.from_numpy(pose))
        world = landmarks_from_body(out.vertices.numpy(), out.joints[:, :24].numpy(), fitter.vertex_ids,
                                    fitter.joint_map)
        world += rng.normal(0.0, 0.01, world.shape)
        vis = np.ones((n, 33))
        ik = _median_ms(lambda w=world, v=vis: fitter.solve(w, v), args.repeats)
        full = _median_ms(lambda w=world, v=vis: fitter.fit(w, v), args.repeats)
        ref_ik, ref_full = REFERENCE_MS[n]
        print(f"N={n:2d}: IK (solve) {ik:6.2f} ms (x{ref_ik / ik:.1f} vs {ref_ik:.1f}), fit incl. body forward "
              f"{full:6.2f} ms (x{ref_full / full:.1f} vs {ref_full:.1f}) (medians)")


if __name__ == "__main__":
    main()
