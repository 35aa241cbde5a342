"""Table-4-style ablation on an equal budget: baseline (no instance branches, no contrastive loss) vs full
InstanceHMR vs full without positional encoding.

    python -m train.ablation --images 40000 [--data data/synth/train] [--test data/synth/test] [--out runs/ablation]

Every variant starts from the same random initialisation (seeded), sees the same number of training images drawn
with the same sampler seed, and is evaluated with the unchanged ``train.eval`` protocol on the fixed held-out set.
Runs are resumable (each variant is a normal ``train.train`` run under ``--out``), so the budget can be spread
over several sessions; the table is written to ``<out>/ablation.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.models import build_model

from . import train as trainer
from .ablation_model import VARIANTS, apply_variant
from .dataset import Shards
from .eval import evaluate

KEYS = ("MPJPE_mm", "PA-MPJPE_mm", "PCK@0.1", "orient_err_deg", "det_precision", "det_recall")
PAIRED = ("det_recall", "occluded_recall", "det_precision", "MPJPE_mm", "orient_err_deg")


def _metrics(w_img: np.ndarray, per: dict[str, np.ndarray], fp: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics under image weights ``w_img`` [B, I] (bootstrap counts), one value per row."""
    w = w_img[:, per["image"]].astype(np.float64)  # [B, P]
    found, occ = per["found"].astype(np.float64), per["occ"].astype(np.float64)
    tp = w @ found
    return {"det_recall": tp / w.sum(1),
            "occluded_recall": (w @ (found * occ)) / np.maximum(w @ occ, 1e-9),
            "det_precision": tp / np.maximum(tp + w_img @ fp, 1e-9),
            "MPJPE_mm": (w @ per["mpjpe"]) / w.sum(1),
            "orient_err_deg": (w @ per["orient"]) / w.sum(1)}


def paired_bootstrap(a: dict, b: dict, n_boot: int = 2000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Difference b - a with a 95% interval from resampling test IMAGES (people in one image are not independent),
    the same resample for both variants so shared difficulty cancels. ``a``/``b``: ``evaluate(per_person=True)``."""
    n_img = len(a["fp_per_image"])
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=n_boot)
    w1 = np.ones((1, n_img), np.int64)
    point_a, point_b = (_metrics(w1, r["per_person"], r["fp_per_image"]) for r in (a, b))
    boot_a, boot_b = (_metrics(w, r["per_person"], r["fp_per_image"]) for r in (a, b))
    out = {}
    for k in PAIRED:
        lo, hi = np.percentile(boot_b[k] - boot_a[k], [2.5, 97.5])
        out[k] = (float(point_b[k][0] - point_a[k][0]), float(lo), float(hi))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenetv3")
    ap.add_argument("--images", type=int, default=40000, help="training images per variant")
    ap.add_argument("--anneal", type=float, default=0.3, help="cosine lr tail over this last fraction (train.train)")
    ap.add_argument("--minutes", type=float, default=600.0, help="wall-clock cap per variant and invocation")
    ap.add_argument("--data", default="data/synth/train")
    ap.add_argument("--test", default="data/synth/test")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--eval-only", action="store_true", help="skip training; evaluate the variants' last.pt")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    init = a.out / "init.pt"
    if not init.is_file():
        torch.manual_seed(0)
        save_checkpoint(build_model(a.model), init)  # identical starting weights for every variant
    results: dict[str, dict] = {}
    per: dict[str, dict] = {}
    for v in a.variants:
        run = a.out / v
        if not a.eval_only:
            trainer.main(["--model", a.model, "--data", a.data, "--run", str(run), "--init", str(init), "--variant", v,
                          "--max-images", str(a.images), "--anneal", str(a.anneal), "--minutes", str(a.minutes)])
        model, extra = load_checkpoint(run / "last.pt")
        apply_variant(model, v)
        res = evaluate(model.eval(), Shards.load(a.test), per_person=True)
        per[v] = {"per_person": res.pop("per_person"), "fp_per_image": res.pop("fp_per_image")}
        res["_"]["train_images"] = int(extra.get("images", 0))
        res["_"]["train_hours"] = float(extra.get("seconds", 0.0)) / 3600
        results[v] = res
    vs = {v: paired_bootstrap(per["baseline"], per[v]) for v in per if v != "baseline"} if "baseline" in per else {}
    for v, ci in vs.items():
        results[v]["vs_baseline"] = ci
    (a.out / "ablation.json").write_text(json.dumps(results, indent=2))
    lines = ["| variant | train images | " + " | ".join(KEYS) + " | occluded recall |",
             "|---" * (len(KEYS) + 3) + "|"]
    for v, r in results.items():
        lines.append(f"| {v} | {r['_']['train_images']} | " + " | ".join(f"{r['all'][k]:.3g}" for k in KEYS)
                     + f" | {r['occluded']['det_recall']:.3g} |")
    if vs:
        lines += ["", "Difference to the baseline, 95% interval from a paired bootstrap over test images:", "",
                  "| variant | " + " | ".join(f"d {k}" for k in PAIRED) + " |", "|---" * (len(PAIRED) + 1) + "|"]
        lines += [f"| {v} | " + " | ".join(f"{d:+.3g} [{lo:+.3g}, {hi:+.3g}]" for d, lo, hi in (ci[k] for k in PAIRED))
                  + " |" for v, ci in vs.items()]
    (a.out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
