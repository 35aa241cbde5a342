"""JOTR (Li et al., ICCV 2023): 2D-pose-guided SMPL regression with a joint-oriented transformer and 3D features.

Network (names are the official state-dict keys; maths is the official forward in eval mode; configuration of the
released model: 2 encoder layers, 4 decoder layers, d_model 256, 8 heads, post-norm, dropout inactive):
    backbone stem -> ``pose2feat`` (30 Gaussian heatmaps of the input pose, sigma 2.5, times ``joints_mask``)
    -> backbone layer1..layer4 -> F: 2048 x 8 x 8
    3D branch: ``conv2d_to_3d`` (1x1, 2048 -> 2048 = 256 channels x 8 depths, channel = c*8 + d) -> 256 x 8x8x8;
       concatenate 3 anchor maps (z = (d/8)^e, y = h/8, x = w/8 with e = clamp(``exponent``, 1, 20)) ->
       ``conv_3d_coord`` (1x1x1, 259 -> 256) -> 512 tokens (order d, h, w) -> ``refine_3d``: 2 post-norm encoder
       layers (FFN 1024) with the fixed 1D sinusoid table ``pos_embed_1d.pos_table`` [512,256] added to queries
       and keys, then a final LayerNorm -> V: 256 x 8x8x8
    2D branch: ``down_linear`` (1x1, 2048 -> 256) -> 64 tokens (order h, w) with a 2D sine position embedding
       (DETR style, 128 features per axis, normalised to 2*pi, temperature 10000; y channels first) ->
       ``transformer.encoder``: 2 post-norm layers (FFN 2048), no final norm -> memory
    decoder: 18 queries = 3 parameter tokens (pose, shape, camera; content ``transformer.smpl_tgt``, position
       ``spose_shape_cam_param``) + 15 joint tokens (content ``transformer.kp_tgt``, position ``query.weight``);
       4 post-norm layers (self-attention, cross-attention to memory, FFN 2048), each followed by the shared
       ``transformer.decoder.norm`` whose output feeds the next layer. After layer i the joint tokens regress
       joint positions in 0..1: p_0 = sigmoid(R_0(h)), p_i = sigmoid(inv_sigmoid(p_{i-1}) + R_i([h, inv_sigmoid(
       p_{i-1})])) (inv_sigmoid clamps to 1e-5); V is trilinearly sampled at (x, y, z^e) and these 15 features
       (with position ``fc_pos_3d(inv_sigmoid(p_i))``) are appended to (after layer 0) or replace (later) the last
       15 memory tokens for the next layer's cross-attention. No attention masks anywhere.
    heads: for each of the pose, shape and camera tokens, a cascade over the 4 decoder layers' outputs:
       out_0 = L_0(t_0), out_i = out_{i-1} + L_i([t_i, out_{i-1}]); the official eval uses only the final cascade
       value (all layers contribute) and the last layer's joint positions.
    root 6D -> axis-angle; 32-d latent -> frozen VPoser v1 decoder -> 21 body joints; hands zero.

Contract of :meth:`JOTR.forward` (fp32; the official eval runs under CUDA autocast, i.e. fp16 matmuls):
    img          [B,3,256,256] RGB in 0..1 (the loaders divide the 0..255 crop by 255; no mean/std); crop as in
                 3DCrowdNet (aspect-preserving box around the pose, enlarged 1.25x). The 8x8x8 volume and the 512-entry
                 position table fix the input at 256x256.
    joints       [B,30,3] input 2D pose in the 64x64 heatmap frame (crop pixels / 4); only x, y are used.
    joints_mask  [B,30,1] 1 for joints to render, 0 otherwise (official: confidence threshold and inside 64x64).
Returns a dict:
    smpl_pose    [B,72] axis-angle (root from the 6D cascade; 21 body joints from VPoser; hands zero)
    smpl_shape   [B,10] betas
    cam_param    [B,3] raw camera head (see :func:`poseguided_common.camera_translation`)
    joint_img    [B,15,3] last decoder layer's joint positions times 64 (the official eval returns them in 0..1;
                 the official training loss compares them times 64 with targets in the 64x64 heatmap frame and 64
                 root-relative depth bins) so that both pose-guided systems share one frame.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .poseguided_common import (
    BETAS_DIM,
    HM_SIZE,
    NUM_INPUT_JOINTS,
    NUM_OUTPUT_JOINTS,
    VPOSER_LATENT,
    Pose2Feat,
    PoseGuidedResNet,
    VPoserBody,
    assemble_pose,
    gaussian_heatmaps,
    sample_volume,
    sinusoid_table,
)

__all__ = ["DEC_LAYERS", "ENC_LAYERS", "JOTR", "position_embedding_sine"]

D_MODEL = 256
HEADS = 8
GRID = 8  # 256 / 32: side of the 2D feature map and of the 3D volume
PARAM_TOKENS = 3  # pose, shape, camera
ENC_LAYERS = 2  # released model (its training yaml): enc_layers 2 (also the depth of refine_3d)
DEC_LAYERS = 4  # dec_layers 4 (also the length of every cascade head)


class Attention(nn.Module):
    """Multi-head attention over sequence-first tensors [L,B,C], with ``nn.MultiheadAttention``'s parameter names
    (``in_proj_weight`` = stacked q, k, v projections, ``in_proj_bias``, ``out_proj``)."""

    def __init__(self, dim: int = D_MODEL, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        lq, b, c = query.shape
        lk = key.shape[0]
        h = self.heads
        d = c // h
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        q = F.linear(query, wq, bq).reshape(lq, b * h, d).transpose(0, 1)
        k = F.linear(key, wk, bk).reshape(lk, b * h, d).transpose(0, 1)
        v = F.linear(value, wv, bv).reshape(lk, b * h, d).transpose(0, 1)
        attn = torch.softmax(torch.bmm(q * self.scale, k.transpose(1, 2)), dim=-1)
        out = torch.bmm(attn, v).transpose(0, 1).reshape(lq, b, c)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Post-norm DETR encoder layer: position added to queries and keys only."""

    def __init__(self, ffn: int) -> None:
        super().__init__()
        self.self_attn = Attention()
        self.linear1 = nn.Linear(D_MODEL, ffn)
        self.linear2 = nn.Linear(ffn, D_MODEL)
        self.norm1 = nn.LayerNorm(D_MODEL)
        self.norm2 = nn.LayerNorm(D_MODEL)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        qk = src + pos
        src = self.norm1(src + self.self_attn(qk, qk, src))
        return self.norm2(src + self.linear2(torch.relu(self.linear1(src))))


