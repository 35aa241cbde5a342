"""InstanceHMR (Gwon et al., CVPR 2024): ROMP-style bottom-up heads with instance-aware contrastive ID maps.

Network layout (names are the official state-dict keys, as in the official code):
    backbone -> concat 2 coordinate channels -> three heads ``final_layers.{1,2,3}`` (center 1ch, camera 3ch with
    s = 1.1^raw, joint heatmaps 24ch) -> centre-aligned and joint-aligned 64-d ID maps (``centerid_*``,
    ``jointid_*``; sine positional encoding added to the centre branch) -> parameter branch (``params_*``)
    consuming heatmaps + ID maps -> 82-channel parameter map (cam 3, root 6D 6, body axis-angle 63, betas 10).
The projectors ``ct_projector`` / ``jt_projector`` are only used by the contrastive loss during training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .blocks import BasicBlock, TransBlock
from .hrnet import HRNetBackbone
from .mobilenet import MobileNetV3Backbone
from .resnet import ResNetBackbone

__all__ = ["MODELS", "InstanceHMR", "ModelCfg", "build_model", "coord_maps", "position_encoding_sine"]

NUM_PARAMS = 82  # cam 3 + global orient 6D 6 + body pose 21x3 63 + betas 10
NUM_JOINTS = 24
BACKBONE_STRIDES = {"resnet50": 4, "hrnet32": 4, "resnet18": 4, "mobilenetv3": 8}  # backbone output stride


@dataclass(frozen=True)
class ModelCfg:
    """Architecture and input contract; stored in our checkpoints and copied into export metadata.

    Attributes:
        name: variant name (key of :data:`MODELS`).
        backbone: "resnet50" | "hrnet32" | "resnet18" | "mobilenetv3".
        input_size: square network input in pixels.
        head_channels: width of the three ROMP heads.
        id_channels: width of the instance (ID) branches.
        param_channels: width of the parameter-branch transitions (its residual blocks use twice this).
        head_stride: stride of the first conv of every head/branch (2: stride-4 backbones, 1: stride-8 ones).
        id_dim: dimension of the ID embeddings (and of the positional encoding).
    """

    name: str
    backbone: str
    input_size: int = 512
    head_channels: int = 64
    id_channels: int = 128
    param_channels: int = 64
    head_stride: int = 2
    id_dim: int = 64

    def __post_init__(self) -> None:
        """Refuse what the builder cannot build (or builds into a network whose maps do not line up).

        A cfg read from a checkpoint file is untrusted input; without this an unknown backbone, ``input_size=0`` or
        ``"256"`` surfaced as a ValueError, ZeroDivisionError or TypeError from deep inside the builder.
        """
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if self.backbone not in BACKBONE_STRIDES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(BACKBONE_STRIDES)}")
        ints = {"input_size": (32, 4096), "head_channels": (1, 1024), "id_channels": (1, 1024),
                "param_channels": (1, 1024), "head_stride": (1, 2), "id_dim": (4, 1024)}
        for key, (lo, hi) in ints.items():
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{key} must be an integer, got {v!r} ({type(v).__name__})")
            if not lo <= v <= hi:
                raise ValueError(f"{key} must be in {lo}..{hi}, got {v}")
        # every backbone reduces by 32 before its upsampling path; other sizes give feature maps that do not line
        # up (measured: mobilenetv3 at 100 px fails in its lateral sum)
        if self.input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {self.input_size}")
        if self.id_dim % 4:  # the sine encoding splits id_dim into x/y halves of sin/cos pairs
            raise ValueError(f"id_dim must be a multiple of 4, got {self.id_dim}")

    @property
    def map_size(self) -> int:
        return self.input_size // (BACKBONE_STRIDES[self.backbone] * self.head_stride)

    @property
    def output_stride(self) -> int:
        return self.input_size // self.map_size

    def to_dict(self) -> dict:
        return asdict(self)


MODELS: dict[str, ModelCfg] = {
    "resnet50": ModelCfg("resnet50", "resnet50"),
    "hrnet32": ModelCfg("hrnet32", "hrnet32"),
    "resnet18": ModelCfg("resnet18", "resnet18", input_size=320),
    "mobilenetv3": ModelCfg("mobilenetv3", "mobilenetv3", input_size=256, head_channels=32, id_channels=32,
                            param_channels=24, head_stride=1),
}


def coord_maps(h: int, w: int) -> torch.Tensor:
    """[1, 2, h, w]: channel 0 = column (x), channel 1 = row (y), each idx / (n - 1) * 2 - 1."""
    xs = torch.arange(w, dtype=torch.float32) / (w - 1) * 2 - 1
    ys = torch.arange(h, dtype=torch.float32) / (h - 1) * 2 - 1
    return torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)]).unsqueeze(0)


def position_encoding_sine(h: int, w: int, dim: int = 64, temperature: float = 10000.0) -> torch.Tensor:
    """DETR-style normalised 2D sine encoding, [1, dim, h, w]: first dim/2 channels encode y, the rest x.

    Computed exactly as the official code does it (cumsum of ones, divided by (last + 1e-6), times 2*pi) so the
    float32 values match bit for bit.
    """
    n = dim // 2
    ones = torch.ones((1, h, w), dtype=torch.float32)
    y = ones.cumsum(1)
    x = ones.cumsum(2)
    scale = 2 * math.pi
    y = y / (y[:, -1:, :] + 1e-6) * scale
    x = x / (x[:, :, -1:] + 1e-6) * scale
    dim_t = torch.arange(n, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / n)
    px = x[:, :, :, None] / dim_t
    py = y[:, :, :, None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2).contiguous()


def _make_backbone(name: str) -> nn.Module:
    if name == "resnet50":
        return ResNetBackbone(50)
    if name == "resnet18":
        return ResNetBackbone(18, deconv_channels=(128, 128, 64))
    if name == "hrnet32":
        return HRNetBackbone()
    if name == "mobilenetv3":
        return MobileNetV3Backbone()
    raise ValueError(f"unknown backbone {name!r}; expected one of resnet50, hrnet32, resnet18, mobilenetv3")


def _head(in_ch: int, ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """ROMP head: conv(+bias)-BN-ReLU transition, two BasicBlocks, 1x1 output conv (keys .0.0/.0.1/.1.k.0/.2)."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(in_ch, ch, 3, stride, 1), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)),
        nn.Sequential(*[nn.Sequential(BasicBlock(ch, ch)) for _ in range(2)]),
        nn.Conv2d(ch, out_ch, 1),
    )


