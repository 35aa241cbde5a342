"""Pieces shared by the two 2D-pose-guided networks (3DCrowdNet and JOTR).

Both systems take one person's crop and that person's 2D pose, render the pose as Gaussian heatmaps, fuse them with
the ResNet-50 stem features (``pose2feat``), run the rest of the ResNet-50 on the fused features and regress SMPL
parameters: a 6D global orientation, a 32-d VPoser (v1) latent that a frozen VPoser decoder turns into 21 body
joint rotations, 10 betas and a 3-number camera. Attribute names follow the official code so that the official
state dicts load by key name; the maths follows the official forward in eval mode.

Facts (from the official code and configs of both systems):
    * input crop 256x256 RGB scaled to 0..1 (the loaders divide the 0..255 patch by 255; no mean/std);
    * heatmap frame 64x64 (``output_hm_shape`` 64,64,64 = crop / 4); Gaussian sigma 2.5 heatmap pixels, evaluated
      at integer pixel positions 0..63; one heatmap per input joint, multiplied by ``joints_mask`` so that invalid
      or truncated joints contribute nothing ("remove blob centered at (0,0)");
    * 30 input joints in the 30-joint SMPL-plus-face order (24 SMPL joints, nose, eyes, ears, head top);
    * ResNet-50 with torchvision key names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``downsample.0/1``), stride
      on the 3x3 conv, no fc; the stem (conv1/bn1/relu/maxpool) runs first, then layer1..layer4 on the fused
      features: 2048 x 8 x 8;
    * VPoser v1 (num_neurons 512, latentD 32, data_shape 1x21x3); only its decoder runs at inference:
      fc1 -> leaky ReLU(0.2) -> (dropout) -> fc2 -> leaky ReLU(0.2) -> out (126 = 21 x 6D) -> Gram-Schmidt ->
      rotation matrix -> axis-angle. Hands (SMPL joints 22, 23) are set to zero;
    * rotation matrix -> axis-angle is the torchgeometry 0.1.2 algorithm both systems call (matrix -> quaternion
      with a four-way case split, then quaternion -> axis-angle with atan2); NaNs are replaced by 0;
    * camera: ``t = (cam[0], cam[1], k * sigmoid(cam[2]))`` with ``k = sqrt(fx*fy*2.5^2/(256*256))`` for the
      virtual focal length 5000 (= 48.83 m); for rendering into the original image the official demo multiplies k
      by ``256 / sqrt(bbox_w * bbox_h)`` (bbox in original pixels) and uses focal 5000 and the bbox centre as
      principal point. :func:`camera_translation` implements this.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .blocks import Bottleneck, make_res_layer

__all__ = [
    "BETAS_DIM", "FOCAL", "HM_SIZE", "INPUT_JOINT_NAMES", "INPUT_SIZE", "NUM_INPUT_JOINTS", "NUM_OUTPUT_JOINTS",
    "OUTPUT_JOINT_NAMES", "SIGMA", "VPOSER_LATENT", "Pose2Feat", "PoseGuidedResNet", "VPoserBody", "VPoserDecoder",
    "assemble_pose", "axis_angle_to_matrix", "camera_translation", "gaussian_heatmaps", "matrix_to_axis_angle",
    "rot6d_to_axis_angle", "rot6d_to_matrix", "sample_plane", "sample_volume", "sinusoid_table", "soft_argmax_3d",
]

INPUT_SIZE = 256  # crop side in pixels (input_img_shape)
HM_SIZE = 64  # heatmap side (output_hm_shape[1:]); joints are given in this frame
SIGMA = 2.5  # Gaussian sigma of the input-pose heatmaps, in heatmap pixels
NUM_INPUT_JOINTS = 30  # 24 SMPL joints + nose, L/R eye, L/R ear, head top
NUM_OUTPUT_JOINTS = 15  # the "graph" joint set both systems predict
VPOSER_LATENT = 32
BETAS_DIM = 10
FOCAL = 5000.0  # virtual focal length (both axes)
CAMERA_3D_SIZE = 2.5  # metres; sets the depth scale k of the camera head

# Names of the 15 predicted joints (joint_img order), as in both systems' SMPL helper.
OUTPUT_JOINT_NAMES = ("Pelvis", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Neck", "Head_top",
                      "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist")
# Names of the 30 input joints (joints / joints_mask order).
INPUT_JOINT_NAMES = ("Pelvis", "L_Hip", "R_Hip", "Torso", "L_Knee", "R_Knee", "Spine", "L_Ankle", "R_Ankle", "Chest",
                     "L_Toe", "R_Toe", "Neck", "L_Thorax", "R_Thorax", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
                     "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand", "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear",
                     "Head_top")


class PoseGuidedResNet(nn.Module):
    """ResNet-50 without fc, split in two calls: ``stem`` (to 64 x H/4) and ``body`` (to 2048 x H/32).

    The pose heatmaps are fused between the two (see :class:`Pose2Feat`), which is why the official code calls the
    backbone twice (``skip_early``). The input is already 0..1 RGB: there is no normalisation inside.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        ch = 64
        self.layer1, ch = make_res_layer(Bottleneck, ch, 64, 3)
        self.layer2, ch = make_res_layer(Bottleneck, ch, 128, 4, stride=2)
        self.layer3, ch = make_res_layer(Bottleneck, ch, 256, 6, stride=2)
        self.layer4, ch = make_res_layer(Bottleneck, ch, 512, 3, stride=2)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Pose2Feat(nn.Module):
    """Concatenate stem features (64) and pose heatmaps (30), then 3x3 conv + BN + ReLU back to 64 channels."""

    def __init__(self, num_joints: int = NUM_INPUT_JOINTS) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(64 + num_joints, 64, kernel_size=3, stride=1, padding=1),
                                  nn.BatchNorm2d(64), nn.ReLU(inplace=True))

    def forward(self, img_feat: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((img_feat, heatmaps), 1))


