"""Metrics match hand-computed cases (incl. an empty union); the loss matches its 2-class form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from risbench_builder.crobim.losses import crobim_loss, dice_loss, weighted_ce
from risbench_builder.crobim.metrics import SegMetrics, summarize, table_row


def test_hand_computed_metrics() -> None:
    m = SegMetrics()
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True                                         # 4 px
    pred = np.zeros((4, 4), bool)
    pred[:2, :3] = True                                       # 6 px, I = 4, U = 6
    assert m.add(pred, gt, is_unique=True) == pytest.approx(4 / 6)
    assert m.add(gt, gt, is_unique=False) == 1.0              # I = U = 4
    assert m.add(np.zeros((4, 4)), np.zeros((4, 4)), is_unique=True) == 0.0   # empty union scores 0
    p2 = np.zeros((4, 4), bool)
    p2[0, 0] = True                                           # I = 1, U = 4 -> 0.25
    m.add(p2, gt)                                             # uniqueness unknown: only in "all"
    r = m.summary()
    a = r["all"]
    assert a["n"] == 4
    assert a["mIoU"] == pytest.approx((4 / 6 + 1 + 0 + 0.25) / 4)
    assert a["oIoU"] == pytest.approx((4 + 4 + 0 + 1) / (6 + 4 + 0 + 4))
    assert a["Pr@0.5"] == pytest.approx(2 / 4) and a["Pr@0.6"] == pytest.approx(2 / 4)
    assert a["Pr@0.7"] == pytest.approx(1 / 4) and a["Pr@0.9"] == pytest.approx(1 / 4)
    assert r["unique"]["n"] == 2 and r["unique"]["mIoU"] == pytest.approx((4 / 6) / 2)
    assert r["non_unique"]["n"] == 1 and r["non_unique"]["oIoU"] == 1.0


def test_thresholds_are_inclusive() -> None:
    r = summarize([1, 3, 9], [2, 5, 10])                      # IoU 0.5, 0.6, 0.9 exactly
    assert r["Pr@0.5"] == 1.0 and r["Pr@0.6"] == pytest.approx(2 / 3) and r["Pr@0.9"] == pytest.approx(1 / 3)
    assert table_row("test", r).startswith("| test | 100.00 | 66.67 | 33.33 | 33.33 | 33.33 |")


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        SegMetrics().add(np.zeros((2, 2)), np.zeros((3, 3)))


def test_loss_equals_weighted_two_class_ce_plus_dice() -> None:
    torch.manual_seed(0)
    z = torch.randn(2, 1, 5, 6)
    y = (torch.rand(2, 5, 6) > 0.7).long()
    two = torch.cat([torch.zeros_like(z), z], 1)             # softmax([0, z]) = sigmoid(z)
    ce = F.cross_entropy(two, y, weight=torch.tensor([0.9, 1.1]))
    torch.testing.assert_close(weighted_ce(z, y), ce)
    prob = two.softmax(1)
    onehot = F.one_hot(y, 2).permute(0, 3, 1, 2).float()
    inter = (prob * onehot).flatten(2).sum(-1)
    dice = 1 - (2 * inter + 1e-6) / (prob.flatten(2).sum(-1) + onehot.flatten(2).sum(-1) + 1e-6)
    torch.testing.assert_close(dice_loss(z, y, reduction="sum"), dice.sum())
    torch.testing.assert_close(dice_loss(z, y), dice.mean())
    torch.testing.assert_close(crobim_loss(z, y), 0.9 * ce + 0.1 * dice.mean())
    assert crobim_loss(torch.full((1, 1, 4, 4), 20.0), torch.ones(1, 4, 4)) < 1e-3
