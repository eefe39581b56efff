"""The embedded demo cohort: procedural chest radiographs, five findings, 5 % label noise."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.seeding import derive_seed, generator_from_seed
from c3_cxr.data.phantom import PREVALENCE, ChestPhantom, render_chests

SPLITS = {"train": (5, 400), "test": (17, 120)}
PIXEL_MM = 2.8  # 128 px across a 36 cm detector
CHUNK = 128  # cases rendered together (few large tensor ops: cheap even on a busy CPU)


class ChestDemo(Dataset):
    """Deterministic demo cohort; each finding's recorded label flips with probability ``label_noise``
    (report-mined labels are noisy). Case i depends only on (split, i)."""

    def __init__(self, split: str = "test", n: int | None = None, label_noise: float = 0.05) -> None:
        if split not in SPLITS:
            raise ValueError(f"cxr.demo: unknown split {split!r} (choose from {sorted(SPLITS)})")
        self.split = split
        self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else int(n)
        if self.n < 1:
            raise ValueError(f"cxr.demo: n must be >= 1, got {n}")
        self.label_noise = float(label_noise)
        self._chunks: dict[int, tuple[ChestPhantom, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.n

    def _chunk(self, c: int) -> tuple[ChestPhantom, torch.Tensor]:
        if c not in self._chunks:
            idx = range(c * CHUNK, min((c + 1) * CHUNK, self.n))
            gens = [generator_from_seed(derive_seed(self.seed, "cxr-demo", i)) for i in idx]
            truth = torch.stack([torch.rand(5, generator=g) < torch.tensor(PREVALENCE) for g in gens])
            flips = torch.stack([torch.rand(5, generator=g) < self.label_noise for g in gens])
            phantom = render_chests(truth, gens)
            self._chunks[c] = (phantom, torch.where(flips, ~truth, truth).float())
        return self._chunks[c]

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        phantom, recorded = self._chunk(i // CHUNK)
        j = i % CHUNK
        return Sample(
            phantom.mu[j].clone(), f"cxr-demo-{self.split}-{i:04d}", "cxr", "log_attenuation", (PIXEL_MM, PIXEL_MM),
            label=recorded[j].clone(), mask=phantom.mask[j].clone(),
        )  # fmt: skip


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> ChestDemo:
    """Dataset factory registered as ``cxr.demo``."""
    if source is not None:
        raise ValueError("cxr.demo is generated; use cxr.chexpert_csv to read files")
    return ChestDemo(split=split, **options)  # type: ignore[arg-type]
