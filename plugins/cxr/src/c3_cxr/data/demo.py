"""The embedded demo cohort: procedural chest radiographs, five findings, 5 % label noise."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.seeding import derive_seed, generator_from_seed
from c3_cxr.data.phantom import PREVALENCE, render_chest

SPLITS = {"train": (5, 400), "test": (17, 120)}
PIXEL_MM = 2.8  # 128 px across a 36 cm detector


class ChestDemo(Dataset):
    """Deterministic demo cohort; each finding's recorded label flips with probability ``label_noise``
    (report-mined labels are noisy)."""

    def __init__(self, split: str = "test", n: int | None = None, label_noise: float = 0.05) -> None:
        if split not in SPLITS:
            raise ValueError(f"cxr.demo: unknown split {split!r} (choose from {sorted(SPLITS)})")
        self.split = split
        self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else n
        self.label_noise = label_noise
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._cache:
            g = generator_from_seed(derive_seed(self.seed, "cxr-demo", i))
            truth = torch.rand(5, generator=g) < torch.tensor(PREVALENCE)
            phantom = render_chest(truth, g)
            flip = torch.rand(5, generator=g) < self.label_noise
            recorded = torch.where(flip, ~truth, truth).float()
            self._cache[i] = Sample(phantom.mu, f"cxr-demo-{self.split}-{i:04d}", "cxr", "log_attenuation", (PIXEL_MM, PIXEL_MM), label=recorded, mask=phantom.mask)
        return self._cache[i]


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> ChestDemo:
    """Dataset factory registered as ``cxr.demo``."""
    if source is not None:
        raise ValueError("cxr.demo is generated; use cxr.chexpert_csv to read files")
    return ChestDemo(split=split, **options)  # type: ignore[arg-type]
