"""Batched Procrustes must be right for every batch size (the ROMP-family version breaks for 2 and 3)."""

from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from train.losses import procrustes_align


def _similar(x: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    rot = torch.tensor(Rotation.random(n, random_state=seed).as_matrix(), dtype=torch.float64)
    s = torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.5
    t = torch.randn(n, 1, 3, generator=g, dtype=torch.float64)
    return s[:, None, None] * x @ rot.transpose(1, 2) + t


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_recovers_similarity_for_batch(n: int) -> None:
    x = torch.randn(n, 24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    y = _similar(x, n)
    assert torch.allclose(procrustes_align(x, y), y, atol=1e-9)


@pytest.mark.parametrize("n", [2, 3])
def test_batch_equals_per_sample(n: int) -> None:
    g = torch.Generator().manual_seed(10 + n)
    x = torch.randn(n, 24, 3, dtype=torch.float64, generator=g)
    y = torch.randn(n, 24, 3, dtype=torch.float64, generator=g)  # not exactly similar: a real fit
    batched = procrustes_align(x, y)
    single = torch.cat([procrustes_align(x[i:i + 1], y[i:i + 1]) for i in range(n)])
    assert torch.allclose(batched, single, atol=1e-10)


def test_reflection_is_not_used() -> None:
    x = torch.randn(1, 24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a mirror image: best proper rotation is worse
    out = procrustes_align(x, y)
    xc = out - out.mean(1, keepdim=True)
    k = (x - x.mean(1, keepdim=True)).transpose(1, 2) @ xc
    assert torch.det(k).item() > 0  # the applied map is a rotation (det > 0), not a reflection
