"""Evaluate a checkpoint on the fixed held-out synthetic test set.

    python -m train.dataset --split test --num 400            # once: data/synth/test (fixed seeds, held-out photos)
    python -m train.eval --checkpoint assets/models/demo_mobilenetv3.pt [--data data/synth/test] [--json out.json]

Prints a markdown table (all people and the occluded subset: more than a third of the joints not visible).
Metric definitions: ``train/metrics.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import load_checkpoint
from engine.decode import DecodeCfg, decode_people
from engine.errors import AppError, ConfigError
from engine.geometry import axis_angle_to_rotmat, rot6d_to_rotmat

from .ablation_model import apply_variant
from .bodies import get_body
from .dataset import GT_KEYS, Shards
from .losses import body_joints, procrustes_align
from .metrics import DetectionCounter, match_centers, pck
from .targets import to_cells


def rotation_angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between rotation matrices [N, 3, 3] -> [N] degrees. Root orientation is reported on its own
    because MPJPE hides a person predicted facing the wrong way behind an error that merely looks large."""
    cos = ((a.transpose(1, 2) @ b).diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Shards, batch: int = 16, threshold: float = 0.2,
             limit: int = 0, per_person: bool = False) -> dict[str, dict]:
    """Metrics for ``all`` and ``occluded`` people. ``per_person`` adds ``res["per_person"]`` (arrays per GT
    person: image, found, occluded, errors) and ``res["fp_per_image"]``, for paired bootstrap comparisons."""
    body = get_body()
    m = model.cfg.map_size
    size = model.cfg.input_size
    n_img = len(data) if not limit else min(limit, len(data))
    per: dict[str, list[np.ndarray]] = {k: [] for k in ("mpjpe", "pampjpe", "pve", "pck", "orient", "occ",
                                                             "image", "found")}
    fp_per_image = np.zeros(n_img, np.int64)
    det = {"all": DetectionCounter(), "occluded": DetectionCounter()}
    for s in range(0, n_img, batch):
        idx = np.arange(s, min(s + batch, n_img))
        imgs = torch.from_numpy(np.stack([data.image_rgb(int(i)) for i in idx]).astype(np.float32))
        out = model(imgs.permute(0, 3, 1, 2).contiguous())
        gt = {k: data.arrays[k][idx] for k in (*GT_KEYS, "n")}
        for b in range(len(idx)):
            n = int(gt["n"][b])
            people = decode_people(out["center_map"][b].numpy(), out["params_maps"][b].numpy(), size,
                                   DecodeCfg(threshold=threshold))
            centers = (people.center_preds + size / m / 2) / size * 2 - 1  # cell centres, normalised
            matches = match_centers(centers, gt["center"][b, :n], gt["bbox"][b, :n])
            fp_per_image[idx[b]] = len(people) - len(matches)
            if n == 0:
                det["all"].fp += len(people)
                continue
            per["image"].append(np.full(n, idx[b]))
            per["found"].append(np.isin(np.arange(n), [g for _, g in matches]))
            occ = gt["occluded"][b, :n].astype(bool)
            det["all"].add(len(people), matches, np.ones(n, bool))
            det["occluded"].add(len(people), matches, occ)
            cells = torch.from_numpy(to_cells(gt["center"][b, :n], m))
            params = out["params_maps"][b][:, cells[:, 1], cells[:, 0]].T  # row = y, column = x
            joints = body_joints(body, params)
            j3d = torch.from_numpy(gt["j3d"][b, :n])
            per["mpjpe"].append(((joints - j3d).norm(dim=-1).mean(1) * 1000).numpy())
            pa = procrustes_align(joints, j3d)
            per["pampjpe"].append(((pa - j3d).norm(dim=-1).mean(1) * 1000).numpy())
            pose = torch.from_numpy(gt["pose"][b, :n])
            gshape = torch.from_numpy(gt["shape"][b, :n])
            gv = body(pose[:, :3], pose[:, 3:], shape=gshape, root_align=True).vertices
            pshape = (params[:, 72:78] + 0.5).clamp(0, 1)
            pv = body(torch.zeros(n, 3), params[:, 9:72], shape=pshape, root_align=True).vertices
            root = rot6d_to_rotmat(params[:, 3:9])
            pv = pv @ root.transpose(1, 2)
            per["orient"].append(rotation_angle_deg(root, axis_angle_to_rotmat(pose[:, :3])).numpy())
            per["pve"].append(((pv - gv).norm(dim=-1).mean(1) * 1000).numpy())
            pj2d = (params[:, None, 0:1] * joints[..., :2] + params[:, None, 1:3]).numpy()
            per["pck"].append(pck(pj2d, gt["kp2d"][b, :n], gt["inimg"][b, :n].astype(bool), gt["bbox"][b, :n]))
            per["occ"].append(occ)
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in per.items()}
    occ = cat["occ"].astype(bool)
    res: dict[str, dict[str, float]] = {}
    for name, sel in (("all", np.ones_like(occ)), ("occluded", occ)):
        res[name] = {
            "people": int(sel.sum()),
            "MPJPE_mm": float(np.mean(cat["mpjpe"][sel])) if sel.any() else float("nan"),
            "PA-MPJPE_mm": float(np.mean(cat["pampjpe"][sel])) if sel.any() else float("nan"),
            "PVE_mm": float(np.mean(cat["pve"][sel])) if sel.any() else float("nan"),
            "PCK@0.1": float(np.nanmean(cat["pck"][sel])) if sel.any() else float("nan"),
            "orient_err_deg": float(np.mean(cat["orient"][sel])) if sel.any() else float("nan"),
            "orient_over_90deg": float(np.mean(cat["orient"][sel] > 90)) if sel.any() else float("nan"),
            "det_precision": det[name].precision,
            "det_recall": det[name].recall,
        }
    res["_"] = {"images": n_img, "threshold": threshold}
    if per_person:
        res["per_person"] = {k: cat[k] for k in ("image", "found", "occ", "mpjpe", "pampjpe", "orient")}
        res["fp_per_image"] = fp_per_image
    return res


def table(res: dict[str, dict[str, float]]) -> str:
    keys = ["people", "MPJPE_mm", "PA-MPJPE_mm", "PVE_mm", "PCK@0.1", "orient_err_deg", "orient_over_90deg",
            "det_precision", "det_recall"]
    lines = ["| subset | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name in ("all", "occluded"):
        r = res[name]
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k])
                                                 for k in keys) + " |")
    return "\n".join(lines)


def check_test_set(data: str | Path) -> None:
    """A fresh clone has no held-out set (it is generated, not shipped): say how to make it instead of a traceback."""
    folder = Path(data)
    if folder.is_dir() and any(f for f in folder.glob("shard_*.npz") if ".tmp" not in f.name):
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--data {folder} is not a folder; pass the folder of test shards (default data/synth/test)")
    raise ConfigError(f"no test set in {folder} (no shard_*.npz); generate the held-out set once with "
                      f"python -m train.dataset --split test --num 400 --out {folder}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=Path("assets/models/demo_mobilenetv3.pt"))
    ap.add_argument("--data", default="data/synth/test")
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        check_test_set(a.data)
        model, extra = load_checkpoint(a.checkpoint)
    except AppError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    apply_variant(model, str(extra.get("variant", "full")))
    res = evaluate(model.eval(), Shards.load(a.data), threshold=a.threshold, limit=a.limit)
    print(f"{a.checkpoint} on {a.data} ({res['_']['images']} images, centre threshold {a.threshold})")
    print(table(res))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
