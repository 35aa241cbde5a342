"""Fast CPU rendering of posed meshes with an instance-id channel, and backgrounds.

The raster is a per-triangle painter's algorithm over ALL people at once (triangles sorted far-to-near by mean
depth, back faces culled, flat Lambert shading). Each triangle is filled once into a 4-channel uint8 canvas whose
4th channel is the person id (k + 1), so colour and instance mask stay consistent by construction and a joint's
visibility is read from the id channel ("hidden" = covered by ANOTHER person). Per-triangle sorting is exact for
separate people under the orthographic (weak-perspective) camera; only interpenetrating triangles can be wrong.
Depth convention: camera looks along +z, larger z = farther (see README).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

PHOTO_DIR = Path("/usr/share/doc/opencv-doc/examples/data")


@lru_cache(maxsize=1)
def photo_paths() -> tuple[str, ...]:
    """Colour photos usable as backgrounds (sorted, so splits are reproducible)."""
    out = []
    for p in sorted(PHOTO_DIR.glob("*")):
        if p.suffix.lower() not in (".jpg", ".png", ".jpeg"):
            continue
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < 120:
            continue
        out.append(str(p))
    return tuple(out)


def photo_split(split: str) -> list[str]:
    """Held-out photos: every 5th (by sorted name) is reserved for test/demo, the rest are for training."""
    paths = photo_paths()
    held = [p for i, p in enumerate(paths) if i % 5 == 2]
    return held if split in ("test", "demo") else [p for p in paths if p not in held]


@lru_cache(maxsize=128)
def _load_photo(path: str) -> np.ndarray:
    return cv2.imread(path, cv2.IMREAD_COLOR)


def procedural_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradients, blobs, stripes, checkerboards and noise textures (BGR uint8)."""
    kind = rng.integers(0, 4)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (c0 * (1 - t) + c1 * t) * np.ones((1, w, 1), np.float32)
    if kind == 1:
        for _ in range(rng.integers(5, 25)):
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            if rng.random() < 0.5:
                cv2.rectangle(img, (x, y), (x + int(rng.integers(10, w // 2)), y + int(rng.integers(10, h // 2))),
                              col, -1)
            else:
                cv2.ellipse(img, (x, y), (int(rng.integers(5, w // 4)), int(rng.integers(5, h // 4))),
                            float(rng.uniform(0, 180)), 0, 360, col, -1)
    elif kind == 2:
        period = int(rng.integers(6, 40))
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((xx // period + yy // period) % 2 == 0) if rng.random() < 0.5 else ((xx + yy) // period % 2 == 0)
        img[mask] = img[mask] * 0.6 + np.asarray(rng.integers(0, 256, 3), np.float32) * 0.4
    elif kind == 3:
        small = rng.uniform(0, 255, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
        img = 0.5 * img + 0.5 * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.uint8)


def background(rng: np.random.Generator, h: int, w: int, split: str) -> np.ndarray:
    """A random background: a random crop of a real photo (70 %) or a procedural one."""
    photos = photo_split(split)
    if photos and rng.random() < 0.7:
        img = _load_photo(photos[int(rng.integers(0, len(photos)))])
        ih, iw = img.shape[:2]
        scale = max(h / ih, w / iw) * rng.uniform(1.0, 1.8)
        img = cv2.resize(img, (max(w, int(iw * scale + 0.5)), max(h, int(ih * scale + 0.5))))
        y0 = int(rng.integers(0, img.shape[0] - h + 1))
        x0 = int(rng.integers(0, img.shape[1] - w + 1))
        img = img[y0:y0 + h, x0:x0 + w]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        return np.ascontiguousarray(img)
    return procedural_background(rng, h, w)


def face_colors(part_colors: np.ndarray, vert_part: np.ndarray, vert_height: np.ndarray, faces: np.ndarray,
                stripe: tuple[float, float] | None) -> np.ndarray:
    """Per-face base colour [F, 3] float32 from per-part colours, with optional horizontal stripes (period, phase)
    on the torso/arm parts as a simple clothing texture."""
    vc = part_colors[vert_part].astype(np.float32)
    if stripe is not None:
        period, phase = stripe
        on = (np.floor((vert_height + phase) / period) % 2 == 0) & np.isin(vert_part, (1, 2))
        vc[on] *= 0.55
    return vc[faces].mean(1)


def rasterize(canvas: np.ndarray, people: list[tuple[np.ndarray, np.ndarray, np.ndarray]], faces: np.ndarray,
              winding: float, light: np.ndarray, ambient: float) -> np.ndarray:
    """Draw people into ``canvas`` (BGR uint8 [H, W, 3], modified copy returned with an id channel).

    Args:
        people: per person (verts_px [V, 3] with x, y in pixels and z depth (larger = farther), face colours [F, 3]
            BGR float, id value 1..255).
        faces: [F, 3] triangles shared by all people.
        winding: +1/-1 so that winding * (e1 x e2) is the outward normal.
        light: unit direction the light travels (camera axes).
        ambient: ambient term in [0, 1].

    Returns:
        [H, W, 4] uint8: BGR + instance id (0 = background).
    """
    h, w = canvas.shape[:2]
    out = np.zeros((h, w, 4), np.uint8)
    out[..., :3] = canvas
    all_pts, all_col, all_z = [], [], []
    for verts, fcol, pid in people:
        tri = verts[faces]  # [F, 3, 3]
        n = winding * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
        front = n[:, 2] < 0  # outward normal toward the camera (camera looks along +z)
        lam = ambient + (1 - ambient) * np.clip(-(n[front] @ light), 0, 1)
        col = np.clip(fcol[front] * lam[:, None], 0, 255)
        all_pts.append(tri[front, :, :2])
        all_col.append(np.concatenate([col, np.full((len(col), 1), pid, np.float32)], 1))
        all_z.append(tri[front, :, 2].mean(1))
    if not all_pts:
        return out
    pts = np.concatenate(all_pts)
    cols = np.concatenate(all_col)
    order = np.argsort(-np.concatenate(all_z), kind="stable")  # far first
    ipts = np.round(pts[order] * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    icol = np.round(cols[order]).astype(np.int32).tolist()
    # skip triangles entirely outside the image
    lo, hi = ipts.min(1), ipts.max(1)
    inside = (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] < w * 4) & (lo[:, 1] < h * 4)
    fill = cv2.fillConvexPoly
    for k in np.flatnonzero(inside).tolist():
        fill(out, ipts[k], icol[k], cv2.LINE_8, 2)
    return out


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, sensor noise, brightness/contrast jitter (applied to the whole composited image)."""
    x = img.astype(np.float32)
    x = x * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25)
    if rng.random() < 0.4:
        k = int(rng.choice([3, 5]))
        x = cv2.GaussianBlur(x, (k, k), 0)
    if rng.random() < 0.5:
        x += rng.normal(0, rng.uniform(2, 10), x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)
