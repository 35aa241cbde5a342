"""Median BodyFitter time for 1, 5 and 10 people (IK alone and with the body forward), on CPU."""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from engine.body import create_body_model
from engine.bodyfit import BodyFitter, landmarks_from_body
from train.poses import sample_pose


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
        print(f"N={n:2d}: IK {ik:.2f} ms, fit incl. body forward {full:.2f} ms (median)")


if __name__ == "__main__":
    main()
