"""A MobileNetV3-Large backbone with a small FPN neck, for real-time CPU use.

Output: [B, 64, H/8, W/8]. The InstanceHMR heads then run at stride 1 on that grid, so a 256x256 input gives
32x32 maps (the same 8-pixel cell as the official 512 -> 64 setting) at a fraction of the cost.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .resnet import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["MobileNetV3Backbone"]

# kernel, expansion, out, squeeze-excite, hard-swish, stride  (MobileNetV3-Large, Howard et al. 2019, Table 1)
_LARGE = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)
_TAPS = (5, 11, 14)  # last block at stride 8, 16, 32


def _divisible(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


def _conv_bn_act(in_ch: int, out_ch: int, k: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(out_ch)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        mid = _divisible(ch / 4)
        self.fc1 = nn.Conv2d(ch, mid, 1)
        self.fc2 = nn.Conv2d(mid, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, k: int, exp: int, out_ch: int, se: bool, hs: bool, stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if exp != in_ch:
            layers.append(_conv_bn_act(in_ch, exp, 1, act=act))
        layers.append(_conv_bn_act(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(_conv_bn_act(exp, out_ch, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res else out


class MobileNetV3Backbone(nn.Module):
    """MobileNetV3-Large body + top-down FPN to stride 8."""

    def __init__(self, out_channels: int = 64) -> None:
        super().__init__()
        self.stem = _conv_bn_act(3, 16, 3, 2, act=nn.Hardswish)
        blocks, ch, tap_ch = [], 16, []
        for i, (k, exp, out, se, hs, s) in enumerate(_LARGE):
            blocks.append(InvertedResidual(ch, k, exp, out, se, hs, s))
            ch = out
            if i in _TAPS:
                tap_ch.append(ch)
        self.blocks = nn.ModuleList(blocks)
        self.lateral = nn.ModuleList(_conv_bn_act(c, out_channels, 1, act=None) for c in tap_ch)
        self.smooth = _conv_bn_act(out_channels, out_channels, 3)
        self.backbone_channels = out_channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem((x / 255.0 - self.mean) / self.std)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in _TAPS:
                taps.append(x)
        y = self.lateral[2](taps[2])
        for level in (1, 0):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest") + self.lateral[level](taps[level])
        return self.smooth(y)
