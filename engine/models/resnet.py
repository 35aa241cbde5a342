"""ResNet backbones: ROMP's ResNet-50 with its deconvolution head (to stride 4), and a ResNet-18 variant.

Input normalisation (x/255, ImageNet mean/std) happens inside the network so exported graphs take raw RGB.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BasicBlock, Bottleneck, make_res_layer

__all__ = ["ResNetBackbone"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNetBackbone(nn.Module):
    """ResNet body + three stride-2 transposed convs: [B,3,H,W] RGB 0..255 -> [B, 64, H/4, W/4].

    Args:
        depth: 18 or 50.
        deconv_channels: widths of the three transposed convs (ROMP: 256, 128, 64).
    """

    def __init__(self, depth: int = 50, deconv_channels: tuple[int, int, int] = (256, 128, 64)) -> None:
        super().__init__()
        block, layers = _DEPTHS[depth]
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        ch = 64
        self.layer1, ch = make_res_layer(block, ch, 64, layers[0])
        self.layer2, ch = make_res_layer(block, ch, 128, layers[1], stride=2)
        self.layer3, ch = make_res_layer(block, ch, 256, layers[2], stride=2)
        self.layer4, ch = make_res_layer(block, ch, 512, layers[3], stride=2)
        deconv: list[nn.Module] = []
        for out_ch in deconv_channels:
            deconv += [nn.ConvTranspose2d(ch, out_ch, kernel_size=4, stride=2, padding=1, output_padding=0, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            ch = out_ch
        self.deconv_layers = nn.Sequential(*deconv)
        self.backbone_channels = ch
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x / 255.0 - self.mean) / self.std  # same op order as the official code
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.deconv_layers(x)
