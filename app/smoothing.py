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


def _alpha(dt: float, cutoff: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


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
        dt = t - self._t
        if dt <= 0:  # same timestamp (e.g. a repeated frame): keep the estimate, use a nominal step
            dt = 1.0 / 30.0
        a_d = _alpha(dt, self.cfg.d_cutoff)
        dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        cutoff = self.cfg.min_cutoff / self.strength + self.cfg.beta * np.abs(dx)
        tau = 1.0 / (2.0 * np.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        self._x = a * x + (1 - a) * self._x
        self._dx, self._t = dx, t
        return self._x.copy()


class _PersonFilters:
    def __init__(self, strength: float) -> None:
        self.f = {k: OneEuroFilter(v, strength) for k, v in DEFAULTS.items()}

    def set_strength(self, strength: float) -> None:
        for f in self.f.values():
            f.strength = strength


class PeopleSmoother:
    """Smooths a :class:`People` row by row, keyed by ``track_ids`` (rows with id < 0 pass through)."""

    def __init__(self, strength: float = 1.0) -> None:
        self.strength = strength
        self._filters: dict[int, _PersonFilters] = {}

    def set_strength(self, strength: float) -> None:
        self.strength = max(float(strength), 0.0)
        for pf in self._filters.values():
            pf.set_strength(self.strength)

    def drop(self, ids: list[int]) -> None:
        for i in ids:
            self._filters.pop(int(i), None)

    def reset(self) -> None:
        self._filters.clear()

    def __len__(self) -> int:
        return len(self._filters)

    def apply(self, people: People, t: float) -> People:
        if len(people) == 0 or self.strength <= 0:
            return people
        go = people.global_orient.astype(np.float64).copy()
        bp = people.body_pose.astype(np.float64).copy()
        betas = people.betas.astype(np.float64).copy()
        cam = people.cam.astype(np.float64).copy()
        mats = Rotation.from_rotvec(go).as_matrix().reshape(-1, 9)
        fresh = np.zeros(len(people), bool)
        for i, tid in enumerate(people.track_ids):
            if tid < 0:
                continue
            pf = self._filters.get(int(tid))
            if pf is None:  # first sight: initialise the filters, keep the row exactly as predicted
                pf = self._filters[int(tid)] = _PersonFilters(self.strength)
                for key, val in (("global_orient", mats[i]), ("body_pose", bp[i]), ("betas", betas[i]),
                                 ("cam", cam[i])):
                    pf.f[key](val, t)
                fresh[i] = True
                continue
            m = pf.f["global_orient"](mats[i], t).reshape(3, 3)
            go[i] = Rotation.from_matrix(m).as_rotvec()  # from_matrix projects onto SO(3)
            bp[i] = pf.f["body_pose"](bp[i], t)
            betas[i] = pf.f["betas"](betas[i], t)
            cam[i] = pf.f["cam"](cam[i], t)
        cam32 = cam.astype(np.float32)
        out = replace(people, global_orient=go.astype(np.float32), body_pose=bp.astype(np.float32),
                      betas=betas.astype(np.float32), cam=cam32, cam_trans=cam_to_translation(cam32))
        if fresh.any():  # rows seen for the first time stay bit-identical to the prediction
            for name in ("global_orient", "body_pose", "betas", "cam", "cam_trans"):
                getattr(out, name)[fresh] = getattr(people, name)[fresh]
        return out
