"""Pre-generated synthetic shards and the generation command.

    python -m train.dataset --split train --num 4000 --out data/synth/train      # training shards
    python -m train.dataset --split test --num 400 --out data/synth/test         # the fixed held-out test set

Image i of a split is rendered from ``np.random.default_rng([SPLIT_SEED[split] + seed, i])`` alone, so any image
is reproducible without the others and shards can be generated in parallel. The test split uses different seeds
and the held-out background photos (``render.photo_split``). Each image is a frame of a random aspect (square,
4:3, 16:9, portrait) letterboxed with black into the ``size`` square, exactly what the app feeds the network.
Images are stored as JPEG (q 92) and instance-id maps as PNG inside one .npz per shard; GT is padded to
``P_MAX`` people (``n`` says how many are real).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .scene import SceneGT, compose_scene, padded_geometry

P_MAX = 8
SPLIT_SEED = {"train": 0, "test": 1_000_000, "demo": 2_000_000}
GT_KEYS = ("kp2d", "vis", "inimg", "j3d", "pose", "shape", "cam", "center", "bbox", "occluded", "category")
FRAMES = ((1.0, 0.62), (0.75, 0.25), (0.5625, 0.07), (1.3333, 0.06))  # (h / w, probability)


def frame_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """A frame (h, w) whose longer side is ``size``."""
    ratios, probs = zip(*FRAMES, strict=True)
    r = float(rng.choice(ratios, p=np.asarray(probs) / sum(probs)))
    return (size, round(size / r)) if r > 1 else (round(size * r), size)


def letterbox_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre a frame in a black square (the app's padding; odd pixel bottom/right)."""
    h, w = img.shape[:2]
    side, top, left = padded_geometry(h, w)
    assert side == size
    out = np.zeros((side, side, *img.shape[2:]), img.dtype)
    out[top:top + h, left:left + w] = img
    return out


def make_sample(split: str, seed: int, index: int, size: int, overlap: float) -> tuple[np.ndarray, np.ndarray,
                                                                                        SceneGT]:
    """(square BGR image, square id map, GT) of image ``index``."""
    rng = np.random.default_rng([SPLIT_SEED[split] + seed, index])
    h, w = frame_shape(rng, size)
    gt = compose_scene(rng, h, w, split="test" if split != "train" else "train", overlap=overlap)
    return letterbox_square(gt.image, size), letterbox_square(gt.ids, size), gt


def _pack(gts: list[SceneGT]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key in GT_KEYS:
        first = getattr(gts[0], key)
        arr = np.zeros((len(gts), P_MAX, *first.shape[1:]), first.dtype)
        for i, g in enumerate(gts):
            v = getattr(g, key)[:P_MAX]
            arr[i, :len(v)] = v
        out[key] = arr
    out["n"] = np.array([min(len(g.cam), P_MAX) for g in gts], np.int64)
    return out


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    off = np.zeros(len(blobs) + 1, np.int64)
    off[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), np.uint8), off


def write_shard(path: Path, split: str, seed: int, start: int, count: int, size: int, overlap: float) -> int:
    imgs, idms, gts = [], [], []
    for i in range(start, start + count):
        img, ids, gt = make_sample(split, seed, i, size, overlap)
        imgs.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
        idms.append(cv2.imencode(".png", ids)[1].tobytes())
        gts.append(gt)
    ib, io = _concat(imgs)
    mb, mo = _concat(idms)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, img_bytes=ib, img_off=io, ids_bytes=mb, ids_off=mo, index=np.arange(start, start + count),
             size=np.int64(size), **_pack(gts))
    tmp.replace(path)
    return count


@dataclass
class Shards:
    """All shards of a folder, loaded in memory (JPEG bytes + GT arrays)."""

    arrays: dict[str, np.ndarray]
    img_bytes: list[np.ndarray]

    @classmethod
    def load(cls, folder: str | Path) -> Shards:
        files = sorted(Path(folder).glob("shard_*.npz"))
        files = [f for f in files if ".tmp" not in f.name]
        if not files:
            raise FileNotFoundError(f"no shards in {folder}; generate them with python -m train.dataset")
        parts = [dict(np.load(f)) for f in files]
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in (*GT_KEYS, "n", "index")}
        imgs: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        for p in parts:
            for a, b in zip(p["img_off"][:-1], p["img_off"][1:]):
                imgs.append(p["img_bytes"][a:b])
            for a, b in zip(p["ids_off"][:-1], p["ids_off"][1:]):
                ids.append(p["ids_bytes"][a:b])
        out = cls(arrays, imgs)
        out.ids_bytes = ids  # type: ignore[attr-defined]
        return out

    def __len__(self) -> int:
        return len(self.img_bytes)

    def image_rgb(self, i: int) -> np.ndarray:
        """[S, S, 3] uint8 RGB (the network's channel order)."""
        return cv2.imdecode(self.img_bytes[i], cv2.IMREAD_COLOR)[:, :, ::-1]

    def ids(self, i: int) -> np.ndarray:
        return cv2.imdecode(self.ids_bytes[i], cv2.IMREAD_UNCHANGED)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=tuple(SPLIT_SEED), default="train")
    ap.add_argument("--num", type=int, default=4000)
    ap.add_argument("--start", type=int, default=0, help="first image index (to extend a split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--shard", type=int, default=250)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    out = a.out or Path("data/synth") / a.split
    jobs = [(out / f"shard_{s:06d}.npz", s, min(a.shard, a.start + a.num - s))
            for s in range(a.start, a.start + a.num, a.shard)]
    jobs = [j for j in jobs if not j[0].is_file()]  # resumable
    t0, done = time.time(), 0
    with ProcessPoolExecutor(a.workers) as ex:
        futs = [ex.submit(write_shard, p, a.split, a.seed, s, c, a.size, a.overlap) for p, s, c in jobs]
        for f in futs:
            done += f.result()
            print(f"{done} images, {done / (time.time() - t0):.1f} img/s", flush=True)


if __name__ == "__main__":
    main()
