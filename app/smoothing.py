"""One-Euro smoothing of pose, shape and camera, one filter set per track ID.

The One-Euro filter (Casiez et al., CHI 2012) is a low-pass filter whose cutoff rises with speed: a still person
stops jittering, a fast one does not lag. simple-romp uses it with per-quantity settings, which we keep as the
defaults (``thetas (3.0, 0.7)``, ``cam (1.6, 0.7)``, ``betas (0.6, 0.7)``). The root rotation is filtered as a
rotation matrix and projected back to SO(3), because axis-angle wraps at pi and averaging across the wrap would
spin the body. Time comes from the media clock, so smoothing does not change with processing speed.

``strength`` divides every ``min_cutoff``: 1 = the defaults, 2 = twice as smooth, 0 = off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial.transform import Rotation

from engine.decode import cam_to_translation
from engine.types import People


@dataclass(frozen=True)
class OneEuroCfg:
    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0


DEFAULTS: dict[str, OneEuroCfg] = {
    "global_orient": OneEuroCfg(3.0, 0.7),
    "body_pose": OneEuroCfg(3.0, 0.7),
    "betas": OneEuroCfg(0.6, 0.7),
    "cam": OneEuroCfg(1.6, 0.7),
}


def _alpha(dt, cutoff):
    """Smoothing factor for a step ``dt`` (scalar or array) at ``cutoff`` Hz."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro_step(cfg: OneEuroCfg, strength: float, x: np.ndarray, prev_x: np.ndarray, prev_dx: np.ndarray,
                  dt: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """One filter step for any number of rows at once: (filtered x, derivative estimate).

    ``x``, ``prev_x`` and ``prev_dx`` are [..., D]; ``dt`` is a scalar or [..., 1], already positive. One function
    for the single filter and the per-track bank keeps both paths numerically identical.
    """
    a_d = _alpha(dt, cfg.d_cutoff)
    dx = a_d * (x - prev_x) / dt + (1 - a_d) * prev_dx
    cutoff = cfg.min_cutoff / strength + cfg.beta * np.abs(dx)
    tau = 1.0 / (2.0 * np.pi * cutoff)
    a = 1.0 / (1.0 + tau / dt)
    return a * x + (1 - a) * prev_x, dx


def _positive_dt(dt: np.ndarray) -> np.ndarray:
    """Same timestamp (e.g. a repeated frame): keep the estimate, use a nominal step."""
    return np.where(dt > 0, dt, 1.0 / 30.0)


class OneEuroFilter:
    """Vector One-Euro filter; the first sample passes through unchanged."""

    def __init__(self, cfg: OneEuroCfg, strength: float = 1.0) -> None:
        self.cfg = cfg
        self.strength = strength
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self.strength <= 0:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x
        dt = float(_positive_dt(np.float64(t - self._t)))
        self._x, self._dx = one_euro_step(self.cfg, self.strength, x, self._x, self._dx, dt)
        self._t = t
        return self._x.copy()


