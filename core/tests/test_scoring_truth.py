"""Counterfactuals are scored against their own truth: a moved mask, a declared label, never a stale one."""

from __future__ import annotations

import torch

from c3_core.batch import Batch
from c3_core.evaluation.scoring import _counterfactual_truth


def _batch(mask: torch.Tensor | None = None, label: torch.Tensor | None = None) -> Batch:
    n = (mask if mask is not None else label).shape[0]  # type: ignore[union-attr]
    return Batch(torch.zeros(n, 1, 4, 4), tuple(f"e{i}" for i in range(n)), "toy", "display", ((1.0, 1.0),) * n,
                 label=label, mask=mask)


def test_a_moved_mask_is_the_truth_and_an_unknown_one_is_not_scored() -> None:
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 0, 0] = 1
    moved = torch.zeros(2, 1, 4, 4)
    moved[0, 0, 3, 3] = 1  # a spatial operator moved the lesion
    moved[1] = float("nan")  # an edit that could not say where the lesion is
    truth, unknown = _counterfactual_truth("segmentation", _batch(mask=mask), _batch(mask=moved), 2)
    assert truth.mask[0, 0, 3, 3] == 1 and truth.mask[0, 0, 0, 0] == 0
    assert unknown == [False, True] and bool(torch.isfinite(truth.mask).all())


def test_declared_labels_are_used_and_unknown_classes_are_not_scored() -> None:
    truth, unknown = _counterfactual_truth("multiclass", _batch(label=torch.tensor([2])), _batch(label=torch.tensor([0, -1])), 2)
    assert truth.label.tolist() == [0, 2] and unknown == [False, True]
    ml = torch.tensor([[1.0, 0.0]])
    cf = torch.tensor([[0.0, float("nan")], [float("nan"), float("nan")]])
    truth, unknown = _counterfactual_truth("multilabel", _batch(label=ml), _batch(label=cf), 2)
    assert truth.label[0, 0] == 0 and torch.isnan(truth.label[0, 1]) and unknown == [False, True]
