"""Access to the body model the generator renders, plus per-vertex body-part labels for clothing colours.

The generator must render the SAME body model the app decodes with (``engine.body.create_body_model("anny")``):
a network trained on one body and decoded with another would place joints and silhouettes inconsistently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

# SMPL-24 bones as (parent, child) segments used to label vertices by their nearest bone.
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# part group of the bone that ENDS at joint j (child joint index -> group)
PART_NAMES = ("skin", "torso", "upper_arm", "lower_arm", "upper_leg", "lower_leg", "foot", "head", "hair")
HAIR = PART_NAMES.index("hair")
_CHILD_GROUP = {1: 1, 2: 1, 3: 1, 6: 1, 9: 1, 12: 1, 13: 1, 14: 1, 15: 7, 16: 1, 17: 1, 18: 2, 19: 2,
                20: 3, 21: 3, 22: 0, 23: 0, 4: 4, 5: 4, 7: 5, 8: 5, 10: 6, 11: 6}


@dataclass
class BodyInfo:
    """Static data the renderer needs about a body model.

    Attributes:
        faces: [F, 3] int32 triangles.
        part: [V] int part-group index into :data:`PART_NAMES`.
        height: [V] float rest-pose height (y up, metres), for stripe textures.
        winding: +1 if (v1-v0)x(v2-v0) points outward, else -1 (used for back-face culling).
        num_shape: length of the shape vector (6 Anny phenotypes).
    """

    faces: np.ndarray
    part: np.ndarray
    height: np.ndarray
    winding: float
    num_shape: int


@lru_cache(maxsize=1)
def get_body() -> torch.nn.Module:
    """The app's default body model (Anny, baked). Cached: building it once per process is enough."""
    from engine.body import create_body_model

    return create_body_model("anny").eval()


def _segment_labels(verts: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Nearest SMPL bone segment for every vertex -> part group."""
    best = np.full(len(verts), np.inf)
    label = np.zeros(len(verts), np.int64)
    for child, parent in enumerate(SMPL_PARENTS):
        if parent < 0:
            continue
        a, b = joints[parent], joints[child]
        ab = b - a
        t = np.clip(((verts - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        d = np.linalg.norm(verts - (a + t[:, None] * ab), axis=1)
        closer = d < best
        best[closer] = d[closer]
        label[closer] = _CHILD_GROUP[child]
    return label


def _label_hair(part: np.ndarray, verts: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Split the head into face (front, stays ``head``/skin) and hair (back and top of the skull).

    Why: with one colour per part a body is left/right and front/back symmetric, so a person seen from behind
    looks like their mirror image from the front and the root orientation is ambiguous by 180 degrees (the first
    bundled model was more than 90 degrees off for a third of people). Real people show a face; this is the
    cheapest cue that carries over. Rest pose: y up, facing +z, joint 15 = head.
    """
    d = verts - joints[15]
    hair = (part == PART_NAMES.index("head")) & (((d[:, 2] < 0.0) & (d[:, 1] > -0.03)) | (d[:, 1] > 0.10))
    out = part.copy()
    out[hair] = HAIR
    return out


@lru_cache(maxsize=1)
def body_info() -> BodyInfo:
    """Part labels and face winding computed from the rest pose of :func:`get_body`."""
    body = get_body()
    with torch.no_grad():
        out = body(torch.zeros(1, 3), torch.zeros(1, 69), root_align=True)
    v = out.vertices[0].numpy().astype(np.float64)
    j = out.joints[0, :24].numpy().astype(np.float64)
    faces = np.asarray(body.faces, dtype=np.int32)
    tri = v[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    # outward test against the nearest bone axis would be exact; the body centroid is enough for the sign
    c = tri.mean(1) - v.mean(0)
    winding = 1.0 if float(np.sum(np.einsum("ij,ij->i", n, c) > 0)) >= 0.5 * len(faces) else -1.0
    return BodyInfo(faces=faces, part=_label_hair(_segment_labels(v, j), v, j), height=v[:, 1].astype(np.float32),
                    winding=winding, num_shape=int(getattr(body, "num_shape", 6)))


def pose_bodies(global_orient: np.ndarray, body_pose: np.ndarray, shape: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Root-aligned vertices [N, V, 3] and SMPL-24 joints [N, 24, 3] (float32) for GT parameters."""
    body = get_body()
    with torch.no_grad():
        out = body(torch.as_tensor(global_orient, dtype=torch.float32),
                   torch.as_tensor(body_pose, dtype=torch.float32),
                   shape=None if shape is None else torch.as_tensor(shape, dtype=torch.float32), root_align=True)
    return out.vertices.numpy().astype(np.float32), out.joints[:, :24].numpy().astype(np.float32)
