"""Official-format 3DCrowdNet and JOTR checkpoints with random weights, built from the official key layout.

The key lists below are written from the official module definitions (registration order, shapes), independently
of ``engine.models``: the tests compare our networks against them. Containers are the released ones:
3DCrowdNet ``{"epoch", "network": {"module." + key}, "optimizer"}`` (1,311 network keys) and JOTR a flat
``{"module." + key}`` state dict (538 keys), both including the SMPL layer buffers (``human_model_layer.*``), the
whole VPoser v1 (encoder too), every ``num_batches_tracked``, JOTR's 0-d ``exponent`` and its
``pos_embed_1d.pos_table``. BatchNorm statistics are non-trivial so that eval-mode maths is exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

Spec = list[tuple[str, tuple[int, ...], torch.dtype]]
F32, I64 = torch.float32, torch.int64

SMPL_BUFFERS: Spec = [("th_betas", (1, 10), F32), ("th_shapedirs", (6890, 3, 10), F32),
                      ("th_posedirs", (6890, 3, 207), F32), ("th_v_template", (1, 6890, 3), F32),
                      ("th_J_regressor", (24, 6890), F32), ("th_weights", (6890, 24), F32),
                      ("th_faces", (13776, 3), I64)]


def _conv(p: str, cin: int, cout: int, k: int | tuple[int, ...], bias: bool) -> Spec:
    ks = (k, k) if isinstance(k, int) else k
    return [(p + "weight", (cout, cin, *ks), F32)] + ([(p + "bias", (cout,), F32)] if bias else [])


def _bn(p: str, n: int) -> Spec:
    return [(p + "weight", (n,), F32), (p + "bias", (n,), F32), (p + "running_mean", (n,), F32),
            (p + "running_var", (n,), F32), (p + "num_batches_tracked", (), I64)]


def _linear(p: str, cin: int, cout: int) -> Spec:
    return [(p + "weight", (cout, cin), F32), (p + "bias", (cout,), F32)]


def _ln(p: str, n: int) -> Spec:
    return [(p + "weight", (n,), F32), (p + "bias", (n,), F32)]


def _resnet50(p: str) -> Spec:
    """torchvision ResNet-50 without fc: 318 tensors."""
    out = _conv(p + "conv1.", 3, 64, 7, False) + _bn(p + "bn1.", 64)
    inplanes = 64
    for li, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        for bi in range(blocks):
            q = f"{p}layer{li}.{bi}."
            out += _conv(q + "conv1.", inplanes, planes, 1, False) + _bn(q + "bn1.", planes)
            out += _conv(q + "conv2.", planes, planes, 3, False) + _bn(q + "bn2.", planes)
            out += _conv(q + "conv3.", planes, planes * 4, 1, False) + _bn(q + "bn3.", planes * 4)
            if bi == 0:
                out += _conv(q + "downsample.0.", inplanes, planes * 4, 1, False) + _bn(q + "downsample.1.", planes * 4)
            inplanes = planes * 4
    return out


def _pose2feat(p: str) -> Spec:
    return _conv(p + "conv.0.", 64 + 30, 64, 3, True) + _bn(p + "conv.1.", 64)


def _vposer_v1(p: str) -> Spec:
    """VPoser v1 (num_neurons 512, latentD 32, data_shape 1x21x3): 24 tensors, 18 of them the encoder."""
    return (_bn(p + "bodyprior_enc_bn1.", 63) + _linear(p + "bodyprior_enc_fc1.", 63, 512)
            + _bn(p + "bodyprior_enc_bn2.", 512) + _linear(p + "bodyprior_enc_fc2.", 512, 512)
            + _linear(p + "bodyprior_enc_mu.", 512, 32) + _linear(p + "bodyprior_enc_logvar.", 512, 32)
            + _linear(p + "bodyprior_dec_fc1.", 32, 512) + _linear(p + "bodyprior_dec_fc2.", 512, 512)
            + _linear(p + "bodyprior_dec_out.", 512, 21 * 6))


def _graph_conv(p: str, cin: int, cout: int) -> Spec:
    out: Spec = []
    for v in range(15):
        out += _linear(f"{p}fcbn_list.{v}.0.", cin, cout) + _bn(f"{p}fcbn_list.{v}.1.", cout)
    return out


def crowdnet_spec() -> Spec:
    """3DCrowdNet ``Model`` state dict (without ``module.``), in registration order: 1,311 tensors."""
    out = _resnet50("backbone.") + _pose2feat("pose2feat.")
    out += _conv("position_net.conv.0.", 2048, 15 * 8, 1, True)
    out += _graph_conv("rotation_net.graph_block.0.", 2048 + 4, 128)
    for r in range(1, 5):
        out += _graph_conv(f"rotation_net.graph_block.{r}.graph_block1.", 128, 128)
        out += _graph_conv(f"rotation_net.graph_block.{r}.graph_block2.", 128, 128)
    for name, n in (("root_pose_out", 6), ("pose_out", 32), ("shape_out", 10), ("cam_out", 3)):
        out += _linear(f"rotation_net.{name}.0.", 15 * 128, n)
    out += _vposer_v1("vposer.vposer.")
    out += [("human_model_layer." + k, s, d) for k, s, d in SMPL_BUFFERS]
    return out


def _mha(p: str, d: int = 256) -> Spec:
    return [(p + "in_proj_weight", (3 * d, d), F32), (p + "in_proj_bias", (3 * d,), F32),
            *_linear(p + "out_proj.", d, d)]


def _enc_layer(p: str, ffn: int) -> Spec:
    return (_mha(p + "self_attn.") + _linear(p + "linear1.", 256, ffn) + _linear(p + "linear2.", ffn, 256)
            + _ln(p + "norm1.", 256) + _ln(p + "norm2.", 256))


def _dec_layer(p: str, ffn: int) -> Spec:
    return (_mha(p + "self_attn.") + _mha(p + "multihead_attn.") + _linear(p + "linear1.", 256, ffn)
            + _linear(p + "linear2.", ffn, 256) + _ln(p + "norm1.", 256) + _ln(p + "norm2.", 256)
            + _ln(p + "norm3.", 256))


def jotr_spec(enc: int = 2, dec: int = 4) -> Spec:
    """JOTR ``Model`` state dict (without ``module.``), in registration order: 538 tensors for 2/4 layers."""
    out: Spec = [("spose_shape_cam_param", (3, 256), F32), ("exponent", (), F32)]
    out += _resnet50("backbone.") + _pose2feat("pose2feat.") + _vposer_v1("vposer.vposer.")
    out += [("human_model_layer." + k, s, d) for k, s, d in SMPL_BUFFERS]
    out += _conv("down_linear.", 2048, 256, 1, True)
    out += [("transformer.smpl_tgt", (256,), F32), ("transformer.kp_tgt", (256,), F32)]
    for i in range(enc):
        out += _enc_layer(f"transformer.encoder.layers.{i}.", 2048)
    for i in range(dec):
        out += _dec_layer(f"transformer.decoder.layers.{i}.", 2048)
    out += _ln("transformer.decoder.norm.", 256)
    out += _linear("transformer.decoder.joint_img_regress.0.", 256, 3)
    for i in range(1, dec):
        out += _linear(f"transformer.decoder.joint_img_regress.{i}.", 259, 3)
    out += (_linear("transformer.decoder.fc_pos_3d.0.", 3, 256) + _ln("transformer.decoder.fc_pos_3d.1.", 256)
            + _linear("transformer.decoder.fc_pos_3d.3.", 256, 256))
    out += [("pos_embed_1d.pos_table", (512, 256), F32), ("query.weight", (15, 256), F32)]
    for name, n in (("cascade_root_pose_out", 6), ("cascade_pose_out", 32), ("cascade_shaoe_out", 10),
                    ("cascade_cam_out", 3)):
        out += _linear(f"{name}.0.", 256, n)
        for i in range(1, dec):
            out += _linear(f"{name}.{i}.", 256 + n, n)
    out += _conv("conv2d_to_3d.", 2048, 2048, 1, True)
    out += _conv("conv_3d_coord.0.", 259, 256, (1, 1, 1), True)
    for i in range(enc):
        out += _enc_layer(f"refine_3d.layers.{i}.", 1024)
    out += _ln("refine_3d.norm.", 256)
    return out


def _sinusoid(n: int, d: int) -> torch.Tensor:
    angle = np.arange(n, dtype=np.float64)[:, None] / np.power(10000, 2 * (np.arange(d) // 2) / d)[None, :]
    angle[:, 0::2] = np.sin(angle[:, 0::2])
    angle[:, 1::2] = np.cos(angle[:, 1::2])
    return torch.from_numpy(angle).float()


def random_state(spec: Spec, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors for a spec: variance-preserving weights, non-trivial BN statistics, LayerNorm gains near 1."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape, dtype in spec:
        leaf = key.rsplit(".", 1)[-1]
        if dtype == I64:
            hi = 6890 if key.endswith("th_faces") else 1000
            sd[key] = torch.randint(0, hi, shape, generator=g, dtype=I64)
        elif key == "pos_embed_1d.pos_table":
            sd[key] = _sinusoid(*shape)
        elif key == "exponent":
            sd[key] = torch.tensor(2.0 + torch.rand((), generator=g).item() * 2.0)
        elif leaf == "running_mean":
            sd[key] = torch.randn(shape, generator=g) * 0.1
        elif leaf == "running_var":
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1 and leaf == "weight":  # BN / LayerNorm gain
            sd[key] = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif len(shape) == 1 or leaf.endswith("bias"):
            sd[key] = torch.randn(shape, generator=g) * 0.05
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            sd[key] = torch.randn(shape, generator=g) / np.sqrt(fan_in)
    return sd


def crowdnet_checkpoint(seed: int = 0) -> dict:
    """The 3DCrowdNet release container: epoch, DataParallel-prefixed network, Adam optimizer state."""
    sd = random_state(crowdnet_spec(), seed)
    n_params = sum(1 for k in sd if not k.startswith("human_model_layer.") and sd[k].is_floating_point()
                   and not k.endswith(("running_mean", "running_var")))
    optimizer = {"state": {0: {"step": torch.tensor(1000.0), "exp_avg": torch.zeros(64, 3, 7, 7),
                               "exp_avg_sq": torch.zeros(64, 3, 7, 7)}},
                 "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                                   "amsgrad": False, "params": list(range(n_params))}]}
    return {"epoch": 6, "network": {"module." + k: v for k, v in sd.items()}, "optimizer": optimizer}


def jotr_checkpoint(seed: int = 0) -> dict:
    """The JOTR release file: a flat DistributedDataParallel-prefixed state dict."""
    return {"module." + k: v for k, v in random_state(jotr_spec(), seed).items()}


def save(obj: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path