def gaussian_heatmaps(joints: torch.Tensor, joints_mask: torch.Tensor, size: int = HM_SIZE,
                      sigma: float = SIGMA) -> torch.Tensor:
    """[B,J,>=2] joints (x, y in the heatmap frame) and [B,J,1] mask -> [B,J,size,size] Gaussian blobs.

    Evaluated at integer pixel positions (pixel i has coordinate i), unnormalised (peak 1), then multiplied by the
    mask: the official code uses the mask to remove invalid joints, which preprocessing parks at (0, 0).
    """
    grid = torch.arange(size, dtype=joints.dtype, device=joints.device)
    xx = grid.view(1, 1, 1, size)
    yy = grid.view(1, 1, size, 1)
    x = joints[:, :, 0, None, None]
    y = joints[:, :, 1, None, None]
    heat = torch.exp(-(((xx - x) / sigma) ** 2) / 2 - (((yy - y) / sigma) ** 2) / 2)
    return heat * joints_mask[:, :, :, None]


def soft_argmax_3d(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B,J,D,H,W] logits -> (coords [B,J,3] as (x, y, z) in voxel units, probabilities [B,J,D,H,W]).

    Softmax over the whole volume of each joint, then the expected index along W (x), H (y) and D (z).
    """
    b, j, d, h, w = logits.shape
    prob = F.softmax(logits.reshape(b, j, d * h * w), 2).reshape(b, j, d, h, w)
    px = prob.sum(dim=(2, 3))
    py = prob.sum(dim=(2, 4))
    pz = prob.sum(dim=(3, 4))
    x = (px * torch.arange(w, dtype=prob.dtype, device=prob.device)).sum(dim=2, keepdim=True)
    y = (py * torch.arange(h, dtype=prob.dtype, device=prob.device)).sum(dim=2, keepdim=True)
    z = (pz * torch.arange(d, dtype=prob.dtype, device=prob.device)).sum(dim=2, keepdim=True)
    return torch.cat((x, y, z), dim=2), prob


def sample_plane(feat: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of [B,C,H,W] at [B,N,2] pixel coordinates (x, y; pixel i at i) -> [B,N,C].

    Same call as the official per-joint ``grid_sample(align_corners=True)`` (zeros outside), batched over joints.
    """
    h, w = feat.shape[2:]
    gx = points[..., 0] / (w - 1) * 2 - 1
    gy = points[..., 1] / (h - 1) * 2 - 1
    grid = torch.stack((gx, gy), -1)[:, None]  # B,1,N,2
    return F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, :, 0].transpose(1, 2)


