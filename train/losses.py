"""The paper's nine loss terms with its weights (as in the official code).

| term | weight | here |
|---|---|---|
| CenterID (contrastive push) | 50 | :func:`contrastive_terms` |
| JointID (contrastive pull) | 50 | :func:`contrastive_terms` |
| CenterMap | 160 | :func:`focal_loss` on the centre map |
| JointMap | 50 | :func:`focal_loss` per joint channel, mean |
| Pose | 80 | :func:`pose_loss` (rotation-matrix Frobenius distance, root + 21 body joints) |
| Shape | 6 | :func:`shape_loss` (official weighted L2 / 20; GT betas[:6] = Anny phenotypes - 0.5) |
| Prior | 1.6 | :func:`prior_loss` (GMM fitted on our pose sampler, MaxMixture form, / 100) |
| MPJPE (3D) | 200 | :func:`mpjpe` on the 24 root-aligned joints of the Anny body, metres |
| PA-MPJPE | 360 | :func:`mpjpe` after :func:`procrustes_align` |
| 2D | 400 | :func:`kp2d_loss` on in-frame joints, normalised coordinates |

Each term is capped at 1000 like the official ``Learnable_Loss`` (rescaled, keeping its gradient direction).
Parameters are sampled at the ground-truth centre cells (the official ``match_preds_to_gts_for_supervision``
False path), so every GT person is supervised from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.geometry import axis_angle_to_rotmat, rot6d_to_rotmat

from .poses import GMMPrior
from .targets import Targets

WEIGHTS = {"CenterID": 50.0, "JointID": 50.0, "CenterMap": 160.0, "JointMap": 50.0, "Pose": 80.0, "Shape": 6.0,
           "Prior": 1.6, "MPJPE": 200.0, "PAMPJPE": 360.0, "P_KP2D": 400.0}
SHAPE_W = torch.tensor([1, .64, .32, .32, .16, .16, .16, .16, .16, .16])
LOSS_CAP = 1000.0


def focal_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CornerNet focal loss on RAW predictions, per sample and channel: [B, C, H, W] -> [B, C].

    pos = gt == 1: log(pc) * (1 - p)^2; neg = gt < 1: log(1 - pc) * p^2 * (1 - gt)^4, with pc = clamp(p, 1e-3,
    1 - 1e-3) only inside the logs; loss = -(sum pos + sum neg) / num_pos, or -sum neg when there is no positive.
    """
    pos = gt.eq(1).float()
    neg = gt.lt(1).float()
    pc = pred.clamp(1e-3, 1 - 1e-3)
    pos_l = (torch.log(pc) * (1 - pred) ** 2 * pos).sum((2, 3))
    neg_l = (torch.log(1 - pc) * pred ** 2 * (1 - gt) ** 4 * neg).sum((2, 3))
    num_pos = pos.sum((2, 3))
    return torch.where(num_pos > 0, -(pos_l + neg_l) / num_pos.clamp(min=1e-4), -neg_l)


