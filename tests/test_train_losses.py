"""Loss terms of train.losses on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train.losses import (
    cap,
    contrastive_terms,
    focal_loss,
    gt_betas,
    mpjpe,
    pose_loss,
    prior_loss,
    sample_embeddings,
    shape_loss,
)
from train.poses import GMMPrior


def test_focal_loss_hand_example() -> None:
    pred = torch.tensor([[[[0.9, 0.1], [0.2, 0.5]]]])
    gt = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    pos = math.log(0.9) * 0.1 ** 2
    neg = math.log(0.9) * 0.1 ** 2 * 0.5 ** 4 + math.log(0.8) * 0.2 ** 2 + math.log(0.5) * 0.5 ** 2
    assert focal_loss(pred, gt).item() == pytest.approx(-(pos + neg), rel=1e-5)


def test_focal_loss_without_positives_is_negative_sum() -> None:
    pred = torch.tensor([[[[0.3, 0.0]]]])
    gt = torch.zeros(1, 1, 1, 2)
    expected = -(math.log(0.7) * 0.09 + math.log(1 - 1e-3) * 0.0)
    assert focal_loss(pred, gt).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_zero_when_aligned_and_opposite() -> None:
    e = torch.tensor([1.0, 0.0, 0.0, 0.0])
    zc = torch.stack([e, -e])[None]  # [1, 2, 4]
    zj = zc[:, :, None, :].expand(1, 2, 3, 4) * 2.5  # joints point where their centre points
    push, pull = contrastive_terms(zc, zj, torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2, 3, dtype=torch.bool))
    assert push.item() == pytest.approx(0.0, abs=1e-6)
    assert pull.item() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_identical_centres_and_orthogonal_joints() -> None:
    e1, e2 = torch.eye(2)
    zc = torch.stack([e1, e1])[None]
    zj = torch.stack([torch.stack([e2, e1]), torch.stack([e2, e2])])[None]  # person 0: one off, one on
    jm = torch.tensor([[[True, True], [True, False]]])
    push, pull = contrastive_terms(zc, zj, torch.ones(1, 2, dtype=torch.bool), jm)
    assert push.item() == pytest.approx(2.0)
    assert pull.item() == pytest.approx((0.5 + 1.0) / 2)


def test_contrastive_drops_people_without_visible_joints() -> None:
    zc = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    zj = zc[:, :, None, :]
    push, pull = contrastive_terms(zc, zj, torch.ones(1, 2, dtype=torch.bool), torch.tensor([[[True], [False]]]))
    assert push.item() == 0.0 and pull.item() == 0.0  # one person left: no pair, perfect pull


def test_sample_embeddings_reads_row_y_col_x() -> None:
    m = torch.zeros(1, 2, 4, 5)
    m[0, :, 1, 3] = torch.tensor([7.0, 8.0])  # row y = 1, column x = 3
    out = sample_embeddings(m, torch.tensor([[[3, 1], [1, 3]]]))
    assert out[0, 0].tolist() == [7.0, 8.0]
    assert out[0, 1].tolist() == [0.0, 0.0]  # the transposed position holds nothing


def test_pose_loss_zero_for_identical_and_positive_otherwise() -> None:
    gt = torch.zeros(2, 72)
    params = torch.zeros(2, 82)
    params[:, 3:9] = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])  # 6D identity, interleaved layout
    assert pose_loss(params, gt).item() == pytest.approx(0.0, abs=1e-6)
    params[:, 9] = math.pi / 2  # one body joint rotated 90 deg: ||R - I||_F = 2, mean over 21 joints
    assert pose_loss(params, gt).item() == pytest.approx(2.0 / 21, rel=1e-4)


def test_shape_loss_and_gt_betas() -> None:
    shape = torch.full((1, 6), 0.5)
    assert gt_betas(shape).abs().sum().item() == 0.0
    params = torch.zeros(1, 82)
    params[0, 72] = 2.0  # weight 1 -> norm 2 / 20
    assert shape_loss(params, shape).item() == pytest.approx(0.1)


def test_prior_zero_at_best_mean() -> None:
    d = 63
    gmm = GMMPrior(np.array([0.5, 0.5], np.float32), np.stack([np.zeros(d), np.ones(d)]).astype(np.float32),
                   np.stack([np.eye(d)] * 2).astype(np.float32), np.array([1.0, 2.0], np.float32))
    assert prior_loss(torch.zeros(1, d), gmm).item() == pytest.approx(0.0, abs=1e-6)
    assert prior_loss(torch.ones(1, d), gmm).item() == pytest.approx(1.0 / 100)
    assert prior_loss(torch.full((1, d), 3.0), gmm).item() > 0.1


def test_mpjpe_mask_and_cap() -> None:
    a = torch.zeros(1, 2, 3)
    b = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])
    assert mpjpe(a, b).item() == pytest.approx(3.0)
    assert mpjpe(a, b, torch.tensor([[True, False]])).item() == pytest.approx(5.0)
    v = torch.tensor(5000.0, requires_grad=True)
    assert cap(v).item() == pytest.approx(1000.0)
