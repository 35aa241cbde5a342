"""Result files: per-image / per-video .npz with simple-romp key names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import OutputError
from engine.predictor import FrameResult

NPZ_KEYS = ("center_preds", "center_confs", "cam", "global_orient", "body_pose", "betas", "smpl_thetas", "cam_trans",
            "joints", "pj2d_org", "track_ids")


def result_arrays(result: FrameResult) -> dict[str, np.ndarray]:
    d = result.people.as_dict()
    arrays = {k: d[k] for k in NPZ_KEYS if k in d}
    if result.meshes is not None:
        arrays["joints"] = result.meshes.joints
        arrays["pj2d_org"] = result.meshes.pj2d_org
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written result."""
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}; free space or choose another --save-npz") from e
    return path
