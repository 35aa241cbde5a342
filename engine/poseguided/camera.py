"""From the pose-guided models' crop-space outputs to the original frame.

Both 3DCrowdNet and JOTR place the body with a virtual pinhole camera on the 256x256 crop: focal 5000 px,
principal point at the crop centre (128, 128). Their camera head gives ``cam_param`` = (tx, ty, g) and the body
model (SMPL, translation added to its un-centred vertices) is moved by

    t = (tx, ty, k * sigmoid(g)),   k = sqrt(fx * fy * c^2 / (256 * 256)) = 5000 * 2.5 / 256 = 48.828125

with c = ``camera_3d_size`` = 2.5 m. Their demo renders on the original image with the same focal 5000 px, the
principal point moved to the crop box centre and t_z multiplied by 256 / sqrt(box_w * box_h).

Our camera is the original frame's own: focal ``f`` (our choice, see ``default_focal``) and principal point
``(cx, cy)``. The crop camera seen from the original frame is a pinhole with focal F = 5000 * a, where a is the
crop -> original scale of ``trans_inv``, and principal point b = ``trans_inv`` (128, 128) = the box centre.
A point P = t + p projects there to  u = b + F * (t_x + p_x) / (t_z + p_z).  Choosing

    T_z = t_z * f / F,    T_xy = t_xy + (b - c) * T_z / f

makes our projection  c + f * (T_xy + p_xy) / (T_z + p_z)  equal to it exactly for every point at the depth of
the translation (p_z = 0), which includes the body-model origin; points in front of or behind that plane differ
only by the perspective the 5000 px crop camera ignores (it is nearly orthographic) and ours keeps. With f = 5000
and c = b this is the demo's render formula.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .preprocess import HM_SIZE, INPUT_SIZE

__all__ = [
    "BBOX_3D_SIZE",
    "CAMERA_3D_SIZE",
    "CROP_FOCAL",
    "K_VALUE",
    "cam_param_to_translation",
    "crop_to_original",
    "crop_translation",
    "default_focal",
    "grid_depth_to_metres",
    "joint_img_to_grid",
    "official_render_translation",
]

CROP_FOCAL = 5000.0  # virtual focal of the crop camera, crop pixels
CAMERA_3D_SIZE = 2.5  # metres, sets the depth scale of the camera head
BBOX_3D_SIZE = 2.0  # metres spanned by the 64 depth bins of joint_img
K_VALUE = math.sqrt(CROP_FOCAL * CROP_FOCAL * CAMERA_3D_SIZE * CAMERA_3D_SIZE / (INPUT_SIZE * INPUT_SIZE))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def crop_translation(cam_param: np.ndarray) -> np.ndarray:
    """[N, 3] raw camera-head output -> [N, 3] translation for the crop camera (focal 5000, centre (128, 128))."""
    c = np.asarray(cam_param, dtype=np.float64).reshape(-1, 3)
    return np.stack([c[:, 0], c[:, 1], K_VALUE * _sigmoid(c[:, 2])], axis=1)


def official_render_translation(cam_param: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The demos' render translation: t_z scaled by 256 / sqrt(w * h) of the (x, y, w, h) crop box, for focal
    5000 px on the original image with the principal point at the box centre. Kept as the reference the general
    conversion must reduce to."""
    t = crop_translation(cam_param)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    t[:, 2] *= INPUT_SIZE / np.sqrt(b[:, 2] * b[:, 3])
    return t


def default_focal(width: int, height: int) -> float:
    """Focal length (pixels) we assume for an uncalibrated frame: the image diagonal, i.e. a 53 degree diagonal
    field of view, in the range of ordinary webcams and phone cameras; callers with a calibration pass their own."""
    return float(math.hypot(width, height))


def cam_param_to_translation(cam_param: np.ndarray, trans_inv: np.ndarray, focal: float,
                             princpt: tuple[float, float] | np.ndarray) -> np.ndarray:
    """Translation of each body in the original frame's camera (see the module docstring for the derivation).

    Args:
        cam_param: [N, 3] raw camera-head output (before the sigmoid).
        trans_inv: [N, 2, 3] crop -> original affine of each person (``PoseCrop.trans_inv``).
        focal: our focal length in original pixels.
        princpt: our principal point (cx, cy) in original pixels, usually the image centre.

    Returns:
        [N, 3] float32 metres, to add to the body model's vertices (in the same un-centred frame the official
        SMPL layer uses) before projecting with ``focal`` and ``princpt``.
    """
    t = crop_translation(cam_param)
    a = np.asarray(trans_inv, dtype=np.float64).reshape(-1, 2, 3)
    scale = np.sqrt(np.abs(a[:, 0, 0] * a[:, 1, 1]))  # original pixels per crop pixel
    half = INPUT_SIZE / 2.0
    centre = a[:, :, 0] * half + a[:, :, 1] * half + a[:, :, 2]  # the crop centre in original pixels
    tz = t[:, 2] * focal / (CROP_FOCAL * scale)
    txy = t[:, :2] + (centre - np.asarray(princpt, dtype=np.float64).reshape(1, 2)) * (tz / focal)[:, None]
    return np.concatenate([txy, tz[:, None]], axis=1).astype(np.float32)


def joint_img_to_grid(joint_img: np.ndarray, system: str) -> np.ndarray:
    """The networks' ``joint_img`` [N, 15, 3] in 64-grid units.

    3DCrowdNet's test output is already there (its soft-argmax on an 8-cube times 8); JOTR's decoder returns a
    sigmoid in [0, 1] per axis that its losses compare after multiplying by 64.
    """
    j = np.asarray(joint_img, dtype=np.float32)
    if system == "crowdnet":
        return j.copy()
    if system == "jotr":
        return j * float(HM_SIZE)
    raise ConfigError(f"unknown pose-guided system {system!r}: use 'crowdnet' or 'jotr'")


def grid_depth_to_metres(z: np.ndarray) -> np.ndarray:
    """Depth bin (0..64) of ``joint_img`` -> metres relative to the root, over a 2 m span."""
    return (np.asarray(z, dtype=np.float32) / HM_SIZE * 2.0 - 1.0) * (BBOX_3D_SIZE / 2.0)


def crop_to_original(points: np.ndarray, trans_inv: np.ndarray, units: str = "grid") -> np.ndarray:
    """Map [N, J, >=2] crop points to original pixels with each person's ``trans_inv`` [N, 2, 3].

    Args:
        units: "grid" for 64x64 heatmap coordinates (``joint_img``, ``PoseCrop.joints``), "pixels" for 256-crop
            pixels. Columns after x, y (depth, score) are passed through unchanged.
    """
    if units not in ("grid", "pixels"):
        raise ValueError(f"units must be 'grid' or 'pixels', got {units!r}")
    p = np.array(points, dtype=np.float64)
    a = np.asarray(trans_inv, dtype=np.float64).reshape(-1, 2, 3)
    xy = p[..., :2] * (INPUT_SIZE / HM_SIZE) if units == "grid" else p[..., :2]
    p[..., :2] = np.einsum("nij,nkj->nki", a[:, :, :2], xy) + a[:, None, :, 2]
    return p.astype(np.float32)
