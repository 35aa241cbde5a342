"""Random-weight networks that still find people: for tests and benchmarks without trained weights.

A randomly initialised centre head puts its peaks at arbitrary values, so the 0.2 threshold finds either nobody
or everybody. :func:`force_detections` shifts the centre head's output bias (``final_layers.1.2.bias``) so that
about ``people`` peaks of a given frame pass the threshold, with the threshold placed in the middle of the widest
gap between consecutive peak scores near that count: small numeric differences between backends then cannot move
a peak across the threshold, which keeps backend-parity tests robust. The count is exactly ``people`` unless that cut
would have under a quarter of the best nearby gap.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.decode import DecodeCfg, detect_centers
from engine.models import InstanceHMR, build_model
from engine.preprocess import letterbox

__all__ = ["force_detections", "random_model"]


def random_model(name: str, seed: int = 0, **overrides) -> InstanceHMR:
    """A deterministic random-weight variant (``engine.models.MODELS`` name) in eval mode."""
    torch.manual_seed(seed)
    return build_model(name, **overrides).eval()


@torch.inference_mode()
def force_detections(model: InstanceHMR, frame_bgr: np.ndarray, people: int = 5, threshold: float = 0.2) -> int:
    """Shift the centre bias in place so about ``people`` peaks of ``frame_bgr`` exceed ``threshold``.

    Returns:
        the number of people the model now detects on that frame (within ``people`` - 2 .. ``people`` + 2).
    """
    image, _ = letterbox(frame_bgr, model.cfg.input_size)
    cmap = model(torch.from_numpy(image[None]))["center_map"][0].numpy()
    _, scores = detect_centers(cmap, DecodeCfg(threshold=-np.inf, max_people=64))
    if len(scores) < 2:
        raise ValueError("the centre map has fewer than 2 peaks; cannot calibrate")
    lo, hi = max(1, people - 2), min(len(scores) - 1, people + 2)
    gaps = {k: float(scores[k - 1] - scores[k]) for k in range(lo, hi + 1)}
    best = max(gaps, key=lambda c: (gaps[c], -abs(c - people)))
    # exactly `people` unless that cut would sit much closer to a peak than the best nearby one
    k = people if people in gaps and gaps[people] >= 0.25 * gaps[best] else best
    cut = 0.5 * float(scores[k - 1] + scores[k])
    bias = model.final_layers[1][2].bias
    bias += threshold - cut
    return k
