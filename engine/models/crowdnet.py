"""3DCrowdNet (Choi et al., CVPR 2022): 2D-pose-guided single-person SMPL regression for crowded scenes.

Network (names are the official state-dict keys; maths is the official forward in eval mode):
    backbone stem (ResNet-50 conv1..maxpool) on the crop -> 64 x 64 x 64
    -> ``pose2feat``: concat 30 Gaussian heatmaps of the input 2D pose (sigma 2.5, times ``joints_mask``),
       3x3 conv + BN + ReLU -> 64 x 64 x 64
    -> backbone layer1..layer4 -> 2048 x 8 x 8
    -> ``position_net``: 1x1 conv to 15 x 8 channels = a 15-joint 8x8x8 heatmap volume (channel = joint*8 + depth),
       3D soft-argmax -> joint coordinates (x, y, z in 0..7), and each joint's score = its softmax probability
       trilinearly sampled at its own soft-argmax location
    -> ``rotation_net``: the 2048-d feature bilinearly sampled at each joint's (x, y), concatenated with the joint's
       (x, y, z) and score (2052-d per joint), a graph convolution network over the 15-joint skeleton (one
       Linear+BN per joint, then multiplication by the normalised adjacency D^-1/2 (A+I) D^-1/2, ReLU; one block to
       128-d then four residual blocks of two), flattened (15*128) -> four linear heads: root 6D (6), VPoser latent
       (32), betas (10), camera (3)
    -> root 6D -> axis-angle; latent -> frozen VPoser v1 decoder -> 21 body joints; hands zero.

Contract of :meth:`CrowdNet.forward` (fp32, eval):
    img          [B,3,256,256] RGB in 0..1 (the official loaders divide the 0..255 crop by 255; no mean/std).
                 The crop is the official aspect-preserving box around the pose, enlarged 1.25x (the demo first pads
                 the pose's extent by 1.2x), warped to 256x256.
    joints       [B,30,3] input 2D pose in the 64x64 heatmap frame (crop pixels / 4); only x, y are used (column
                 2, the detector confidence in the official test loaders, is ignored; [B,30,2] works too, as in the
                 official training loaders).
    joints_mask  [B,30,1] 1 for joints to render, 0 otherwise (the official loaders set 0 for joints under the
                 confidence threshold, missing joints and joints outside the 64x64 frame).
Returns a dict:
    smpl_pose    [B,72] axis-angle (root from the 6D head; 21 body joints from VPoser; hands 22, 23 zero)
    smpl_shape   [B,10] betas
    cam_param    [B,3] raw camera head (see :func:`poseguided_common.camera_translation`)
    joint_img    [B,15,3] predicted joints: x, y in the 64x64 heatmap frame; z root-relative depth in 64 bins over
                 ``bbox_3d_size`` = 2 m (root at 32, i.e. z_bins = (dz / 1 m + 1) / 2 * 64, the official training
                 targets); the soft-argmax coordinates times 8, as the official test output
    joint_score  [B,15,1] the sampled probabilities (0..1, not calibrated)
The official test output also holds meshes and projected joints computed with the SMPL layer; those belong to the
body model, not to this network.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .poseguided_common import (
    BETAS_DIM,
    NUM_INPUT_JOINTS,
    NUM_OUTPUT_JOINTS,
    VPOSER_LATENT,
    Pose2Feat,
    PoseGuidedResNet,
    VPoserBody,
    assemble_pose,
    gaussian_heatmaps,
    sample_plane,
    sample_volume,
    soft_argmax_3d,
)

__all__ = ["GRAPH_SKELETON", "CrowdNet", "graph_adjacency"]

DEPTH_BINS = 8  # output_hm_shape[0] // 8
GRAPH_DIM = 128
GRAPH_SKELETON = ((0, 1), (1, 3), (3, 5), (0, 2), (2, 4), (4, 6), (0, 7), (7, 8), (7, 9), (9, 11), (11, 13), (7, 10),
                  (10, 12), (12, 14))
GRAPH_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (9, 10), (11, 12), (13, 14))  # also edges of the graph


def graph_adjacency(n: int = NUM_OUTPUT_JOINTS) -> torch.Tensor:
    """Symmetric-normalised adjacency D^-1/2 (A + I) D^-1/2 of the skeleton plus left/right pairs (float32)."""
    a = np.zeros((n, n))
    for i, j in GRAPH_SKELETON + GRAPH_FLIP_PAIRS:
        a[i, j] = a[j, i] = 1
    a = a + np.eye(n)
    d = 1 / np.sqrt(a.sum(0))
    return torch.from_numpy(d[:, None] * a * d[None, :]).float()


class GraphConvBlock(nn.Module):
    """Per-joint Linear + BatchNorm1d, then neighbour averaging with the normalised adjacency, then ReLU."""

    def __init__(self, adj: torch.Tensor, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.register_buffer("adj", adj.clone(), persistent=False)
        self.fcbn_list = nn.ModuleList(nn.Sequential(nn.Linear(dim_in, dim_out), nn.BatchNorm1d(dim_out))
                                       for _ in range(adj.shape[0]))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        feat = torch.stack([fcbn(feat[:, i, :]) for i, fcbn in enumerate(self.fcbn_list)], 1)
        return torch.relu(torch.matmul(self.adj, feat))


class GraphResBlock(nn.Module):
    """Two graph conv blocks plus the identity (no activation after the sum)."""

    def __init__(self, adj: torch.Tensor, dim: int) -> None:
        super().__init__()
        self.graph_block1 = GraphConvBlock(adj, dim, dim)
        self.graph_block2 = GraphConvBlock(adj, dim, dim)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.graph_block2(self.graph_block1(feat)) + feat


class PositionNet(nn.Module):
    """2048 x 8 x 8 -> 15-joint 8x8x8 heatmaps -> (coords in 0..7 [B,15,3], scores [B,15,1])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(2048, NUM_OUTPUT_JOINTS * DEPTH_BINS, kernel_size=1))

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = feat.shape
        logits = self.conv(feat).reshape(b, NUM_OUTPUT_JOINTS, DEPTH_BINS, h, w)
        coords, prob = soft_argmax_3d(logits)
        vol = prob.reshape(b * NUM_OUTPUT_JOINTS, 1, DEPTH_BINS, h, w)
        score = sample_volume(vol, coords.reshape(b * NUM_OUTPUT_JOINTS, 1, 3))
        return coords, score.reshape(b, NUM_OUTPUT_JOINTS, 1)