class Encoder(nn.Module):
    def __init__(self, layers: int, ffn: int, final_norm: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(ffn) for _ in range(layers))
        self.norm = nn.LayerNorm(D_MODEL) if final_norm else None

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos)
        return src if self.norm is None else self.norm(src)


class DecoderLayer(nn.Module):
    """Post-norm DETR decoder layer: query position on self-attention q/k and cross-attention q; memory position on
    cross-attention keys."""

    def __init__(self, ffn: int) -> None:
        super().__init__()
        self.self_attn = Attention()
        self.multihead_attn = Attention()
        self.linear1 = nn.Linear(D_MODEL, ffn)
        self.linear2 = nn.Linear(ffn, D_MODEL)
        self.norm1 = nn.LayerNorm(D_MODEL)
        self.norm2 = nn.LayerNorm(D_MODEL)
        self.norm3 = nn.LayerNorm(D_MODEL)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor):
        qk = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(qk, qk, tgt))
        tgt = self.norm2(tgt + self.multihead_attn(tgt + query_pos, memory + pos, memory))
        return self.norm3(tgt + self.linear2(torch.relu(self.linear1(tgt))))


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class Decoder(nn.Module):
    """Decoder layers with iterative joint refinement and 3D feature sampling (see the module docstring)."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(2048) for _ in range(layers))
        self.norm = nn.LayerNorm(D_MODEL)
        self.joint_img_regress = nn.ModuleList([nn.Linear(D_MODEL, 3)] +
                                               [nn.Linear(D_MODEL + 3, 3) for _ in range(layers - 1)])
        self.fc_pos_3d = nn.Sequential(nn.Linear(3, D_MODEL), nn.LayerNorm(D_MODEL), nn.ReLU(inplace=True),
                                       nn.Linear(D_MODEL, D_MODEL))

    def forward(self, tgt, memory, pos, query_pos, volume, exponent):
        out = tgt
        params = []
        joints = tgt.new_zeros(())
        n_img = memory.shape[0]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            out = self.norm(layer(out, memory, pos, query_pos))
            params.append(out[:PARAM_TOKENS])
            hs = out[PARAM_TOKENS:].transpose(0, 1)  # B,15,C
            if i == 0:
                joints = torch.sigmoid(self.joint_img_regress[0](hs))
            else:
                prev = inverse_sigmoid(joints)
                joints = torch.sigmoid(prev + self.joint_img_regress[i](torch.cat((hs, prev), -1)))
            if i == last:  # the official loop also samples after the last layer, but nothing reads the result
                break
            side = volume.shape[-1] - 1
            where = torch.cat((joints[..., :2], torch.pow(joints[..., 2:], exponent)), -1) * side
            feat = sample_volume(volume, where).transpose(0, 1)  # 15,B,C
            feat_pos = self.fc_pos_3d(inverse_sigmoid(joints)).transpose(0, 1)
            memory = torch.cat((memory[:n_img], feat), 0)
            pos = torch.cat((pos[:n_img], feat_pos), 0)
        return torch.stack(params), joints


class Transformer(nn.Module):
    def __init__(self, enc_layers: int, dec_layers: int) -> None:
        super().__init__()
        self.encoder = Encoder(enc_layers, 2048, final_norm=False)
        self.decoder = Decoder(dec_layers)
        self.smpl_tgt = nn.Parameter(torch.zeros(D_MODEL))
        self.kp_tgt = nn.Parameter(torch.zeros(D_MODEL))

    def forward(self, src, query_pos, pos, volume, exponent):
        b = src.shape[1]
        tgt = torch.cat((self.smpl_tgt.expand(PARAM_TOKENS, b, D_MODEL),
                         self.kp_tgt.expand(NUM_OUTPUT_JOINTS, b, D_MODEL)), 0)
        memory = self.encoder(src, pos)
        return self.decoder(tgt, memory, pos, query_pos, volume, exponent)


class PositionalEncoding1D(nn.Module):
    """Holds the fixed [512,256] sinusoid table (a persistent buffer in the official checkpoints)."""

    def __init__(self, d_hid: int = D_MODEL, n_position: int = GRID ** 3) -> None:
        super().__init__()
        self.register_buffer("pos_table", sinusoid_table(n_position, d_hid))


def position_embedding_sine(h: int, w: int, feats: int = D_MODEL // 2, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised 2D sine embedding for an unmasked h x w map -> [h*w, 2*feats] (row-major tokens).

    Positions are 1..h (1..w) divided by (h + 1e-6) and scaled by 2*pi; channel 2k is sin, 2k+1 cos of the same
    frequency temperature^(2*(k//2)/feats); the y half comes first.
    """
    ones = torch.ones(1, h, w)
    y = ones.cumsum(1, dtype=torch.float32)
    x = ones.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(feats, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / feats)
    px = x[:, :, :, None] / dim_t
    py = y[:, :, :, None] / dim_t
    px = torch.stack((px[:, :, :, 0::2].sin(), px[:, :, :, 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[:, :, :, 0::2].sin(), py[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).reshape(h * w, 2 * feats)


def depth_anchor_maps(exponent: torch.Tensor, size: int = GRID) -> torch.Tensor:
    """[1,3,size,size,size] anchor channels (z = (d/size)^e, y = h/size, x = w/size)."""
    r = torch.arange(size, dtype=torch.float32, device=exponent.device) / size
    z = torch.pow(r, exponent).reshape(1, 1, size, 1, 1).expand(1, 1, size, size, size)
    y = r.reshape(1, 1, 1, size, 1).expand(1, 1, size, size, size)
    x = r.reshape(1, 1, 1, 1, size).expand(1, 1, size, size, size)
    return torch.cat((z, y, x), 1)


def _cascade(tokens: torch.Tensor, heads: nn.ModuleList) -> torch.Tensor:
    out = heads[0](tokens[0])
    for i in range(1, len(heads)):
        out = out + heads[i](torch.cat((tokens[i], out), -1))
    return out


class JOTR(nn.Module):
    """JOTR; see the module docstring for the contract. Build, then load official weights strictly."""

    system = "jotr"

    def __init__(self, enc_layers: int = ENC_LAYERS, dec_layers: int = DEC_LAYERS) -> None:
        super().__init__()
        self.backbone = PoseGuidedResNet()
        self.pose2feat = Pose2Feat(NUM_INPUT_JOINTS)
        self.vposer = VPoserBody()
        self.down_linear = nn.Conv2d(2048, D_MODEL, 1, 1)
        self.transformer = Transformer(enc_layers, dec_layers)
        self.pos_embed_1d = PositionalEncoding1D()
        self.spose_shape_cam_param = nn.Parameter(torch.randn(PARAM_TOKENS, D_MODEL))
        self.query = nn.Embedding(NUM_OUTPUT_JOINTS, D_MODEL)
        self.cascade_root_pose_out = self._cascade_heads(6, dec_layers)
        self.cascade_pose_out = self._cascade_heads(VPOSER_LATENT, dec_layers)
        self.cascade_shaoe_out = self._cascade_heads(BETAS_DIM, dec_layers)  # sic: the official name
        self.cascade_cam_out = self._cascade_heads(3, dec_layers)
        self.conv2d_to_3d = nn.Conv2d(2048, D_MODEL * GRID, 1, 1)
        self.exponent = nn.Parameter(torch.tensor(3, dtype=torch.float32))
        self.conv_3d_coord = nn.Sequential(nn.Conv3d(D_MODEL + 3, D_MODEL, 1, 1))
        self.refine_3d = Encoder(enc_layers, 1024, final_norm=True)
        self.register_buffer("img_pos", position_embedding_sine(GRID, GRID)[:, None, :], persistent=False)

    @staticmethod
    def _cascade_heads(out: int, layers: int) -> nn.ModuleList:
        return nn.ModuleList([nn.Linear(D_MODEL, out)] + [nn.Linear(D_MODEL + out, out) for _ in range(layers - 1)])

    def forward(self, img: torch.Tensor, joints: torch.Tensor, joints_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        b = img.shape[0]
        heat = gaussian_heatmaps(joints, joints_mask)
        feat = self.backbone.body(self.pose2feat(self.backbone.stem(img), heat))  # B,2048,8,8

        exponent = torch.clamp(self.exponent, 1, 20)
        vol = self.conv2d_to_3d(feat).reshape(b, D_MODEL, GRID, GRID, GRID)
        vol = torch.cat((vol, depth_anchor_maps(exponent).expand(b, 3, GRID, GRID, GRID)), 1)
        vol = self.conv_3d_coord(vol).reshape(b, D_MODEL, GRID ** 3).permute(2, 0, 1)  # 512,B,C
        vol = self.refine_3d(vol, self.pos_embed_1d.pos_table[:, None, :])
        vol = vol.permute(1, 2, 0).reshape(b, D_MODEL, GRID, GRID, GRID)

        src = self.down_linear(feat).reshape(b, D_MODEL, GRID * GRID).permute(2, 0, 1)  # 64,B,C
        query_pos = torch.cat((self.spose_shape_cam_param, self.query.weight), 0)[:, None, :].expand(-1, b, -1)
        pos = self.img_pos.expand(-1, b, -1)
        params, joints01 = self.transformer(src, query_pos, pos, vol, exponent)  # params: L,3,B,C

        root_6d = _cascade(params[:, 0], self.cascade_root_pose_out)
        latent = _cascade(params[:, 0], self.cascade_pose_out)
        betas = _cascade(params[:, 1], self.cascade_shaoe_out)
        cam = _cascade(params[:, 2], self.cascade_cam_out)
        pose = assemble_pose(root_6d, self.vposer(latent))
        return {"smpl_pose": pose, "smpl_shape": betas, "cam_param": cam, "joint_img": joints01 * HM_SIZE}
