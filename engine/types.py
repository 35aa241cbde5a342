"""Typed per-frame results: the letterbox geometry and the decoded people.

Arrays are numpy (host side), one row per person, so zero people is a normal, empty case.
Names follow simple-romp's output keys so that existing user scripts keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How a frame was padded to a centred square and resized to the network input.

    ``input = (orig + (pad_left, pad_top)) * input_size / padded_side``.
    """

    orig_h: int
    orig_w: int
    padded_side: int
    pad_top: int
    pad_left: int
    input_size: int

    @classmethod
    def for_frame(cls, h: int, w: int, input_size: int) -> Letterbox:
        side = max(h, w)
        # padding split equally, the odd pixel going to bottom/right (as the official loaders do)
        return cls(h, w, side, (side - h) // 2, (side - w) // 2, input_size)

    @property
    def scale(self) -> float:
        """Network-input pixels per original pixel."""
        return self.input_size / self.padded_side

    def norm_to_original(self, pts: np.ndarray) -> np.ndarray:
        """Map normalised input coordinates in [-1, 1] (x right, y down) to original-frame pixels."""
        out = (pts[..., :2] + 1.0) * (self.padded_side / 2.0)
        out[..., 0] -= self.pad_left
        out[..., 1] -= self.pad_top
        return out

    def original_to_norm(self, pts: np.ndarray) -> np.ndarray:
        """Original-frame pixels -> normalised input coordinates in [-1, 1] (inverse of :meth:`norm_to_original`)."""
        out = np.asarray(pts, dtype=np.float64)[..., :2].copy()
        out[..., 0] += self.pad_left
        out[..., 1] += self.pad_top
        return out * (2.0 / self.padded_side) - 1.0

    def input_to_original(self, pts: np.ndarray) -> np.ndarray:
        """Map network-input pixel coordinates to original-frame pixels."""
        out = pts[..., :2] / self.scale
        out[..., 0] -= self.pad_left
        out[..., 1] -= self.pad_top
        return out


def _rows(n: int, *shape: int, dtype=np.float32) -> np.ndarray:
    return np.zeros((n, *shape), dtype=dtype)


@dataclass
class People:
    """N people decoded from one frame (parallel arrays, float32 unless noted).

    Attributes:
        center_preds: [N, 2] body-centre (x, y) in pixels of the network input (stride * grid cell).
        center_confs: [N] raw centre-map value at the peak.
        cam: [N, 3] weak-perspective camera (s, tx, ty) over the padded square, normalised to [-1, 1].
        global_orient: [N, 3] root rotation, axis-angle.
        body_pose: [N, 69] axis-angle of SMPL joints 1..23 (joints 22, 23 = hands are zero).
        betas: [N, 10] SMPL shape coefficients as predicted.
        cam_trans: [N, 3] camera-space translation 2 * (tx/s, ty/s, 1/s).
        track_ids: [N] int64 stable identity across frames, -1 before tracking.
    """

    center_preds: np.ndarray = field(default_factory=lambda: _rows(0, 2))
    center_confs: np.ndarray = field(default_factory=lambda: _rows(0))
    cam: np.ndarray = field(default_factory=lambda: _rows(0, 3))
    global_orient: np.ndarray = field(default_factory=lambda: _rows(0, 3))
    body_pose: np.ndarray = field(default_factory=lambda: _rows(0, 69))
    betas: np.ndarray = field(default_factory=lambda: _rows(0, 10))
    cam_trans: np.ndarray = field(default_factory=lambda: _rows(0, 3))
    track_ids: np.ndarray = field(default_factory=lambda: _rows(0, dtype=np.int64))

    def __post_init__(self) -> None:
        n = len(self.center_confs)
        expected = {"center_preds": (2,), "cam": (3,), "global_orient": (3,), "body_pose": (69,), "betas": (10,),
                    "cam_trans": (3,), "track_ids": ()}
        for name, tail in expected.items():
            arr = getattr(self, name)
            if arr.shape != (n, *tail):
                raise ValueError(f"People.{name}: expected shape {(n, *tail)}, got {arr.shape}")

    def __len__(self) -> int:
        return len(self.center_confs)

    @classmethod
    def empty(cls) -> People:
        return cls()

    @property
    def smpl_thetas(self) -> np.ndarray:
        """[N, 72] full SMPL pose: root axis-angle then 23 body joints."""
        return np.concatenate([self.global_orient, self.body_pose], axis=1)

    def select(self, idx: np.ndarray | slice | list[int]) -> People:
        return People(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def as_dict(self) -> dict[str, np.ndarray]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["smpl_thetas"] = self.smpl_thetas
        return out


@dataclass
class Meshes:
    """Posed bodies for N people (root-aligned body coordinates, metres, SMPL axes as the camera sees them).

    Attributes:
        vertices: [N, V, 3] float32.
        joints: [N, J, 3] float32.
        faces: [F, 3] int32 triangle indices shared by all people.
        pj2d_org: [N, J, 2] joints projected with each person's camera into original-frame pixels.
    """

    vertices: np.ndarray
    joints: np.ndarray
    faces: np.ndarray
    pj2d_org: np.ndarray

    def __len__(self) -> int:
        return len(self.vertices)
