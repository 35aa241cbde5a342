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

import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.models import build_model

from . import train as trainer
from .ablation_model import VARIANTS, apply_variant
from .dataset import Shards
from .eval import evaluate

KEYS = ("MPJPE_mm", "PA-MPJPE_mm", "PCK@0.1", "det_precision", "det_recall")


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
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    init = a.out / "init.pt"
    if not init.is_file():
        torch.manual_seed(0)
        save_checkpoint(build_model(a.model), init)  # identical starting weights for every variant
    results: dict[str, dict] = {}
    for v in a.variants:
        run = a.out / v
        trainer.main(["--model", a.model, "--data", a.data, "--run", str(run), "--init", str(init), "--variant", v,
                      "--max-images", str(a.images), "--anneal", str(a.anneal), "--minutes", str(a.minutes)])
        model, extra = load_checkpoint(run / "last.pt")
        apply_variant(model, v)
        res = evaluate(model.eval(), Shards.load(a.test))
        res["_"]["train_images"] = int(extra.get("images", 0))
        res["_"]["train_hours"] = float(extra.get("seconds", 0.0)) / 3600
        results[v] = res
    (a.out / "ablation.json").write_text(json.dumps(results, indent=2))
    lines = ["| variant | train images | " + " | ".join(KEYS) + " | occluded recall |",
             "|---" * (len(KEYS) + 3) + "|"]
    for v, r in results.items():
        lines.append(f"| {v} | {r['_']['train_images']} | " + " | ".join(f"{r['all'][k]:.3g}" for k in KEYS)
                     + f" | {r['occluded']['det_recall']:.3g} |")
    (a.out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