class RotationNet(nn.Module):
    """Joint-sampled features + coords + scores -> graph network -> root 6D, VPoser latent, betas, camera."""

    def __init__(self) -> None:
        super().__init__()
        adj = graph_adjacency()
        self.graph_block = nn.Sequential(GraphConvBlock(adj, 2048 + 4, GRAPH_DIM),
                                         *[GraphResBlock(adj, GRAPH_DIM) for _ in range(4)])
        flat = NUM_OUTPUT_JOINTS * GRAPH_DIM
        self.root_pose_out = nn.Sequential(nn.Linear(flat, 6))
        self.pose_out = nn.Sequential(nn.Linear(flat, VPOSER_LATENT))
        self.shape_out = nn.Sequential(nn.Linear(flat, BETAS_DIM))
        self.cam_out = nn.Sequential(nn.Linear(flat, 3))

    def forward(self, feat: torch.Tensor, coords: torch.Tensor, score: torch.Tensor):
        sampled = sample_plane(feat, coords[..., :2])  # B,15,2048
        x = self.graph_block(torch.cat((sampled, coords, score), 2))
        x = x.reshape(x.shape[0], NUM_OUTPUT_JOINTS * GRAPH_DIM)
        return self.root_pose_out(x), self.pose_out(x), self.shape_out(x), self.cam_out(x)


class CrowdNet(nn.Module):
    """3DCrowdNet; see the module docstring for the contract. Build, then load official weights strictly."""

    system = "crowdnet"

    def __init__(self) -> None:
        super().__init__()
        self.backbone = PoseGuidedResNet()
        self.pose2feat = Pose2Feat(NUM_INPUT_JOINTS)
        self.position_net = PositionNet()
        self.rotation_net = RotationNet()
        self.vposer = VPoserBody()

    def forward(self, img: torch.Tensor, joints: torch.Tensor, joints_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        heat = gaussian_heatmaps(joints, joints_mask)
        feat = self.backbone.body(self.pose2feat(self.backbone.stem(img), heat))
        coords, score = self.position_net(feat)
        root_6d, latent, betas, cam = self.rotation_net(feat, coords, score)
        pose = assemble_pose(root_6d, self.vposer(latent))
        return {"smpl_pose": pose, "smpl_shape": betas, "cam_param": cam, "joint_img": coords * 8,
                "joint_score": score}
