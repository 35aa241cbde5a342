"""Trainer: ``python -m train.train --model mobilenetv3 --data data/synth/train --run runs/mnv3 --minutes 60``.

Resumes from ``<run>/last.pt`` (model, optimizer, step, images seen, wall time, loss history) so budgets accumulate
across sessions; saves every ``--save-min`` minutes and at the end (atomic writes). Adam with the paper's gradient
clipping (0.5); the learning rate is higher than the paper's 5e-5 because this budget is hours on a CPU, not days
on GPUs. Runs on CUDA when present (both the lightweight and the official architectures: ``--model resnet50``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.models import build_model

from .ablation_model import VARIANTS, apply_variant
from .bodies import get_body
from .dataset import GT_KEYS, Shards
from .losses import compute_losses
from .poses import load_or_fit_prior
from .progress import Progress
from .targets import build_targets


def load_batch(data: Shards, idx: np.ndarray, rng: np.random.Generator, augment: bool, size: int = 0
               ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Images [B, 3, S, S] float RGB 0..255 and the GT arrays of ``idx``. ``size`` resizes the stored squares
    (cubic, like the app) when the network input differs (e.g. 512 for resnet50/hrnet32); all GT is normalised,
    so nothing else changes."""
    imgs = [data.image_rgb(int(i)) for i in idx]
    if size and imgs[0].shape[0] != size:
        imgs = [cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in imgs]
    imgs = np.stack(imgs).astype(np.float32)
    if augment:  # cheap per-image colour gains on top of the generator's photometric jitter
        imgs *= rng.uniform(0.85, 1.15, (len(idx), 1, 1, 3)).astype(np.float32)
        np.clip(imgs, 0, 255, out=imgs)
    gt = {k: data.arrays[k][idx] for k in (*GT_KEYS, "n")}
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), gt


def gt_tensors(gt: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    keys = ("pose", "shape", "j3d", "kp2d", "inimg")
    return {k: torch.as_tensor(gt[k]).to(device) for k in keys}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="mobilenetv3")
    ap.add_argument("--data", default="data/synth/train")
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--init", type=Path, default=None, help="start from these weights when the run is new")
    ap.add_argument("--variant", choices=VARIANTS, default="full")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of this invocation")
    ap.add_argument("--max-images", type=int, default=0, help="stop when the run has seen this many (0 = no cap)")
    ap.add_argument("--anneal", type=float, default=0.0,
                    help="cosine-decay lr to 5%% over this last fraction of --max-images, so a fixed-budget run "
                         "(the ablation) ends on settled weights instead of wherever constant lr left them")
    ap.add_argument("--save-min", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    run = a.run or Path("runs") / f"{a.model}_{a.variant}"
    run.mkdir(parents=True, exist_ok=True)
    ckpt = run / "last.pt"
    state: dict = {"step": 0, "images": 0, "seconds": 0.0, "history": []}
    if ckpt.is_file():
        model, extra = load_checkpoint(ckpt)
        state.update({k: extra[k] for k in state if k in extra})
        print(f"resumed {ckpt}: step {state['step']}, {state['images']} images, {state['seconds'] / 3600:.2f} h")
    elif a.init is not None:
        model, extra = load_checkpoint(a.init)
        print(f"initialised from {a.init}")
    else:
        model, extra = build_model(a.model), {}
    apply_variant(model, a.variant)
    model.to(dev).train()
    if dev.type == "cpu":  # ~1.6x faster conv training on CPU (measured)
        model.to(memory_format=torch.channels_last)
    body = get_body().to(dev)
    gmm = load_or_fit_prior()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    if "optimizer" in extra and ckpt.is_file():
        opt.load_state_dict(extra["optimizer"])
    for g in opt.param_groups:
        g["lr"] = a.lr
    data = Shards.load(a.data)
    m = model.cfg.map_size
    projectors = None if a.variant == "baseline" else (model.ct_projector, model.jt_projector)
    rng = np.random.default_rng([a.seed, state["step"]])
    budget = a.minutes * 60
    bar = Progress(1, desc=f"{run.name}", every=10)
    t_start, t_save = time.time(), time.time()
    run_losses: dict[str, float] = {}
    print(f"{len(data)} training images, map {m}x{m}, device {dev}, batch {a.batch}, lr {a.lr}", flush=True)

    def save() -> None:
        state["seconds"] += time.time() - save.t  # type: ignore[attr-defined]
        save.t = time.time()  # type: ignore[attr-defined]
        save_checkpoint(model, ckpt, optimizer=opt.state_dict(), variant=a.variant, **state)
        (run / "history.json").write_text(json.dumps(state["history"][-2000:]))

    save.t = time.time()  # type: ignore[attr-defined]
    while time.time() - t_start < budget and not (a.max_images and state["images"] >= a.max_images):
        idx = rng.choice(len(data), a.batch, replace=False)
        imgs, gt = load_batch(data, idx, rng, augment=True, size=model.cfg.input_size)
        tg = build_targets(gt, m)
        imgs = imgs.to(dev).contiguous(memory_format=torch.channels_last)
        out = model(imgs, return_id_maps=a.variant != "baseline")
        tg = type(tg)(*(t.to(dev) for t in (tg.center_map, tg.joint_maps, tg.center_cells, tg.person_mask,
                                            tg.kp_coords, tg.kp_mask)))
        lo = compute_losses(out, tg, gt_tensors(gt, dev), body, gmm, projectors)
        for g in opt.param_groups:
            g["lr"] = a.lr * lr_factor(state["step"], state["images"], a.warmup, a.max_images, a.anneal)
        opt.zero_grad(set_to_none=True)
        lo.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        state["step"] += 1
        state["images"] += a.batch
        for k, v in lo.terms.items():
            run_losses[k] = 0.98 * run_losses.get(k, v) + 0.02 * v
        total = sum(run_losses.values())
        if state["step"] % 50 == 0:
            state["history"].append({"step": state["step"], "images": state["images"], "total": total, **run_losses})
        elapsed = time.time() - t_start
        bar.total = bar.n + 1 + int(max(budget - elapsed, 0) * (bar.n + 1) / max(elapsed, 1e-9))  # time-based ETA
        bar.update(1, loss=total, ctr=run_losses.get("CenterMap", 0), j3d=run_losses.get("MPJPE", 0),
                   kp2d=run_losses.get("P_KP2D", 0), cid=run_losses.get("CenterID", 0))
        if time.time() - t_save > a.save_min * 60:
            save()
            t_save = time.time()
    save()
    bar.close()
    print(f"saved {ckpt}: step {state['step']}, {state['images']} images, {state['seconds'] / 3600:.2f} h; "
          + " ".join(f"{k}={v:.3g}" for k, v in run_losses.items()), flush=True)


def lr_factor(step: int, images: int, warmup: int, max_images: int, anneal: float) -> float:
    """Linear warm-up, then constant, then (optionally) a cosine tail over the last ``anneal`` of the budget."""
    f = min(1.0, (step + 1) / max(warmup, 1))
    if max_images and anneal > 0:
        start = max_images * (1.0 - anneal)
        if images > start:
            t = min(1.0, (images - start) / (max_images - start))
            f *= 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t))
    return f


if __name__ == "__main__":
    main()
