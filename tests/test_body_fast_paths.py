"""The body model's per-frame shortcuts give the same numbers as the plain computation, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.body import SMPL_PARENTS, create_body_model, lbs
from engine.body.anny import AnnyBody


@pytest.fixture()
def body() -> AnnyBody:
    torch.set_num_threads(1)
    model = create_body_model("anny")
    assert isinstance(model, AnnyBody)
    return model


def _pose(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    pose = (torch.rand(batch, 72, generator=gen) * 2 - 1) * 0.7
    return pose[:, :3], pose[:, 3:]


def test_cached_shape_equals_the_uncached_computation(body: AnnyBody, monkeypatch) -> None:
    go, bp = _pose(5, seed=1)
    shape = torch.tensor([[0.2, 0.9, 0.4, 0.7, 0.3, 0.6]]).expand(5, -1)
    calls = []
    real = body._shape_rest
    monkeypatch.setattr(body, "_shape_rest", lambda s: calls.append(len(s)) or real(s))
    with torch.inference_mode():
        first = body(go, bp, shape)
        again = body(go, bp, shape)
        default = body(go, bp)
    assert calls == [1, 1]  # one blend for the given shape, one for the default; the repeat came from the cache
    # a shape that needs gradients skips the cache (the same computation, made afresh): same numbers
    plain = body(go, bp, shape.clone().requires_grad_(True))
    assert calls == [1, 1, 1]
    for a, b in ((first, again), (first, plain)):
        assert torch.equal(a.vertices, b.vertices.detach()) and torch.equal(a.joints, b.joints.detach())
    assert not torch.equal(first.vertices, default.vertices)  # the shape is really part of the key
    with torch.inference_mode():
        for cached, fresh in zip(body._shaped(shape[:1]), real(shape[:1])):
            assert torch.equal(cached, fresh)


def test_cache_is_dropped_when_the_module_moves(body: AnnyBody) -> None:
    go, bp = _pose(2, seed=2)
    with torch.inference_mode():
        body(go, bp)
    assert body.__dict__.get("_shape_cache")
    body.to(torch.float32)  # any .to() goes through _apply
    assert not body.__dict__.get("_shape_cache")


def test_gradients_work_after_inference_mode_use(body: AnnyBody) -> None:
    """The render thread poses bodies in inference mode; tensors cached there must not leak into autograd."""
    go, bp = _pose(3, seed=3)
    with torch.inference_mode():
        body(go, bp)
    g = go.clone().requires_grad_(True)
    body(g, bp).vertices.square().sum().backward()
    fresh = create_body_model("anny")
    h = go.clone().requires_grad_(True)
    fresh(h, bp).vertices.square().sum().backward()
    assert g.grad is not None and torch.allclose(g.grad, h.grad, rtol=1e-5, atol=1e-6)


def _reference_world(local: np.ndarray, parents: tuple[int, ...]) -> np.ndarray:
    world = np.zeros_like(local)
    for j, p in enumerate(parents):
        world[:, j] = local[:, j] if p < 0 else world[:, p] @ local[:, j]
    return world


# SMPL's levels are runs of consecutive joints (the in-place path); the second tree's first level, joints 1 and
# 3, is not (the general path)
@pytest.mark.parametrize("parents", [SMPL_PARENTS, (-1, 0, 1, 0, 3, 2)])
def test_world_rotations_fast_path_matches_the_graph_path(parents) -> None:
    local = lbs.batch_rodrigues(torch.rand(4 * len(parents), 3, generator=torch.Generator().manual_seed(4)) - 0.5)
    local = local.reshape(4, len(parents), 3, 3)
    levels = lbs.chain_levels(parents)
    fast = lbs.world_rotations(local, levels)  # no gradients needed: the in-place path where levels allow it
    graph = lbs.world_rotations(local.clone().requires_grad_(True), levels)
    assert torch.equal(fast, graph.detach())
    np.testing.assert_allclose(fast.numpy(), _reference_world(local.numpy().astype(np.float64), parents), atol=1e-5)
