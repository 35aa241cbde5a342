"""From the network's maps to people, as the official parser does it (as in the official code):

5x5 max-pool suppression on the RAW centre map (no sigmoid), top-K (64) cells, score > threshold, gather the
82 parameters at each centre, 6D -> axis-angle for the root, weak-perspective camera -> 3D translation.
Runs on the host with numpy so that any backend (ONNX Runtime, TensorRT, torch) can feed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import rot6d_to_rotmat_np, rotmat_to_axis_angle_np
from .types import People

__all__ = ["DecodeCfg", "cam_to_translation", "decode_people", "decode_people_torch", "detect_centers"]

CAM_TRANS_WEIGHT = 2.0  # official convert_cam_to_3d_trans(weight=2)


@dataclass(frozen=True)
class DecodeCfg:
    threshold: float = 0.2
    max_people: int = 64
    nms_kernel: int = 5


def detect_centers(center_map: np.ndarray, cfg: DecodeCfg = DecodeCfg()) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of a [M, M] (or [1, M, M]) raw centre map.

    Returns:
        flat indices (y * M + x) [N] int64 and scores [N] float32, best first.
    """
    cmap = np.ascontiguousarray(np.asarray(center_map, dtype=np.float32).reshape(center_map.shape[-2:]))
    kernel = np.ones((cfg.nms_kernel, cfg.nms_kernel), np.uint8)
    # grey dilation == max-pool with stride 1 and -inf padding (OpenCV's default dilate border)
    pooled = cv2.dilate(cmap, kernel)
    keep = (cmap == pooled).ravel()
    scores = cmap.ravel()
    cand = np.flatnonzero(keep)
    order = cand[np.argsort(-scores[cand], kind="stable")][: cfg.max_people]
    order = order[scores[order] > cfg.threshold]
    return order.astype(np.int64), scores[order].astype(np.float32)


def cam_to_translation(cam: np.ndarray) -> np.ndarray:
    """Weak-perspective (s, tx, ty) -> camera-space translation 2 * (tx/s, ty/s, 1/s)."""
    s = np.maximum(cam[:, 0:1], 1e-6)
    return (CAM_TRANS_WEIGHT * np.concatenate([cam[:, 1:3] / s, 1.0 / s], axis=1)).astype(np.float32)


def decode_people(center_map: np.ndarray, params_maps: np.ndarray, input_size: int,
                  cfg: DecodeCfg = DecodeCfg()) -> People:
    """Decode one image.

    Args:
        center_map: [1, M, M] or [M, M] raw centre heatmap.
        params_maps: [82, M, M] parameter map (channel 0 already 1.1^raw).
        input_size: network input side in pixels (centres are reported in these pixels).
    """
    m = params_maps.shape[-1]
    flat, scores = detect_centers(center_map, cfg)
    if len(flat) == 0:
        return People.empty()
    params = np.asarray(params_maps, dtype=np.float32).reshape(params_maps.shape[0], -1)[:, flat].T  # [N, 82]
    return _people_from(flat, scores, params, m, input_size)


def decode_people_torch(center_map, params_maps, input_size: int, cfg: DecodeCfg = DecodeCfg()) -> People:
    """:func:`decode_people` with the peak search and the gather on the maps' device (torch tensors).

    Why: on a GPU the maps stay where the network wrote them; only the K <= ``max_people`` kept centres and their
    82 parameters ([K, 82] floats, a few KB) are copied back, instead of the full [82, M, M] parameter map. The
    suppression is the same 5x5 max-pool with -inf padding, the order the same (score, then flat index), so the
    people equal the host decoder's up to float rounding.
    """
    import torch
    import torch.nn.functional as F

    cmap = center_map.reshape(1, 1, *center_map.shape[-2:]).float()
    m = int(params_maps.shape[-1])
    pooled = F.max_pool2d(cmap, cfg.nms_kernel, stride=1, padding=cfg.nms_kernel // 2)
    flat_scores = cmap.reshape(-1)
    masked = torch.where(cmap.reshape(-1) == pooled.reshape(-1), flat_scores, torch.full_like(flat_scores, -torch.inf))
    k = min(cfg.max_people, masked.numel())
    # stable order as on the host: sort by score descending, ties by flat index (topk alone does not promise it)
    scores, flat = torch.sort(masked, descending=True, stable=True)
    scores, flat = scores[:k], flat[:k]
    keep = scores > cfg.threshold
    scores, flat = scores[keep], flat[keep]
    if flat.numel() == 0:
        return People.empty()
    params = params_maps.reshape(params_maps.shape[0], -1)[:, flat].T.float()
    return _people_from(flat.cpu().numpy().astype(np.int64), scores.cpu().numpy().astype(np.float32),
                        params.cpu().numpy(), m, input_size)


def _people_from(flat: np.ndarray, scores: np.ndarray, params: np.ndarray, m: int, input_size: int) -> People:
    """People from kept flat centre indices, their scores and their [N, 82] parameters (host side)."""
    n = len(flat)
    stride = input_size / m
    ys, xs = np.divmod(flat, m)
    centers = np.stack([xs, ys], axis=1).astype(np.float32) * stride
    cam = params[:, 0:3]
    root = rotmat_to_axis_angle_np(rot6d_to_rotmat_np(params[:, 3:9])).astype(np.float32)
    body = np.concatenate([params[:, 9:72], np.zeros((n, 6), np.float32)], axis=1)
    return People(center_preds=centers, center_confs=scores, cam=np.ascontiguousarray(cam), global_orient=root,
                  body_pose=body, betas=np.ascontiguousarray(params[:, 72:82]), cam_trans=cam_to_translation(cam),
                  track_ids=np.full(n, -1, np.int64))
