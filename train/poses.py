"""Plausible SMPL body poses (standing, walking, arms raised, bending, crouching, sitting) with joint limits.

Poses are built as intrinsic XYZ Euler angles per joint (degrees, SMPL rest axes: x left, y up, z forward), then
clipped to per-joint limits and converted to axis-angle. Why Euler boxes: they make the limits readable
("knee flexes 0..150 deg about x") and a clip keeps every sample legal. Signs, derived from the rest pose:
hip flexion (thigh forward) = negative x, knee flexion = positive x, spine bending forward = positive x,
left arm down = negative z at the left shoulder (right arm: positive z), left arm forward = negative y.

Also fits the pose prior: an 8-component full-covariance GMM on the 63-d body pose (joints 1..21) of this sampler,
used like SMPLify's MaxMixture prior (the official SMPL prior file is not available here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

CATEGORIES = ("standing", "walking", "arms_raised", "bending", "crouching", "sitting")
L, R = 1, -1

# per joint (1..23): (xmin, xmax, ymin, ymax, zmin, zmax) in degrees
LIMITS = np.zeros((24, 6), np.float32)
for _j, _lim in {
    1: (-125, 35, -40, 40, -20, 50), 2: (-125, 35, -40, 40, -50, 20),
    3: (-25, 50, -30, 30, -25, 25), 6: (-20, 45, -30, 30, -20, 20), 9: (-20, 45, -30, 30, -20, 20),
    4: (0, 150, -5, 5, -5, 5), 5: (0, 150, -5, 5, -5, 5),
    7: (-30, 45, -15, 15, -15, 15), 8: (-30, 45, -15, 15, -15, 15),
    10: (-20, 20, -5, 5, -5, 5), 11: (-20, 20, -5, 5, -5, 5),
    12: (-30, 40, -40, 40, -20, 20), 15: (-25, 35, -45, 45, -20, 20),
    13: (-10, 10, -15, 15, -15, 25), 14: (-10, 10, -15, 15, -25, 15),
    16: (-60, 60, -110, 45, -95, 85), 17: (-60, 60, -45, 110, -85, 95),
    18: (-40, 40, -145, 0, -5, 5), 19: (-40, 40, 0, 145, -5, 5),
    20: (-30, 30, -30, 30, -40, 40), 21: (-30, 30, -30, 30, -40, 40),
}.items():
    LIMITS[_j] = _lim


@dataclass
class PoseSample:
    """A body pose: ``body_pose`` [69] axis-angle of joints 1..23 (hands zero) and its category name."""

    body_pose: np.ndarray
    category: str


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    return float(rng.uniform(a, b))


def _arms(e: np.ndarray, rng: np.random.Generator, style: str) -> None:
    """Set both arms (Euler degrees in e[j] = (x, y, z)) for an arm style."""
    for j, side in ((16, L), (17, R)):
        el = 18 if side == L else 19
        if style == "down":
            e[j, 2] = -side * _u(rng, 60, 88)
            e[j, 1] = side * _u(rng, -25, 15)
            e[el, 1] = -side * _u(rng, 0, 40)
        elif style == "raised":
            if rng.random() < 0.75 or j == 16:
                e[j, 2] = side * _u(rng, 10, 80)
                e[el, 1] = -side * _u(rng, 0, 100)
                e[j, 1] = side * _u(rng, -40, 10)
            else:
                e[j, 2] = -side * _u(rng, 60, 85)
        elif style == "forward":
            e[j, 2] = -side * _u(rng, 20, 70)
            e[j, 1] = -side * _u(rng, 30, 90)
            e[el, 1] = -side * _u(rng, 0, 110)
        e[j, 0] = _u(rng, -30, 30)


def _category_pose(cat: str, rng: np.random.Generator, phase: float | None) -> np.ndarray:
    e = np.zeros((24, 3), np.float64)
    arm_style = rng.choice(["down", "down", "forward", "raised"])
    if cat == "standing":
        e[1, 2], e[2, 2] = _u(rng, -3, 12), -_u(rng, -3, 12)
        e[1, 0], e[2, 0] = _u(rng, -15, 5), _u(rng, -15, 5)
        e[4, 0], e[5, 0] = _u(rng, 0, 15), _u(rng, 0, 15)
    elif cat == "walking":
        ph = rng.uniform(0, 2 * np.pi) if phase is None else phase
        amp = _u(rng, 18, 35)
        s = np.sin(ph)
        e[1, 0], e[2, 0] = -amp * s, amp * s
        e[4, 0] = 8 + 50 * max(0.0, np.sin(ph + 2.2))
        e[5, 0] = 8 + 50 * max(0.0, np.sin(ph + 2.2 + np.pi))
        e[7, 0], e[8, 0] = 10 * np.cos(ph), -10 * np.cos(ph)
        _arms(e, rng, "down")
        e[16, 1], e[17, 1] = 0.8 * amp * s, 0.8 * amp * s
        e[18, 1], e[19, 1] = -_u(rng, 10, 35), _u(rng, 10, 35)
        e[3, 0] = _u(rng, 0, 8)
        arm_style = "keep"
    elif cat == "arms_raised":
        arm_style = "raised"
        e[1, 0], e[2, 0] = _u(rng, -10, 5), _u(rng, -10, 5)
    elif cat == "bending":
        for j in (3, 6, 9):
            e[j, 0] = _u(rng, 8, 30)
        e[1, 0] = e[2, 0] = -_u(rng, 10, 60)
        e[4, 0], e[5, 0] = _u(rng, 0, 30), _u(rng, 0, 30)
        arm_style = rng.choice(["down", "forward"])
    elif cat == "crouching":
        e[1, 0], e[2, 0] = -_u(rng, 80, 120), -_u(rng, 80, 120)
        e[4, 0], e[5, 0] = _u(rng, 95, 145), _u(rng, 95, 145)
        e[7, 0], e[8, 0] = _u(rng, 10, 40), _u(rng, 10, 40)
        e[1, 2], e[2, 2] = _u(rng, 0, 25), -_u(rng, 0, 25)
        for j in (3, 6):
            e[j, 0] = _u(rng, 0, 25)
        arm_style = rng.choice(["down", "forward", "forward"])
    elif cat == "sitting":
        e[1, 0], e[2, 0] = -_u(rng, 70, 100), -_u(rng, 70, 100)
        e[4, 0], e[5, 0] = _u(rng, 60, 110), _u(rng, 60, 110)
        e[1, 2], e[2, 2] = _u(rng, 0, 15), -_u(rng, 0, 15)
    if arm_style != "keep":
        _arms(e, rng, str(arm_style))
    # head / neck / spine variety for everyone
    e[12] += rng.normal(0, [8, 12, 5])
    e[15] += rng.normal(0, [8, 15, 5])
    e[9] += rng.normal(0, [4, 6, 4])
    return e


def sample_euler(rng: np.random.Generator, category: str | None = None, phase: float | None = None,
                 noise_deg: float = 6.0) -> tuple[np.ndarray, str]:
    """Per-joint XYZ Euler angles [24, 3] (degrees, row 0 unused): category template + Gaussian jitter, clipped
    to :data:`LIMITS`; and the category."""
    cat = category or str(rng.choice(CATEGORIES, p=[0.2, 0.25, 0.15, 0.15, 0.12, 0.13]))
    e = _category_pose(cat, rng, phase)
    e[1:22] += rng.normal(0, noise_deg, (21, 3))
    e[1:] = np.clip(e[1:], LIMITS[1:, 0::2], LIMITS[1:, 1::2])
    e[22:] = 0.0
    return e, cat


def sample_pose(rng: np.random.Generator, category: str | None = None, phase: float | None = None,
                noise_deg: float = 6.0) -> PoseSample:
    """One pose within the joint limits, as SMPL axis-angle."""
    e, cat = sample_euler(rng, category, phase, noise_deg)
    rv = Rotation.from_euler("XYZ", e[1:], degrees=True).as_rotvec().astype(np.float32)
    return PoseSample(rv.reshape(-1), cat)


# ---------------------------------------------------------------- pose prior (GMM on the sampler)

@dataclass
class GMMPrior:
    """Gaussian mixture over 63-d body poses: weights [K], means [K, 63], precisions [K, 63, 63], log_norm [K]."""

    weights: np.ndarray
    means: np.ndarray
    precisions: np.ndarray
    log_norm: np.ndarray


def fit_gmm(x: np.ndarray, k: int = 8, iters: int = 25, seed: int = 0, reg: float = 1e-3) -> GMMPrior:
    """Plain EM with full covariances (k-means++-style seeding). ``log_norm`` = -log w + 0.5 log det(cov), the
    per-component constant of the SMPLify MaxMixture negative log-likelihood."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    means = x[rng.choice(n, k, replace=False)].copy()
    covs = np.stack([np.cov(x.T) + reg * np.eye(d)] * k)
    weights = np.full(k, 1.0 / k)
    for _ in range(iters):
        logp = np.empty((n, k))
        for c in range(k):
            chol = np.linalg.cholesky(covs[c])
            z = np.linalg.solve(chol, (x - means[c]).T)
            logp[:, c] = np.log(weights[c]) - 0.5 * (z * z).sum(0) - np.log(np.diag(chol)).sum()
        logp -= logp.max(1, keepdims=True)
        resp = np.exp(logp)
        resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0) + 1e-9
        weights = nk / n
        means = (resp.T @ x) / nk[:, None]
        for c in range(k):
            diff = x - means[c]
            covs[c] = (resp[:, c, None] * diff).T @ diff / nk[c] + reg * np.eye(d)
    prec = np.linalg.inv(covs)
    log_norm = -np.log(weights) + 0.5 * np.linalg.slogdet(covs)[1]
    return GMMPrior(weights.astype(np.float32), means.astype(np.float32), prec.astype(np.float32),
                    log_norm.astype(np.float32))


def load_or_fit_prior(cache: Path = Path("runs/pose_prior_gmm.npz"), n: int = 20000) -> GMMPrior:
    """The GMM prior, fitted once on ``n`` sampler poses (seed 12345) and cached (git-ignored runs/)."""
    if cache.is_file():
        z = np.load(cache)
        return GMMPrior(z["weights"], z["means"], z["precisions"], z["log_norm"])
    rng = np.random.default_rng(12345)
    x = np.stack([sample_pose(rng).body_pose[:63] for _ in range(n)]).astype(np.float64)
    gmm = fit_gmm(x)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, weights=gmm.weights, means=gmm.means, precisions=gmm.precisions, log_norm=gmm.log_norm)
    return gmm
