"""The evaluation's guarded loading: unreadable and non-finite cases become recorded failures."""

from __future__ import annotations

import torch

from c3_core.batch import Sample
from c3_core.evaluation.runner import _collate_guarded


def _sample(i: int, value: float = 0.5, shape: tuple[int, ...] = (1, 4, 4)) -> Sample:
    image = torch.full(shape, 0.5)
    image[0, 0, 0] = value
    return Sample(image, f"e{i}", "toy", "display", (1.0, 1.0), torch.tensor(0))


def test_non_finite_and_unreadable_cases_are_failures_in_index_order() -> None:
    items = [
        (0, _sample(0), None),
        (1, None, "OSError: cannot read"),
        (2, _sample(2, float("nan")), None),
        (3, _sample(3), None),
        (4, _sample(4, float("inf")), None),
    ]
    indices, batch, failed = _collate_guarded(items)
    assert indices == [0, 3] and batch is not None and batch.exam_ids == ("e0", "e3")
    assert [i for i, _ in failed] == [1, 2, 4]
    assert failed[1][1] == "ValueError: case 2: image has 1 NaN or Inf values"
    assert failed[2][1] == "ValueError: case 4: image has 1 NaN or Inf values"


def test_all_finite_batches_and_empty_batches_pass_through() -> None:
    indices, batch, failed = _collate_guarded([(i, _sample(i), None) for i in range(3)])
    assert indices == [0, 1, 2] and failed == [] and batch is not None and batch.size == 3
    assert _collate_guarded([(7, None, "OSError: gone")]) == ([], None, [(7, "OSError: gone")])
