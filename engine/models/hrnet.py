"""HRNet-W32 backbone as used by ROMP / InstanceHMR ("HigherResolutionNet"): [B,3,H,W] -> [B,32,H/4,W/4].

Only the highest-resolution branch leaves the network; the last stage-4 module therefore fuses into branch 0 only.
Normalisation x/255*2-1 happens inside, as in the official code.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BasicBlock, Bottleneck, make_res_layer

__all__ = ["HRNetBackbone"]


def _conv_bn(in_ch: int, out_ch: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, k, stride, k // 2, bias=False), nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by an all-to-all (or all-to-first) fusion."""

    def __init__(self, channels: list[int], num_blocks: int, multi_scale_output: bool = True) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels)
        fuse_layers = []
        for i in range(n if multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:  # lower resolution -> 1x1 conv + BN + nearest upsample
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                                             nn.BatchNorm2d(channels[i]),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> chain of stride-2 3x3 convs, ReLU on all but the last
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                y = y + (xs[j] if i == j else row[j](xs[j]))
            out.append(self.relu(y))
        return out


def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(pre):
            layers.append(_conv_bn(pre[i], c, 3, 1, relu=True) if pre[i] != c else None)
        else:  # new branch from the lowest existing resolution
            n_down = i + 1 - len(pre)
            steps = [_conv_bn(pre[-1], c if k == n_down - 1 else pre[-1], 3, 2, relu=True) for k in range(n_down)]
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HRNetBackbone(nn.Module):
    """HRNet-W32 (stages of 1/4/3 modules, 4 BasicBlocks per branch, widths 32/64/128/256)."""

    STAGES = ((1, [32, 64]), (4, [32, 64, 128]), (3, [32, 64, 128, 256]))

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1, ch = make_res_layer(Bottleneck, 64, 64, 4)
        pre = [ch]
        for s, (num_modules, channels) in enumerate(self.STAGES, start=2):
            setattr(self, f"transition{s - 1}", _transition(pre, channels))
            last = s == 4
            modules = [HighResolutionModule(list(channels), 4, multi_scale_output=not (last and m == num_modules - 1))
                       for m in range(num_modules)]
            setattr(self, f"stage{s}", nn.Sequential(*modules))
            pre = channels
        self.backbone_channels = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0 * 2.0 - 1.0
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for s in (2, 3, 4):
            transition = getattr(self, f"transition{s - 1}")
            # as in the official code, every non-identity transition reads the lowest-resolution output
            xs = [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]
            for module in getattr(self, f"stage{s}"):
                xs = module(xs)
            ys = xs
        return ys[0]