class _FilterBank:
    """The filter state of every track as rows of arrays, so a frame's people are filtered in one numpy step.

    A Python object per person and quantity cost ~150 us per person per frame (47 people: ~7 ms); rows in a
    shared array cost the same for 1 or 64 people. Rows of ended tracks are reused.
    """

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}
        self._free: list[int] = []
        self._cap = 0
        dims = {"global_orient": 9, "body_pose": 69, "betas": 10, "cam": 3}  # global_orient as a rotation matrix
        self.x: dict[str, np.ndarray] = {k: np.zeros((0, d)) for k, d in dims.items()}
        self.dx: dict[str, np.ndarray] = {k: np.zeros((0, d)) for k, d in dims.items()}
        self.t = np.zeros(0)

    def _grow(self, need: int) -> None:
        cap = max(2 * self._cap, need, 16)
        for store in (self.x, self.dx):
            for k, a in store.items():
                b = np.zeros((cap, a.shape[1]))
                b[: self._cap] = a
                store[k] = b
        t = np.zeros(cap)
        t[: self._cap] = self.t
        self.t = t
        self._free.extend(range(cap - 1, self._cap - 1, -1))
        self._cap = cap

    def add(self, tid: int, values: dict[str, np.ndarray], t: float) -> None:
        if not self._free:
            self._grow(self._cap + 1)
        r = self.rows[tid] = self._free.pop()
        for k, v in values.items():
            self.x[k][r], self.dx[k][r] = v, 0.0
        self.t[r] = t

    def drop(self, tid: int) -> None:
        r = self.rows.pop(tid, None)
        if r is not None:
            self._free.append(r)

    def clear(self) -> None:
        self.rows.clear()
        self._free = list(range(self._cap - 1, -1, -1))

    def step(self, rows: np.ndarray, values: dict[str, np.ndarray], t: float, strength: float) -> dict[str, np.ndarray]:
        dt = _positive_dt(t - self.t[rows])[:, None]
        out = {}
        for k, v in values.items():
            x, dx = one_euro_step(DEFAULTS[k], strength, v, self.x[k][rows], self.dx[k][rows], dt)
            self.x[k][rows], self.dx[k][rows] = x, dx
            out[k] = x
        self.t[rows] = t
        return out


class PeopleSmoother:
    """Smooths a :class:`People` row by row, keyed by ``track_ids`` (rows with id < 0 pass through)."""

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength
        self._bank = _FilterBank()

    def set_strength(self, strength: float) -> None:
        self.strength = max(float(strength), 0.0)

    def drop(self, ids: list[int]) -> None:
        for i in ids:
            self._bank.drop(int(i))

    def reset(self) -> None:
        self._bank.clear()

    def __len__(self) -> int:
        return len(self._bank.rows)

    def apply(self, people: People, t: float) -> People:
        if len(people) == 0 or self.strength <= 0:
            return people
        go = people.global_orient.astype(np.float64)
        values = {"global_orient": Rotation.from_rotvec(go).as_matrix().reshape(-1, 9),
                  "body_pose": people.body_pose.astype(np.float64), "betas": people.betas.astype(np.float64),
                  "cam": people.cam.astype(np.float64)}
        bank = self._bank
        ids = [int(i) for i in people.track_ids]
        known = np.array([i >= 0 and i in bank.rows for i in ids], bool)
        fresh = np.zeros(len(ids), bool)
        for j, tid in enumerate(ids):  # first sight: initialise, keep the row exactly as predicted
            if tid >= 0 and not known[j] and tid not in bank.rows:
                bank.add(tid, {k: v[j] for k, v in values.items()}, t)
                fresh[j] = True
        res = {"global_orient": go.copy(), **{k: values[k].copy() for k in ("body_pose", "betas", "cam")}}
        sel = np.flatnonzero(known)
        if len(sel):
            out = bank.step(np.array([bank.rows[ids[j]] for j in sel]), {k: v[sel] for k, v in values.items()}, t,
                            self.strength)
            mats = out["global_orient"].reshape(-1, 3, 3)
            # a blend of two rotations far apart (a flip between frames) can leave no rotation to project onto:
            # take the measurement for such rows instead of failing the frame
            bad = np.linalg.det(mats) <= 1e-6
            mats[bad] = values["global_orient"][sel[bad]].reshape(-1, 3, 3)
            # from_matrix projects the filtered matrix back onto SO(3)
            res["global_orient"][sel] = Rotation.from_matrix(mats).as_rotvec()
            for k in ("body_pose", "betas", "cam"):
                res[k][sel] = out[k]
        cam32 = res["cam"].astype(np.float32)
        smoothed = replace(people, global_orient=res["global_orient"].astype(np.float32),
                           body_pose=res["body_pose"].astype(np.float32), betas=res["betas"].astype(np.float32),
                           cam=cam32, cam_trans=cam_to_translation(cam32))
        if fresh.any():  # rows seen for the first time stay bit-identical to the prediction
            for name in ("global_orient", "body_pose", "betas", "cam", "cam_trans"):
                getattr(smoothed, name)[fresh] = getattr(people, name)[fresh]
        return smoothed
