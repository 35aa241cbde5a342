"""Demo clip: people walking and crossing with occlusions, rendered by the generator with held-out seeds/photos.

    python -m train.demo                                  # -> assets/demo/demo_crowd.mp4 (+ runs/demo_gt.npz)
    python -m train.demo --verify assets/models/demo_mobilenetv3.pt   # detections vs GT on sampled frames

Static camera over one held-out background photo; each walker has a fixed look, shape and depth, faces its
walking direction and steps with a gait phase tied to the distance walked, so the clip looks like video (no
per-frame re-sampling). Depth = scale (weak perspective): nearer walkers are bigger and lower in the frame.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from .dataset import SPLIT_SEED
from .poses import sample_pose
from .render import _load_photo, photo_split
from .scene import PersonSpec, SceneGT, random_person, render_scene


@dataclass
class Walker:
    spec: PersonSpec
    x0: float
    speed: float  # normalised units per second, signed
    yaw: float
    seed: int


def make_walkers(rng: np.random.Generator, n: int, duration: float, seed: int) -> list[Walker]:
    """n walkers at distinct depths; alternate directions so they cross around mid-clip."""
    scales = np.sort(rng.uniform(0.42, 0.85, n))
    walkers = []
    for k in range(n):
        s = float(scales[k])
        direction = 1.0 if k % 2 == 0 else -1.0
        speed = direction * rng.uniform(0.07, 0.12) * (0.6 + s)
        x_mid = rng.uniform(-0.25, 0.25)
        x0 = x_mid - speed * duration / 2
        ty = -0.12 + 0.45 * (s - 0.42)  # ground plane: nearer = lower
        yaw = direction * np.pi / 2 + rng.uniform(-0.35, 0.35)
        spec = random_person(rng, np.array([s, x0, ty], np.float32), category="walking", phase=0.0, yaw=yaw)
        walkers.append(Walker(spec, x0, speed, yaw, seed * 100 + k))
    return walkers


def clip_frames(seed: int = 0, n_people: int = 4, seconds: float = 15.0, fps: int = 15, h: int = 480,
                w: int = 640, background: str = "home.jpg") -> Iterator[tuple[np.ndarray, SceneGT]]:
    """Yield (BGR frame, GT) for every frame. ``background`` names a held-out photo (one without people in it,
    so that every person in the clip has ground truth)."""
    rng = np.random.default_rng([SPLIT_SEED["demo"] + seed])
    photos = [p for p in photo_split("demo") if Path(p).name == background]
    if not photos:
        raise ValueError(f"{background!r} is not a held-out background photo: {photo_split('demo')}")
    bg = cv2.resize(_load_photo(photos[0]), (w, h), interpolation=cv2.INTER_AREA)
    walkers = make_walkers(rng, n_people, seconds, seed)
    for f in range(int(seconds * fps)):
        t = f / fps
        specs = []
        for wk in walkers:
            x = wk.x0 + wk.speed * t
            phase = 2 * np.pi * abs(wk.speed * t) / (0.55 * wk.spec.cam[0])  # one stride ~ 0.55 body units
            pose = sample_pose(np.random.default_rng(wk.seed), "walking", phase=phase, noise_deg=2.0).body_pose
            cam = np.array([wk.spec.cam[0], x, wk.spec.cam[2]], np.float32)
            specs.append(replace(wk.spec, body_pose=pose, cam=cam))
        frame_rng = np.random.default_rng([seed, f])
        gt = render_scene(specs, h, w, bg.copy(), frame_rng, photometric_aug=False)
        noisy = np.clip(gt.image.astype(np.float32) + frame_rng.normal(0, 3, gt.image.shape), 0, 255)
        yield noisy.astype(np.uint8), gt


def write_clip(out: Path, gt_out: Path, **kw: object) -> tuple[int, int]:
    """Render and encode (mp4v); returns (frames, bytes). GT per frame goes to ``gt_out`` (npz)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fps = int(kw.get("fps", 15))  # type: ignore[call-overload]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    centers, boxes, occ, counts = [], [], [], []
    n = 0
    for frame, gt in clip_frames(**kw):  # type: ignore[arg-type]
        writer.write(frame)
        centers.append(gt.center)
        boxes.append(gt.bbox)
        occ.append(gt.occluded)
        counts.append(len(gt.center))
        n += 1
    writer.release()
    p = max(counts)
    pad = lambda xs, d: np.stack([np.pad(x, ((0, p - len(x)),) + ((0, 0),) * (x.ndim - 1)) for x in xs])  # noqa: E731
    gt_out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(gt_out, n=np.array(counts), center=pad(centers, 2), bbox=pad(boxes, 4),
                        occluded=pad(occ, 1))
    return n, out.stat().st_size


def verify(checkpoint: Path, clip: Path, gt_path: Path, every: int = 15, threshold: float = 0.2) -> None:
    """Run the app's path (letterbox -> network -> decode) on sampled frames and compare with the GT centres."""
    import torch

    from engine.checkpoint import load_network
    from engine.decode import DecodeCfg, decode_people
    from engine.preprocess import letterbox

    from .metrics import DetectionCounter, match_centers

    torch.set_num_threads(2)
    model = load_network(checkpoint, system="instancehmr")
    size = model.cfg.input_size
    gt = np.load(gt_path)
    cap = cv2.VideoCapture(str(clip))
    det, occ_det, f = DetectionCounter(), DetectionCounter(), 0
    rows = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if f % every == 0:
            img, _ = letterbox(frame, size)
            with torch.no_grad():
                out = model(torch.from_numpy(img)[None])
            people = decode_people(out["center_map"][0].numpy(), out["params_maps"][0].numpy(), size,
                                   DecodeCfg(threshold=threshold))
            n = int(gt["n"][f])
            centers = (people.center_preds + size / model.cfg.map_size / 2) / size * 2 - 1
            matches = match_centers(centers, gt["center"][f, :n], gt["bbox"][f, :n])
            det.add(len(people), matches, np.ones(n, bool))
            occ_det.add(len(people), matches, gt["occluded"][f, :n].astype(bool))
            rows.append(f"frame {f:4d}: GT {n} ({int(gt['occluded'][f, :n].sum())} occluded), detected "
                        f"{len(people)}, matched {len(matches)}")
        f += 1
    print("\n".join(rows))
    print(f"{len(rows)} frames: precision {det.precision:.3f} recall {det.recall:.3f}; occluded people recall "
          f"{occ_det.recall:.3f} ({occ_det.tp + occ_det.fn} occluded GT)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("assets/demo/demo_crowd.mp4"))
    ap.add_argument("--gt", type=Path, default=Path("runs/demo_gt.npz"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--verify", type=Path, default=None, help="checkpoint to check detections with")
    a = ap.parse_args(argv)
    if a.verify:
        verify(a.verify, a.out, a.gt)
        return
    n, size = write_clip(a.out, a.gt, seed=a.seed, n_people=a.people, seconds=a.seconds, fps=a.fps)
    print(f"wrote {a.out}: {n} frames, {size / 1e6:.2f} MB; GT {a.gt}")


if __name__ == "__main__":
    main()
