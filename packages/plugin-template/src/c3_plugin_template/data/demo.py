"""A tiny deterministic cohort: a bright square (class 1) or not (class 0) on noise."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from c3_core.api import Sample, derive_seed, generator_from_seed


class TemplateDemo(Dataset):
    def __init__(self, split: str = "test", n: int = 64) -> None:
        self.seed, self.n, self.split = (1 if split == "train" else 2), n, split

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        g = generator_from_seed(derive_seed(self.seed, "example", i))
        label = i % 2
        img = 0.4 + 0.1 * torch.rand((1, 32, 32), generator=g)
        mask = torch.zeros(1, 32, 32)
        if label:
            y, x = (int(v) for v in torch.randint(4, 20, (2,), generator=g))
            img[:, y : y + 8, x : x + 8] += 0.15
            mask[:, y : y + 8, x : x + 8] = 1
        return Sample(img, f"example-{self.split}-{i:03d}", "example", "display", (1.0, 1.0), torch.tensor(label), mask)


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> TemplateDemo:
    return TemplateDemo(split=split)
