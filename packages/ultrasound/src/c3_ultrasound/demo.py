"""Procedural B-mode phantoms (envelope domain): layered tissue, maybe a hypoechoic lesion."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.seeding import derive_seed, generator_from_seed, uniform
from c3_ultrasound.functional import depth_gain_db, rayleigh_speckle

CLASSES = ("no lesion", "hypoechoic lesion")
SPLITS = {"train": (3, 300), "test": (9, 100)}
PIXEL_MM = 0.5


class UltrasoundDemo(Dataset):
    def __init__(self, split: str = "test", n: int | None = None, size: int = 64, label_noise: float = 0.05) -> None:
        if split not in SPLITS:
            raise ValueError(f"us.demo: unknown split {split!r}")
        self.split, self.size, self.label_noise = split, size, label_noise
        self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = generator_from_seed(derive_seed(self.seed, "us-demo", i))
        s = self.size
        yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
        echo = torch.ones(s, s)
        for _ in range(3):  # tissue layers with different echogenicity
            boundary = uniform(g, 0.1, 0.9) * s + uniform(g, -4, 4) * torch.sin(xx / uniform(g, 6, 14))
            echo = torch.where(yy > boundary, echo * uniform(g, 0.6, 1.5), echo)
        lesion = uniform(g, 0, 1) < 0.5
        mask = torch.zeros(s, s)
        if lesion:
            cy, cx = uniform(g, 0.3, 0.8) * s, uniform(g, 0.25, 0.75) * s
            ry, rx = uniform(g, 3, 8), uniform(g, 4, 10)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            mask = inside.float()
            echo = torch.where(inside, echo * uniform(g, 0.3, 0.65), echo)
        speckle = rayleigh_speckle((s, s), g, 0.4, 0.8, torch.device("cpu"))
        tgc_residual = depth_gain_db(s, PIXEL_MM, 0.5, 5.0, 2 * 0.5 * 5.0 + uniform(g, -0.5, 0.5), torch.device("cpu"))
        env = echo * speckle * (10 ** (tgc_residual / 20)).view(s, 1) * uniform(g, 0.7, 1.4)
        label = int(lesion) if uniform(g, 0, 1) >= self.label_noise else 1 - int(lesion)
        return Sample(env[None], f"us-demo-{self.split}-{i:04d}", "us", "envelope", (PIXEL_MM, PIXEL_MM), label=torch.tensor(label), mask=mask[None])


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> UltrasoundDemo:
    if source is not None:
        raise ValueError("us.demo is generated and reads no files")
    return UltrasoundDemo(split=split, **options)  # type: ignore[arg-type]
