"""Neighbourhood agreement and flip rate on hand-made arrays."""

from __future__ import annotations

import pytest
import torch

from c3_core.metrics import (
    UndefinedMetricError,
    flip_rate,
    neighbourhood_agreement,
    per_case_agreement,
)

# 4 cases, K = 3 counterfactuals each (single-label class indices)
ORIG = torch.tensor([0, 1, 2, 1])
CF = torch.tensor(
    [
        [0, 0, 1],  # third flips but is rejected
        [1, 2, 1],  # second flips and is admitted
        [2, 2, 2],  # nothing admitted
        [0, 0, 1],  # first two flip, admitted; third agrees, admitted
    ]
)
ADM = torch.tensor(
    [
        [True, True, False],
        [True, True, True],
        [False, False, False],
        [True, True, True],
    ]
)


def test_single_label_hand_counts() -> None:
    # admitted: 2 + 3 + 0 + 3 = 8; agreeing: 2 + 2 + 0 + 1 = 5
    assert neighbourhood_agreement(ORIG, CF, ADM) == pytest.approx(5 / 8)
    # cases with an admitted cf: 0, 1, 3; of those with an admitted flip: 1, 3
    assert flip_rate(ORIG, CF, ADM) == pytest.approx(2 / 3)
    per = per_case_agreement(ORIG, CF, ADM)
    assert torch.allclose(per.agreement, torch.tensor([1.0, 2 / 3, 1.0, 1 / 3], dtype=torch.float64))
    assert per.empty.tolist() == [False, False, True, False]
    agreement, empty = per  # a NamedTuple unpacks
    assert not torch.isnan(agreement).any() and empty.dtype == torch.bool


def test_multilabel_requires_whole_positive_set() -> None:
    orig = torch.tensor([[True, False, True], [False, False, False]])
    cf = torch.tensor(
        [
            [[True, False, True], [True, True, True]],  # second adds a finding -> differs
            [[False, False, False], [False, False, False]],
        ]
    )
    adm = torch.tensor([[True, True], [True, False]])
    assert neighbourhood_agreement(orig, cf, adm) == pytest.approx(2 / 3)
    assert flip_rate(orig, cf, adm) == pytest.approx(1 / 2)
    assert per_case_agreement(orig, cf.int(), adm).agreement.tolist() == [0.5, 1.0]


def test_nothing_admitted_is_undefined_not_nan() -> None:
    none = torch.zeros_like(ADM)
    with pytest.raises(UndefinedMetricError, match="no counterfactual"):
        neighbourhood_agreement(ORIG, CF, none)
    with pytest.raises(UndefinedMetricError):
        flip_rate(ORIG, CF, none)
    per = per_case_agreement(ORIG, CF, none)
    assert per.agreement.tolist() == [1.0] * 4 and bool(per.empty.all())


def test_matches_loop_reference_on_random_input() -> None:
    g = torch.Generator().manual_seed(0)
    n, k = 40, 6
    orig = torch.randint(0, 3, (n,), generator=g)
    cf = torch.where(torch.rand(n, k, generator=g) < 0.8, orig[:, None], torch.randint(0, 3, (n, k), generator=g))
    adm = torch.rand(n, k, generator=g) < 0.6
    pairs = [(int(orig[i]) == int(cf[i, j])) for i in range(n) for j in range(k) if adm[i, j]]
    assert neighbourhood_agreement(orig, cf, adm) == pytest.approx(sum(pairs) / len(pairs))
    cases = [i for i in range(n) if adm[i].any()]
    flipped = [i for i in cases if any(adm[i, j] and cf[i, j] != orig[i] for j in range(k))]
    assert flip_rate(orig, cf, adm) == pytest.approx(len(flipped) / len(cases))


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="single-label"):
        flip_rate(ORIG, CF[:, :2], ADM)
    with pytest.raises(ValueError, match="multi-label"):
        flip_rate(torch.zeros(4, 2, dtype=torch.bool), CF, ADM)