def sample_embeddings(id_map: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Gather [B, D, H, W] at integer cells [B, ...,  2] given as (x, y): returns [B, ..., D].

    Indexing is map[b, :, y, x] — row = y, column = x. The released InstanceHMR code indexes map[b, :, x, y]
    (transposed); we sample at the correct positions on purpose (as in the official code).
    """
    b, d, _h, w = id_map.shape
    flat = id_map.flatten(2).transpose(1, 2)  # [B, H*W, D]
    idx = (cells[..., 1] * w + cells[..., 0]).reshape(b, -1)
    out = torch.gather(flat, 1, idx[..., None].expand(-1, -1, d))
    return out.reshape(*cells.shape[:-1], d)


def contrastive_terms(zc: torch.Tensor, zj: torch.Tensor, pmask: torch.Tensor, jmask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance-aware contrastive loss, Eq. (1)-(2), on projected embeddings.

    Args:
        zc: [B, P, D] centre embeddings; zj: [B, P, K, D] joint embeddings.
        pmask: [B, P] valid people; jmask: [B, P, K] visible joints. People without a visible joint are dropped
            (as the official code does).

    Returns:
        (push, pull): push = mean over images with N >= 2 of mean over pairs n < m of (1 + cos(zc_n, zc_m));
        pull = mean over images with N >= 1 of (1/N) sum_n mean_k (1 - cos(zc_n, zj_nk)). Zero when undefined.
    """
    keep = pmask & jmask.any(-1)
    zc_n = F.normalize(zc, dim=-1, eps=1e-8)
    zj_n = F.normalize(zj, dim=-1, eps=1e-8)
    n = keep.sum(1).float()
    cos_cc = zc_n @ zc_n.transpose(1, 2)  # [B, P, P]
    p = keep.shape[1]
    pair = keep[:, :, None] & keep[:, None, :] & torch.triu(torch.ones(p, p, dtype=torch.bool, device=zc.device), 1)
    npairs = pair.sum((1, 2)).float()
    push_b = ((1 + cos_cc) * pair).sum((1, 2)) / npairs.clamp(min=1)
    has2 = n >= 2
    push = push_b[has2].mean() if has2.any() else zc.sum() * 0
    cos_cj = (zc_n[:, :, None, :] * zj_n).sum(-1)  # [B, P, K]
    jm = jmask & keep[..., None]
    per_person = ((1 - cos_cj) * jm).sum(-1) / jm.sum(-1).clamp(min=1)
    pull_b = (per_person * keep).sum(1) / n.clamp(min=1)
    has1 = n >= 1
    pull = pull_b[has1].mean() if has1.any() else zc.sum() * 0
    return push, pull


def pose_loss(params: torch.Tensor, gt_pose: torch.Tensor) -> torch.Tensor:
    """Mean Frobenius distance of the root (6D vs GT) plus that of the 21 body joints (axis-angle vs GT)."""
    r_root = rot6d_to_rotmat(params[:, 3:9])
    g_root = axis_angle_to_rotmat(gt_pose[:, :3])
    r_body = axis_angle_to_rotmat(params[:, 9:72].reshape(-1, 3))
    g_body = axis_angle_to_rotmat(gt_pose[:, 3:66].reshape(-1, 3))
    return (r_root - g_root).flatten(1).norm(dim=1).mean() + (r_body - g_body).flatten(1).norm(dim=1).mean()


def gt_betas(shape: torch.Tensor) -> torch.Tensor:
    """GT for the 10 beta channels: Anny phenotypes - 0.5 in the first 6, zeros after (app: phen = b + 0.5)."""
    return torch.cat([shape - 0.5, shape.new_zeros(len(shape), 4)], 1)


def shape_loss(params: torch.Tensor, gt_shape: torch.Tensor) -> torch.Tensor:
    """Official form: L2 norm of ((beta_gt - beta_pred) * w) / 20, mean over people."""
    d = (gt_betas(gt_shape) - params[:, 72:82]) * SHAPE_W.to(params)
    return (d.norm(dim=1) / 20).mean()


def prior_loss(body_pose63: torch.Tensor, gmm: GMMPrior) -> torch.Tensor:
    """MaxMixture negative log-likelihood min_k 0.5 d_k' P_k d_k + (log_norm_k - min log_norm), / 100, mean.

    The constant is shifted so the best component's mean scores 0 (the SMPLify '< 5 -> 0' floor assumes the
    official prior's scale, which a GMM fitted on our sampler does not share, so it is not applied)."""
    mu = torch.as_tensor(gmm.means).to(body_pose63)
    prec = torch.as_tensor(gmm.precisions).to(body_pose63)
    ln = torch.as_tensor(gmm.log_norm).to(body_pose63)
    d = body_pose63[:, None, :] - mu[None]  # [N, K, 63]
    quad = torch.einsum("nki,kij,nkj->nk", d, prec, d)
    nll = 0.5 * quad + (ln - ln.min())[None]
    return (nll.min(1).values / 100).mean()


def procrustes_align(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Similarity-align x [N, K, 3] onto y [N, K, 3], every sample independently (any N, including 2 and 3).

    Batched Umeyama: all reductions keep explicit dims (no squeeze / diag over the batch), which is what breaks the
    ROMP-family version for batches of exactly 2 or 3."""
    mx, my = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    x0, y0 = x - mx, y - my
    var = (x0 ** 2).sum((1, 2)).clamp(min=1e-12)  # [N]
    k = x0.transpose(1, 2) @ y0  # [N, 3, 3]
    u, s, vh = torch.linalg.svd(k)
    d = torch.sign(torch.det(u @ vh))
    z = torch.ones_like(s)
    z[:, 2] = d
    rot = (u * z[:, None, :]) @ vh  # applied as x0 @ rot
    scale = (s * z).sum(1) / var
    return scale[:, None, None] * (x0 @ rot) + my


def mpjpe(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-person mean joint distance [N] over masked joints (root-aligned inputs)."""
    d = (pred - gt).norm(dim=-1)
    if mask is None:
        return d.mean(1)
    m = mask.float()
    return (d * m).sum(1) / m.sum(1).clamp(min=1)


def kp2d_loss(pj2d: torch.Tensor, kp2d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over people of the mean L2 2D error over in-frame joints (normalised units)."""
    return mpjpe(pj2d, kp2d, mask).mean()


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, float]


def cap(v: torch.Tensor) -> torch.Tensor:
    """Official loss_thresh: a term above 1000 is rescaled to exactly 1000."""
    return v * (LOSS_CAP / v.detach()) if float(v.detach()) > LOSS_CAP else v


def gather_people(maps: torch.Tensor, cells: torch.Tensor, pmask: torch.Tensor) -> torch.Tensor:
    """[B, C, M, M] at the GT centre cells of valid people -> [N, C] (row = y, column = x)."""
    return sample_embeddings(maps, cells)[pmask]


def body_joints(body: torch.nn.Module, params: torch.Tensor) -> torch.Tensor:
    """Predicted root-aligned SMPL-24 joints [N, 24, 3] in camera axes: the root rotation is applied after a
    zero-root forward, which equals a forward with the root when the mesh is root-aligned (a rotation about any
    pivot followed by subtracting the rotated mid-hip)."""
    shape = (params[:, 72:78] + 0.5).clamp(0, 1)
    out = body(params.new_zeros(len(params), 3), params[:, 9:72], shape=shape, root_align=True)
    return out.joints[:, :24] @ rot6d_to_rotmat(params[:, 3:9]).transpose(1, 2)


def compute_losses(out: dict[str, torch.Tensor], tg: Targets, gt: dict[str, torch.Tensor], body: torch.nn.Module,
                   gmm: GMMPrior, projectors: tuple[torch.nn.Module, torch.nn.Module] | None,
                   weights: dict[str, float] | None = None) -> LossOutput:
    """All terms for one batch. ``gt`` holds torch tensors of the stored GT (``pose``, ``shape``, ``j3d``, ``kp2d``,
    ``inimg``) indexed [B, P, ...]. ``projectors`` None disables the contrastive terms (ablation baseline)."""
    w = {**WEIGHTS, **(weights or {})}
    terms: dict[str, torch.Tensor] = {}
    terms["CenterMap"] = focal_loss(out["center_map"], tg.center_map)[:, 0].mean()
    terms["JointMap"] = focal_loss(out["joint_maps"], tg.joint_maps).mean()
    if projectors is not None and "centerid_map" in out:
        zc = projectors[0](sample_embeddings(out["centerid_map"], tg.center_cells))
        zj = projectors[1](sample_embeddings(out["jointid_map"], tg.kp_coords))
        terms["CenterID"], terms["JointID"] = contrastive_terms(zc, zj, tg.person_mask, tg.kp_mask)
    pm = tg.person_mask
    if pm.any():
        params = gather_people(out["params_maps"], tg.center_cells, pm)
        pose, shape, j3d = gt["pose"][pm], gt["shape"][pm], gt["j3d"][pm]
        terms["Pose"] = pose_loss(params, pose)
        terms["Shape"] = shape_loss(params, shape)
        terms["Prior"] = prior_loss(params[:, 9:72], gmm)
        joints = body_joints(body, params)
        terms["MPJPE"] = mpjpe(joints, j3d).mean()
        terms["PAMPJPE"] = mpjpe(procrustes_align(joints, j3d), j3d).mean()
        pj2d = params[:, None, 0:1] * joints[..., :2] + params[:, None, 1:3]
        terms["P_KP2D"] = kp2d_loss(pj2d, gt["kp2d"][pm], gt["inimg"][pm])
    weighted = {k: cap(v * w[k]) for k, v in terms.items() if torch.isfinite(v)}
    total = sum(weighted.values())
    return LossOutput(total, {k: float(v.detach()) for k, v in weighted.items()})
