"""A structurally valid synthetic SMPL model, so the SMPL loader is tested without licensed data.

The mesh is a UV sphere with 84 rings x 82 segments + 2 poles: exactly SMPL's 6,890 vertices and 13,776 triangles.
It is stretched into a rough T-pose body around SMPL-like joint positions; ``J_regressor`` rows are convex
combinations of the 8 vertices nearest each joint, skinning weights a top-4 softmax over joint distance, and the
shape/pose blend shapes small random values. Writers produce a plain .npz, an official-style .pkl holding
chumpy-like objects (chumpy itself is not needed to read it back only if our stub mapping works) and malicious
pickles whose payload would create a marker file.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse

NUM_RINGS, NUM_SEGMENTS = 84, 82
SMPL_KINTREE_PARENTS = [0xFFFFFFFF, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# Approximate SMPL-neutral T-pose joints (metres, y up, z forward, subject's left = +x).
SMPL_LIKE_JOINTS = np.array([
    [0.00, -0.22, 0.03], [0.06, -0.31, 0.02], [-0.06, -0.31, 0.02], [0.00, -0.11, 0.00],
    [0.10, -0.69, 0.02], [-0.10, -0.69, 0.02], [0.00, 0.03, 0.03], [0.09, -1.09, -0.02],
    [-0.09, -1.09, -0.02], [0.00, 0.08, 0.03], [0.11, -1.15, 0.10], [-0.11, -1.15, 0.10],
    [0.00, 0.29, 0.01], [0.08, 0.19, 0.01], [-0.08, 0.19, 0.01], [0.00, 0.37, 0.05],
    [0.17, 0.23, -0.01], [-0.17, 0.23, -0.01], [0.43, 0.21, -0.03], [-0.43, 0.21, -0.03],
    [0.68, 0.22, -0.03], [-0.68, 0.22, -0.03], [0.77, 0.21, -0.04], [-0.77, 0.21, -0.04],
])


def _sphere() -> tuple[np.ndarray, np.ndarray]:
    """Unit UV sphere: [6890, 3] vertices (north pole, rings, south pole) and [13776, 3] triangles."""
    theta = np.linspace(0, np.pi, NUM_RINGS + 2)[1:-1]
    phi = np.linspace(0, 2 * np.pi, NUM_SEGMENTS, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    rings = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], axis=-1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, 1.0, 0.0]], rings, [[0.0, -1.0, 0.0]]])
    south = len(verts) - 1
    faces = []
    for s in range(NUM_SEGMENTS):
        s2 = (s + 1) % NUM_SEGMENTS
        faces.append([0, 1 + s2, 1 + s])
        last = 1 + (NUM_RINGS - 1) * NUM_SEGMENTS
        faces.append([south, last + s, last + s2])
    for r in range(NUM_RINGS - 1):
        a, b = 1 + r * NUM_SEGMENTS, 1 + (r + 1) * NUM_SEGMENTS
        for s in range(NUM_SEGMENTS):
            s2 = (s + 1) % NUM_SEGMENTS
            faces.append([a + s, a + s2, b + s])
            faces.append([a + s2, b + s2, b + s])
    return verts, np.asarray(faces, dtype=np.uint32)


def make_synthetic_smpl(seed: int = 0, num_betas: int = 10) -> dict[str, np.ndarray]:
    """The synthetic model as plain arrays (``J_regressor`` dense [24, 6890]), SMPL key names and shapes."""
    rng = np.random.default_rng(seed)
    unit, faces = _sphere()
    # Pull each sphere point toward the nearest joint of the stick figure: a lumpy, body-sized closed surface.
    stretched = unit * np.array([0.8, 0.8, 0.12])
    nearest = np.argmin(((stretched[:, None] - SMPL_LIKE_JOINTS[None]) ** 2).sum(-1), axis=1)
    v_template = 0.5 * stretched + 0.5 * SMPL_LIKE_JOINTS[nearest] + 0.03 * unit
    dist = np.sqrt(((v_template[:, None] - SMPL_LIKE_JOINTS[None]) ** 2).sum(-1))  # [V, 24]
    j_regressor = np.zeros((24, len(v_template)))
    for j in range(24):
        idx = np.argsort(dist[:, j])[:8]
        w = rng.uniform(0.5, 1.5, size=8)
        j_regressor[j, idx] = w / w.sum()
    logits = -dist / 0.05
    top = np.argsort(dist, axis=1)[:, :4]
    weights = np.zeros_like(dist)
    top_logits = np.take_along_axis(logits, top, axis=1)
    top_w = np.exp(top_logits - top_logits.max(1, keepdims=True))
    np.put_along_axis(weights, top, top_w / top_w.sum(1, keepdims=True), axis=1)
    return {
        "v_template": v_template,
        "shapedirs": (rng.standard_normal((len(v_template), 3, num_betas)) * 0.005).astype(np.float32),
        "posedirs": (rng.standard_normal((len(v_template), 3, 207)) * 0.001).astype(np.float32),
        "J_regressor": j_regressor,
        "weights": weights,
        "kintree_table": np.array([SMPL_KINTREE_PARENTS, list(range(24))], dtype=np.uint32),
        "f": faces,
    }


def write_npz(path: Path, model: dict[str, np.ndarray]) -> Path:
    np.savez(path, **model)
    return path


class Ch:
    """Looks like ``chumpy.ch.Ch`` to pickle: unpickling it would import chumpy unless the loader stubs it."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.dterms = ("x",)


Ch.__module__ = "chumpy.ch"
Ch.__qualname__ = Ch.__name__ = "Ch"


@contextlib.contextmanager
def _fake_chumpy_modules() -> Iterator[None]:
    """Register ``chumpy.ch`` only while pickling (pickle checks that classes are importable by name)."""
    pkg, sub = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    sub.Ch = Ch
    pkg.ch = sub
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": pkg, "chumpy.ch": sub})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_chumpy_pkl(path: Path, model: dict[str, np.ndarray]) -> Path:
    """Official-style pickle (protocol 2): chumpy-like arrays, a csc ``J_regressor`` and keys smplx ignores."""
    data = {
        "v_template": Ch(model["v_template"]),
        "shapedirs": Ch(model["shapedirs"]),
        "posedirs": model["posedirs"],
        "J_regressor": scipy.sparse.csc_matrix(model["J_regressor"]),
        "weights": Ch(model["weights"]),
        "kintree_table": model["kintree_table"],
        "f": model["f"],
        "J": model["J_regressor"] @ model["v_template"],
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }
    with _fake_chumpy_modules(), open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return path


class _SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch '{self.marker}'",)


class _EvalPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def write_malicious_pkl(path: Path, marker: Path, kind: str = "os.system") -> Path:
    """A pickle that would create ``marker`` when loaded with plain ``pickle.load``."""
    payload = _SystemPayload(marker) if kind == "os.system" else _EvalPayload(marker)
    with open(path, "wb") as f:
        pickle.dump({"v_template": payload}, f, protocol=2)
    return path
