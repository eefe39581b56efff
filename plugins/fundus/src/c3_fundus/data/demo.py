"""The embedded demo cohort: procedural fundus photographs graded 0-4, with grader noise."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.seeding import derive_seed, generator_from_seed, uniform
from c3_fundus.data.phantom import render_fundus

GRADE_NAMES = ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "PDR")
GRADE_PRIOR = (0.42, 0.14, 0.2, 0.14, 0.1)
SPLITS = {"train": (11, 300), "test": (23, 100)}
PIXEL_MM = 0.09  # ~12 mm of retina across 128 px at the 45° field


class FundusDemo(Dataset):
    """Deterministic, lazily rendered (and then cached per instance) demo cohort.

    Recorded grades differ from the true grade by ±1 for ``label_noise`` of cases (graders
    disagree on adjacent grades); lesion masks always follow the true grade.
    """

    def __init__(self, split: str = "test", size: int = 128, n: int | None = None, label_noise: float = 0.1) -> None:
        if split not in SPLITS:
            raise ValueError(f"fundus.demo: unknown split {split!r} (choose from {sorted(SPLITS)})")
        self.split, self.size, self.label_noise = split, size, label_noise
        self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else n
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._cache:
            g = generator_from_seed(derive_seed(self.seed, "fundus-demo", i))
            u = uniform(g, 0.0, 1.0)
            cum, grade = 0.0, 0
            for grade, p in enumerate(GRADE_PRIOR):  # noqa: B007
                cum += p
                if u < cum:
                    break
            phantom = render_fundus(grade, g, self.size)
            recorded = grade
            if uniform(g, 0.0, 1.0) < self.label_noise:
                recorded = min(4, max(0, grade + (1 if uniform(g, 0.0, 1.0) < 0.5 else -1)))
            self._cache[i] = Sample(
                image=phantom.image,
                exam_id=f"fundus-demo-{self.split}-{i:04d}",
                modality="fundus",
                domain="srgb",
                spacing=(PIXEL_MM, PIXEL_MM),
                label=torch.tensor(recorded),
                mask=phantom.lesions,
                extras={"fov": phantom.fov},
            )
        return self._cache[i]


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> FundusDemo:
    """Dataset factory registered as ``fundus.demo``."""
    if source is not None:
        raise ValueError("fundus.demo is generated; use fundus.csv to read files")
    return FundusDemo(split=split, **options)  # type: ignore[arg-type]
