"""Datasets of the experiment: a split held in memory once, and the same split under the held-out shift."""

from __future__ import annotations

from dataclasses import replace

from torch.utils.data import Dataset

from c3_core.batch import Sample, collate
from c3_core.neighbourhood import Neighbourhood


class InMemory(Dataset):
    """The first ``n`` cases of ``base`` read once (procedural cohorts render each case only once
    for all the runs of an experiment)."""

    def __init__(self, base: Dataset, n: int | None = None) -> None:
        total = len(base)  # type: ignore[arg-type]
        count = total if n is None else min(int(n), total)
        if count < 1:
            raise ValueError("the split has no case")
        self.samples: list[Sample] = [base[i] for i in range(count)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


class Shifted(Dataset):
    """``base`` with a fixed shift applied to every case (computed once, on the CPU).

    ``shift`` is a K = 1 neighbourhood (see :func:`c3_core.experiments.shifts.shift_spec`): a
    case's shifted image depends only on (shift seed, exam id). Exam ids, labels and spacing are
    kept, so the clean and shifted evaluations pair case by case. ``rejections`` counts cases
    whose operators flagged the shifted image (e.g. a lesion-visibility check); they are kept,
    since a real scanner would have produced them too.
    """

    def __init__(self, base: Dataset, shift: Neighbourhood) -> None:
        if shift.k != 1:
            raise ValueError(f"the held-out shift must draw one image per case, not K = {shift.k}")
        self.shift = shift
        self.samples: list[Sample] = []
        self.rejections: list[tuple[str, str]] = []
        for i in range(len(base)):  # type: ignore[arg-type]
            s = base[i]
            cf, _plans, reasons = shift.draw(collate([s]))
            if reasons[0][0]:
                self.rejections.append((s.exam_id, str(reasons[0][0])))
            self.samples.append(
                replace(
                    s,
                    image=cf.image[0].contiguous(),
                    domain=cf.domain,
                    mask=None if cf.mask is None else cf.mask[0].contiguous(),
                    extras={k: v[0] for k, v in cf.extras.items()},
                )
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]
