"""Per-track colours: a fixed, well-separated palette indexed by track ID, so a person keeps their colour."""

from __future__ import annotations

import numpy as np

# BGR, pastel-ish so that shading stays visible over video (tab10-like order).
PALETTE_BGR: tuple[tuple[int, int, int], ...] = (
    (230, 160, 70), (60, 150, 250), (90, 200, 90), (80, 80, 230), (200, 120, 190),
    (120, 140, 160), (200, 150, 240), (150, 150, 150), (60, 210, 210), (220, 210, 90),
)


def track_color(track_id: int) -> tuple[int, int, int]:
    """BGR colour of a track; untracked rows (id < 0) are grey."""
    if track_id < 0:
        return (180, 180, 180)
    return PALETTE_BGR[int(track_id) % len(PALETTE_BGR)]


def colors_for(track_ids: np.ndarray) -> np.ndarray:
    """[N] ids -> [N, 3] float32 BGR in 0..255."""
    return np.array([track_color(int(i)) for i in track_ids], np.float32).reshape(-1, 3)