def sample_volume(vol: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear sample of [B,C,D,H,W] at [B,N,3] voxel coordinates (x along W, y along H, z along D) -> [B,N,C].

    Equals ``grid_sample(vol, grid, align_corners=True, padding_mode='zeros')`` on a 5-D input (what the official
    code calls), written with gathers because ONNX opset 17 has no volumetric GridSample.
    """
    b, c, d, h, w = vol.shape
    n = points.shape[1]
    flat = vol.reshape(b, c, d * h * w)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    x0, y0, z0 = torch.floor(x), torch.floor(y), torch.floor(z)
    fx, fy, fz = x - x0, y - y0, z - z0
    out = torch.zeros(b, c, n, dtype=vol.dtype, device=vol.device)
    for dz in (0, 1):
        zi = z0 + dz
        wz = fz if dz else 1 - fz
        for dy in (0, 1):
            yi = y0 + dy
            wy = fy if dy else 1 - fy
            for dx in (0, 1):
                xi = x0 + dx
                wx = fx if dx else 1 - fx
                inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1) & (zi >= 0) & (zi <= d - 1)
                weight = wx * wy * wz * inside.to(vol.dtype)
                idx = ((zi.clamp(0, d - 1) * h + yi.clamp(0, h - 1)) * w + xi.clamp(0, w - 1)).long()
                corner = torch.gather(flat, 2, idx[:, None, :].expand(b, c, n))
                out = out + corner * weight[:, None, :]
    return out.transpose(1, 2)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product over the last axis, written out (a batch of exactly 3 must never be crossed over the batch)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return torch.stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx), -1)


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """[...,6] -> [...,3,3]. The 6 numbers are read as a 3x2 matrix (row-major); its columns are Gram-Schmidt
    orthonormalised into the first two columns of the rotation; the third is their cross product.

    Both official systems (root head and VPoser decoder) use this layout. Unlike the 3DCrowdNet/JOTR root
    conversion, the cross product is over the vector axis: their ``torch.cross`` without ``dim`` crosses over the
    batch axis when the batch is exactly 3.
    """
    m = x.reshape(-1, 3, 2)
    a1, a2 = m[:, :, 0], m[:, :, 1]
    b1 = F.normalize(a1, dim=1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=1, keepdim=True) * b1, dim=1)
    b3 = _cross(b1, b2)
    return torch.stack((b1, b2, b3), dim=-1).reshape(*x.shape[:-1], 3, 3)


def matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """[...,3,3] rotation matrices -> [...,3] axis-angle, the torchgeometry 0.1.2 way both systems use.

    Quaternion first, picking one of four formulas by the signs of the diagonal (so that the square root is taken of
    a number >= 1 for a proper rotation), then angle = 2*atan2(|v|, w) folded to (-pi, pi] via the sign of w, and
    axis-angle = v * angle/|v| (2*v for |v| = 0). NaNs (degenerate input) become 0 as in the official root path.
    """
    shape = rot.shape[:-2]
    r = rot.reshape(-1, 3, 3)
    r00, r01, r02 = r[:, 0, 0], r[:, 0, 1], r[:, 0, 2]
    r10, r11, r12 = r[:, 1, 0], r[:, 1, 1], r[:, 1, 2]
    r20, r21, r22 = r[:, 2, 0], r[:, 2, 1], r[:, 2, 2]
    t0 = 1 + r00 - r11 - r22
    t1 = 1 - r00 + r11 - r22
    t2 = 1 - r00 - r11 + r22
    t3 = 1 + r00 + r11 + r22
    q0 = torch.stack((r21 - r12, t0, r10 + r01, r02 + r20), -1)
    q1 = torch.stack((r02 - r20, r10 + r01, t1, r21 + r12), -1)
    q2 = torch.stack((r10 - r01, r02 + r20, r21 + r12, t2), -1)
    q3 = torch.stack((t3, r21 - r12, r02 - r20, r10 - r01), -1)
    low_z = (r22 < 1e-6).to(r.dtype)
    x_gt_y = (r00 > r11).to(r.dtype)
    x_lt_minus_y = (r00 < -r11).to(r.dtype)
    c0 = (low_z * x_gt_y)[:, None]
    c1 = (low_z * (1 - x_gt_y))[:, None]
    c2 = ((1 - low_z) * x_lt_minus_y)[:, None]
    c3 = ((1 - low_z) * (1 - x_lt_minus_y))[:, None]
    q = q0 * c0 + q1 * c1 + q2 * c2 + q3 * c3
    t = t0[:, None] * c0 + t1[:, None] * c1 + t2[:, None] * c2 + t3[:, None] * c3
    q = q / torch.sqrt(t) * 0.5
    w, v = q[:, 0], q[:, 1:]
    sin_sq = (v * v).sum(-1)
    sin = torch.sqrt(sin_sq)
    two_theta = 2.0 * torch.where(w < 0.0, torch.atan2(-sin, -w), torch.atan2(sin, w))
    k = torch.where(sin_sq > 0.0, two_theta / sin, torch.full_like(sin, 2.0))
    aa = v * k[:, None]
    aa = torch.where(torch.isnan(aa), torch.zeros_like(aa), aa)
    return aa.reshape(*shape, 3)


def rot6d_to_axis_angle(x: torch.Tensor) -> torch.Tensor:
    """[...,6] 6D rotation -> [...,3] axis-angle (see :func:`rot6d_to_matrix`, :func:`matrix_to_axis_angle`)."""
    return matrix_to_axis_angle(rot6d_to_matrix(x))


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """[...,3] axis-angle -> [...,3,3] (Rodrigues); used by the body model side and by tests."""
    angle = aa.norm(dim=-1, keepdim=True)
    axis = aa / angle.clamp_min(1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = torch.zeros_like(x)
    skew = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), -1).reshape(*aa.shape[:-1], 3, 3)
    s = torch.sin(angle)[..., None]
    c = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(skew)
    return eye + s * skew + (1 - c) * (skew @ skew)


class VPoserDecoder(nn.Module):
    """The decoder half of VPoser v1 (``bodyprior_dec_*``): 32-d latent -> [B,21,3] axis-angle body pose.

    The encoder (``bodyprior_enc_*``, 18 tensors in the checkpoints) is never run at inference and not built.
    """

    def __init__(self, latent: int = VPOSER_LATENT, neurons: int = 512, joints: int = 21) -> None:
        super().__init__()
        self.joints = joints
        self.bodyprior_dec_fc1 = nn.Linear(latent, neurons)
        self.bodyprior_dec_fc2 = nn.Linear(neurons, neurons)
        self.bodyprior_dec_out = nn.Linear(neurons, joints * 6)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.bodyprior_dec_fc1(z), negative_slope=0.2)
        x = F.leaky_relu(self.bodyprior_dec_fc2(x), negative_slope=0.2)
        x = self.bodyprior_dec_out(x).reshape(z.shape[0], self.joints, 6)
        return rot6d_to_axis_angle(x)


class VPoserBody(nn.Module):
    """Latent -> [B,69] SMPL body pose (21 decoded joints + two zero hand joints), as the official ``Vposer``."""

    def __init__(self) -> None:
        super().__init__()
        self.vposer = VPoserDecoder()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        body = self.vposer(z)
        hands = torch.zeros(z.shape[0], 2, 3, dtype=body.dtype, device=body.device)
        return torch.cat((body, hands), 1).reshape(z.shape[0], 69)


def assemble_pose(root_6d: torch.Tensor, body69: torch.Tensor) -> torch.Tensor:
    """Root 6D [B,6] + body [B,69] -> SMPL pose [B,72] axis-angle (root first)."""
    return torch.cat((rot6d_to_axis_angle(root_6d), body69), 1)


def camera_translation(cam_param: torch.Tensor, bbox_wh: torch.Tensor | None = None) -> torch.Tensor:
    """[B,3] camera head output -> [B,3] translation (metres) for focal 5000, as the official ``get_camera_trans``.

    Without ``bbox_wh`` the translation is for the 256x256 crop with the principal point at its centre; with
    ``bbox_wh`` ([B,2] width, height of the crop box in original-image pixels) it is for the original image with
    the principal point at the box centre (the official render/demo path).
    """
    k = math.sqrt(FOCAL * FOCAL * CAMERA_3D_SIZE * CAMERA_3D_SIZE / (INPUT_SIZE * INPUT_SIZE))
    gamma = torch.sigmoid(cam_param[:, 2])
    if bbox_wh is not None:
        gamma = gamma * (INPUT_SIZE / (bbox_wh[:, 0] * bbox_wh[:, 1]).sqrt())
    return torch.cat((cam_param[:, :2], (k * gamma)[:, None]), 1)


def sinusoid_table(n_position: int, d_hid: int) -> torch.Tensor:
    """[n, d] table: even channels sin(pos / 10000^(2i/d)), odd channels cos of the same (float64, then float32)."""
    pos = np.arange(n_position, dtype=np.float64)[:, None]
    i = np.arange(d_hid)
    table = pos / np.power(10000, 2 * (i // 2) / d_hid)[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.from_numpy(table).float()
