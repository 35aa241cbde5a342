"""Synthetic checkpoints for tests, benchmarks and UI work when no trained weights are at hand.

A network with random weights "detects" people anywhere and poses them wildly, and its camera puts every body at
the image centre at full-frame size, which makes timings and pictures unrepresentative. :func:`make_scene_checkpoint`
keeps the real architecture and cost but wires a few layers by hand so that the output looks like a crowd:

* the camera head copies the coordinate channels, so each person is drawn at the cell where it was detected,
  with a scale that grows towards the bottom of the frame (nearer people look bigger, as in a street scene);
* the root rotation is biased to upright-facing-the-camera and the body pose is kept small;
* the centre map gets a positive bias, so the top local maxima pass the threshold (``people`` of them on average
  is tuned by the bias; NMS keeps local maxima).

The network still runs every layer, so inference time is the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.checkpoint import save_checkpoint
from engine.models import build_model

# 6D (row-major 3x2, first two columns) of diag(1, -1, -1): upright and facing the camera in y-down camera space
_UPRIGHT_6D = (1.0, 0.0, 0.0, -1.0, 0.0, 0.0)


@torch.no_grad()
def make_scene_checkpoint(path: str | Path, variant: str = "mobilenetv3", seed: int = 0, center_bias: float = 1.0,
                          scale_raw: float = -18.0, scale_slope: float = 4.0, pose_gain: float = 0.05) -> Path:
    """Save a checkpoint whose outputs look like people standing in a scene (see the module docstring)."""
    torch.manual_seed(seed)
    m = build_model(variant).eval()
    nfeat = m.final_layers[2][0][0].in_channels - 2  # the last two input channels are the x, y coordinate maps
    conv0, bn0 = m.final_layers[2][0][0], m.final_layers[2][0][1]
    conv0.weight.zero_()
    conv0.bias.zero_()
    k = conv0.kernel_size[0] // 2
    for ch, (src, sign) in enumerate(((nfeat, 1.0), (nfeat, -1.0), (nfeat + 1, 1.0), (nfeat + 1, -1.0))):
        conv0.weight[ch, src, k, k] = sign
    conv0.bias[4] = 1.0  # constant channel
    bn0.running_mean.zero_()
    bn0.running_var.fill_(1.0 - bn0.eps)
    bn0.weight.fill_(1.0)
    bn0.bias.zero_()
    for stage in m.final_layers[2][1]:
        for block in stage:
            block.bn2.weight.zero_()  # residual branch off: each block becomes relu(x) = x for x >= 0
            block.bn2.bias.zero_()
    out = m.final_layers[2][2]
    out.weight.zero_()
    out.bias.zero_()
    out.weight[0, 4] = scale_raw  # s = 1.1 ** (scale_raw + slope * y)
    out.weight[0, 2], out.weight[0, 3] = scale_slope, -scale_slope
    out.weight[1, 0], out.weight[1, 1] = 1.0, -1.0  # tx = x
    out.weight[2, 2], out.weight[2, 3] = 1.0, -1.0  # ty = y
    m.final_layers[1][2].bias.fill_(center_bias)
    po = m.params_outconv
    po.weight.mul_(pose_gain)
    po.bias.zero_()
    po.bias[:6] = torch.tensor(_UPRIGHT_6D)
    return save_checkpoint(m, path)


def write_synthetic_video(path: str | Path, frames: int = 30, fps: float = 25.0, size: tuple[int, int] = (320, 240),
                          ) -> Path:
    """A small mp4v clip with moving shapes (for frame-count/duration tests that need a whole file)."""
    import cv2
    import numpy as np

    from app.paths import Cv2Path

    path = Path(path)
    w, h = size
    with Cv2Path(path) as name:
        writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise RuntimeError(f"cannot write {path}")
        for i in range(frames):
            img = np.full((h, w, 3), 60, np.uint8)
            x = int((i / max(frames - 1, 1)) * (w - 40))
            cv2.rectangle(img, (x, h // 4), (x + 30, h // 4 + 90), (40, 160, 220), -1)
            cv2.circle(img, (w - x - 20, h // 2), 18, (200, 80, 60), -1)
            writer.write(img)
        writer.release()
    return path
