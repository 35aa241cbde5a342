"""Scene composer: 1-6 posed people over a background, with controllable overlap, and their ground truth.

Camera (the network's, as in the official code): weak perspective over the padded square, normalised to [-1, 1]
(x right, y down). A person's root-aligned (mid-hip) vertices X in camera axes project to
``pj2d = s * X[:, :2] + (tx, ty)``. Camera axes = SMPL axes after the 180-degree flip about x that ROMP's data
bakes into the global orientation: the GT ``global_orient`` is ``Rx(pi) @ R_world`` (R_world: yaw/pitch/roll of a
y-up person), so the head points to image-up (-y) and a person facing the camera faces -z. Depth: camera looks
along +z; a vertex's camera-space depth is ``X_z + 2 / s`` (metres, the z of ``cam_trans = 2 * (tx/s, ty/s, 1/s)``
used by the app), larger = farther. People are therefore ordered by their scale: bigger = nearer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .bodies import body_info, pose_bodies
from .poses import CATEGORIES, sample_pose
from .render import background, face_colors, photometric, rasterize

TORSO = (0, 1, 2, 12, 16, 17)  # pelvis, hips, neck, shoulders: the ROMP centre keypoints in SMPL-24 terms
SKIN = np.array([[60, 80, 120], [90, 120, 170], [120, 160, 210], [150, 190, 230], [40, 55, 85]], np.float32)
HAIR = np.array([[20, 20, 25], [30, 45, 70], [40, 70, 110], [90, 150, 200], [160, 160, 165], [45, 45, 130]],
                np.float32)  # BGR: black, dark brown, brown, blond, grey, auburn
R_FLIP = Rotation.from_euler("x", np.pi)


@dataclass
class PersonSpec:
    """Everything that defines one rendered person (camera included)."""

    body_pose: np.ndarray  # [69] axis-angle, joints 1..23
    world_orient: np.ndarray  # [3] axis-angle, y-up world (before the x-flip)
    shape: np.ndarray  # [6] Anny phenotypes in [0, 1]
    cam: np.ndarray  # [3] s, tx, ty
    part_colors: np.ndarray  # [9, 3] BGR, indexed by bodies.PART_NAMES
    stripe: tuple[float, float] | None
    category: int = 0

    @property
    def global_orient(self) -> np.ndarray:
        """GT root orientation in camera axes: Rx(pi) @ R_world (axis-angle)."""
        return (R_FLIP * Rotation.from_rotvec(self.world_orient)).as_rotvec().astype(np.float32)


@dataclass
class SceneGT:
    """Rendered frame and per-person ground truth (P people, in render order of ``specs``).

    kp2d/center/bbox are normalised over the padded square; ``vis`` = in frame and not covered by another person
    (read from the id raster); ``occluded`` = more than a third (8) of the 24 joints not visible.
    """

    image: np.ndarray  # [H, W, 3] BGR uint8 (the frame, not padded)
    ids: np.ndarray  # [H, W] uint8, 0 = background, k + 1 = person k
    kp2d: np.ndarray  # [P, 24, 2]
    vis: np.ndarray  # [P, 24] bool
    inimg: np.ndarray  # [P, 24] bool
    j3d: np.ndarray  # [P, 24, 3] root-aligned, camera axes, metres
    pose: np.ndarray  # [P, 72] global_orient (flipped) + body pose 69
    shape: np.ndarray  # [P, 6]
    cam: np.ndarray  # [P, 3]
    center: np.ndarray  # [P, 2] (x, y)
    bbox: np.ndarray  # [P, 4] x0, y0, x1, y1 (visible part, clipped to the frame)
    occluded: np.ndarray  # [P] bool
    category: np.ndarray  # [P] int


def padded_geometry(h: int, w: int) -> tuple[int, int, int]:
    """Side of the padded square and (pad_top, pad_left), centred, odd pixel to bottom/right (as the app)."""
    side = max(h, w)
    return side, (side - h) // 2, (side - w) // 2


def random_person(rng: np.random.Generator, cam: np.ndarray, category: str | None = None,
                  phase: float | None = None, yaw: float | None = None) -> PersonSpec:
    """A random pose, orientation, shape and clothing for a given camera."""
    ps = sample_pose(rng, category, phase)
    yaw = rng.uniform(-np.pi, np.pi) if yaw is None else yaw
    pitch = rng.normal(0, 0.08) + (0.15 if ps.category == "bending" else 0.0)
    world = Rotation.from_euler("YXZ", [yaw, pitch, rng.normal(0, 0.06)]).as_rotvec().astype(np.float32)
    shape = np.clip(rng.uniform(0, 1, 6), 0, 1).astype(np.float32)
    shape[1] = rng.uniform(0.45, 1.0)  # age: mostly adults
    colors = rng.uniform(20, 240, (9, 3)).astype(np.float32)
    skin = SKIN[rng.integers(0, len(SKIN))] * rng.uniform(0.85, 1.15)
    colors[0] = skin
    colors[7] = skin
    if rng.random() < 0.5:
        colors[2] = colors[1]  # sleeves same as shirt
    if rng.random() < 0.35:
        colors[3] = skin  # short sleeves
    if rng.random() < 0.3:
        colors[5] = colors[4]
    # hair (85%) or a hat (its random colour), unlike the face, so the face marks which way the person looks
    if rng.random() < 0.85:
        colors[8] = HAIR[rng.integers(0, len(HAIR))] * rng.uniform(0.8, 1.2)
    stripe = (float(rng.uniform(0.04, 0.12)), float(rng.uniform(0, 1))) if rng.random() < 0.3 else None
    return PersonSpec(ps.body_pose, world, shape, cam.astype(np.float32), colors, stripe,
                      CATEGORIES.index(ps.category))


def random_layout(rng: np.random.Generator, n: int, overlap: float, aspect_hw: float) -> list[np.ndarray]:
    """Cameras (s, tx, ty) for n people. With probability ``overlap`` a person is placed next to an earlier one
    (horizontal offset 0.1-0.6 body widths), so about that share of people overlap someone."""
    cams: list[np.ndarray] = []
    ylim = min(1.0, aspect_hw) * 0.8
    xlim = min(1.0, 1.0 / aspect_hw) * 0.85
    for _ in range(n):
        s = float(np.exp(rng.uniform(np.log(0.3), np.log(1.15))) * np.clip(1.7 / np.sqrt(n), 0.55, 1.0))
        if cams and rng.random() < overlap:
            ref = cams[int(rng.integers(0, len(cams)))]
            width = 0.45 * max(s, ref[0])
            tx = ref[1] + rng.choice([-1, 1]) * rng.uniform(0.1, 0.6) * width
            ty = ref[2] + rng.normal(0, 0.08)
        else:
            tx, ty = rng.uniform(-xlim, xlim), rng.uniform(-ylim, ylim)
        cams.append(np.array([s, np.clip(tx, -xlim, xlim), np.clip(ty, -ylim, ylim)], np.float32))
    return cams


def render_scene(specs: list[PersonSpec], h: int, w: int, bg: np.ndarray, rng: np.random.Generator,
                 min_pixels: int = 60, photometric_aug: bool = True) -> SceneGT:
    """Pose, project, rasterise and label. People left with too few visible pixels or joints are dropped from the
    GT (they are invisible anyway, so the image is unaffected)."""
    info = body_info()
    side, pad_top, pad_left = padded_geometry(h, w)
    pose = np.stack([np.concatenate([p.global_orient, p.body_pose]) for p in specs]).astype(np.float32)
    shape = np.stack([p.shape for p in specs]).astype(np.float32)
    cams = np.stack([p.cam for p in specs]).astype(np.float32)
    verts, joints = pose_bodies(pose[:, :3], pose[:, 3:], shape)
    off = np.array([pad_left, pad_top], np.float32)
    people = []
    for k, p in enumerate(specs):
        v2 = (cams[k, 0] * verts[k, :, :2] + cams[k, 1:]) + 1
        px = v2 * (side / 2.0) - off
        z = verts[k, :, 2:] + 2.0 / cams[k, 0]
        fcol = face_colors(p.part_colors, info.part, info.height, info.faces, p.stripe)
        people.append((np.concatenate([px, z], 1), fcol, k + 1))
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 0.4), rng.uniform(0.6, 1.5)])
    light /= np.linalg.norm(light)
    canvas = rasterize(bg, people, info.faces, info.winding, light, float(rng.uniform(0.35, 0.65)))
    image, ids = canvas[..., :3], canvas[..., 3].copy()
    if photometric_aug:
        image = photometric(image, rng)
    kp2d = cams[:, None, 0:1] * joints[:, :, :2] + cams[:, None, 1:]
    pix = (kp2d + 1) * (side / 2.0) - off
    ix, iy = np.floor(pix[..., 0]).astype(int), np.floor(pix[..., 1]).astype(int)
    inimg = (ix >= 0) & (iy >= 0) & (ix < w) & (iy < h)
    at = ids[np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
    own = np.arange(1, len(specs) + 1)[:, None]
    vis = inimg & ((at == 0) | (at == own))
    counts = np.bincount(ids.ravel(), minlength=len(specs) + 1)[1:]
    keep, centers, boxes = [], [], []
    for k in range(len(specs)):
        if counts[k] < min_pixels or vis[k].sum() < 2:
            continue
        torso = [j for j in TORSO if inimg[k, j]]
        sel = torso if torso else list(np.flatnonzero(inimg[k]))
        if not sel:
            continue
        c = kp2d[k, sel].mean(0)
        ys, xs = np.nonzero(ids == k + 1)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        box = (box + np.r_[off, off]) / (side / 2.0) - 1
        keep.append(k)
        centers.append(c)
        boxes.append(box)
    keep_a = np.asarray(keep, int)
    return SceneGT(image=np.ascontiguousarray(image), ids=ids, kp2d=kp2d[keep_a], vis=vis[keep_a],
                   inimg=inimg[keep_a], j3d=joints[keep_a], pose=pose[keep_a], shape=shape[keep_a],
                   cam=cams[keep_a], center=np.asarray(centers, np.float32).reshape(-1, 2),
                   bbox=np.asarray(boxes, np.float32).reshape(-1, 4),
                   occluded=(~vis[keep_a]).sum(1) > 8,
                   category=np.asarray([specs[k].category for k in keep], np.int64))


def compose_scene(rng: np.random.Generator, h: int, w: int, split: str = "train", max_people: int = 6,
                  overlap: float = 0.5) -> SceneGT:
    """A random scene of 1..max_people people (more mass on 2-4) on a background of the split."""
    weights = np.array([0.12, 0.2, 0.22, 0.2, 0.14, 0.12])[:max_people]
    n = int(rng.choice(np.arange(1, max_people + 1), p=weights / weights.sum()))
    cams = random_layout(rng, n, overlap, h / w)
    specs = [random_person(rng, c) for c in cams]
    return render_scene(specs, h, w, background(rng, h, w, split), rng)