def _projector(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.ReLU(),
                         nn.Linear(dim, dim, bias=False))


class InstanceHMR(nn.Module):
    """The InstanceHMR network.

    ``forward(images)`` takes float32 [B, 3, S, S] RGB in 0..255 (frame letterboxed with black, cubic-resized) and
    returns ``{"center_map": [B,1,M,M], "joint_maps": [B,24,M,M], "params_maps": [B,82,M,M]}`` with M = S / 8 and
    ``params_maps[:, 0]`` already 1.1^raw. ``return_id_maps=True`` adds ``centerid_map`` (with positional encoding)
    and ``jointid_map`` [B, 64, M, M] for the contrastive loss.
    """

    def __init__(self, cfg: ModelCfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = _make_backbone(cfg.backbone)
        c = self.backbone.backbone_channels + 2
        s, hc, ic, pc, d = cfg.head_stride, cfg.head_channels, cfg.id_channels, cfg.param_channels, cfg.id_dim
        self.final_layers = nn.ModuleList([None, _head(c, hc, 1, s), _head(c, hc, 3, s), _head(c, hc, NUM_JOINTS, s)])
        for prefix in ("centerid", "jointid"):
            setattr(self, f"{prefix}_trans1", TransBlock(c, ic, 3, s, 1))
            setattr(self, f"{prefix}_resblock1", BasicBlock(ic, ic))
            setattr(self, f"{prefix}_trans2", TransBlock(ic + 1 + NUM_JOINTS, ic, 3, 1, 1))
            setattr(self, f"{prefix}_resblock2", BasicBlock(ic, ic))
            setattr(self, f"{prefix}_outconv", nn.Conv2d(ic, d, 1))
        self.ct_projector = _projector(d)
        self.jt_projector = _projector(d)
        self.params_trans1 = TransBlock(c, pc, 3, s, 1)
        self.params_trans_c = TransBlock(pc + 1 + d, pc, 3, 1, 1)
        self.params_trans_j = TransBlock(pc + NUM_JOINTS + d, pc, 3, 1, 1)
        self.params_resblock1 = BasicBlock(2 * pc, 2 * pc)
        self.params_resblock2 = BasicBlock(2 * pc, 2 * pc)
        self.params_outconv = nn.Conv2d(2 * pc, NUM_PARAMS - 3, 1)
        feat = cfg.input_size // (cfg.output_stride // s)
        self.register_buffer("coordmaps", coord_maps(feat, feat), persistent=False)
        self.register_buffer("pos_encoding", position_encoding_sine(cfg.map_size, cfg.map_size, d), persistent=False)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features with the two coordinate channels appended: [B, C+2, H/4 or H/8, ...]."""
        x = self.backbone(images)
        coords = self.coordmaps
        if coords.shape[-2:] != x.shape[-2:]:
            coords = coord_maps(x.shape[-2], x.shape[-1]).to(x)
        return torch.cat((x, coords.expand(x.shape[0], -1, -1, -1)), 1)

    def forward_head(self, x: torch.Tensor, return_id_maps: bool = False) -> dict[str, torch.Tensor]:
        center_map = self.final_layers[1](x)
        cam = self.final_layers[2](x)
        # scale kept positive: s = 1.1^raw (an exp, kept in FP32 by the TensorRT builder)
        cam = torch.cat((torch.pow(1.1, cam[:, :1]), cam[:, 1:]), 1)
        joint_maps = self.final_layers[3](x)
        maps = torch.cat([center_map, joint_maps], 1)

        cid = self.centerid_resblock1(self.centerid_trans1(x))
        cid = self.centerid_resblock2(self.centerid_trans2(torch.cat([cid, maps], 1)))
        pe = self.pos_encoding
        if pe.shape[-2:] != center_map.shape[-2:]:
            pe = position_encoding_sine(center_map.shape[-2], center_map.shape[-1], self.cfg.id_dim).to(x)
        centerid_map = self.centerid_outconv(cid) + pe
        jid = self.jointid_resblock1(self.jointid_trans1(x))
        jid = self.jointid_resblock2(self.jointid_trans2(torch.cat([jid, maps], 1)))
        jointid_map = self.jointid_outconv(jid)

        xp = self.params_trans1(x)
        xc = self.params_trans_c(torch.cat([xp, center_map, centerid_map], 1))
        xj = self.params_trans_j(torch.cat([xp, joint_maps, jointid_map], 1))
        xp = self.params_resblock2(self.params_resblock1(torch.cat([xc, xj], 1)))
        params_maps = torch.cat([cam, self.params_outconv(xp)], 1)
        out = {"center_map": center_map, "joint_maps": joint_maps, "params_maps": params_maps}
        if return_id_maps:
            out["centerid_map"] = centerid_map
            out["jointid_map"] = jointid_map
        return out

    def forward(self, images: torch.Tensor, return_id_maps: bool = False) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(images), return_id_maps)


def build_model(cfg: ModelCfg | str, **overrides) -> InstanceHMR:
    """Build a variant by name (``MODELS``) or from a :class:`ModelCfg`; keyword overrides win."""
    if isinstance(cfg, str):
        if cfg not in MODELS:
            raise ValueError(f"unknown model {cfg!r}; expected one of {', '.join(MODELS)}")
        cfg = MODELS[cfg]
    if overrides:
        cfg = ModelCfg(**{**cfg.to_dict(), **overrides})
    return InstanceHMR(cfg)
