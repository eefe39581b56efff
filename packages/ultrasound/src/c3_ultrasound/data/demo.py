"""The embedded demo cohort ``us.demo``: procedural B-mode phantoms, lesion or no lesion.

96 x 96 pixels at 0.3 mm (2.9 cm deep, 2.9 cm wide), envelope domain, one lesion mask channel.
About half the cases carry a hypoechoic lesion; 6 % of recorded labels are flipped (reader
disagreement on faint lesions), the masks always follow the truth. Splits "train" (600 cases)
and "test" (200) use different seeds. Deterministic: case i of a split is a pure function of
(split seed, i).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from c3_core.api import Sample, derive_seed, generator_from_seed, uniform
from c3_ultrasound.data.phantom import render_phantom
from c3_ultrasound.intensity_domains import ENVELOPE

CLASSES = ("no lesion", "hypoechoic lesion")
SPLITS = {"train": (101, 600), "test": (202, 200)}
SIZE = 96
PIXEL_MM = 0.3
LESION_PREVALENCE = 0.5
LABEL_NOISE = 0.06


class UltrasoundDemo(Dataset):
    """Lazily rendered (then cached per instance) demo cohort of :class:`Sample`."""

    def __init__(self, split: str = "test", n: int | None = None, label_noise: float = LABEL_NOISE) -> None:
        if split not in SPLITS:
            raise ValueError(f"us.demo: unknown split {split!r} (choose from {sorted(SPLITS)})")
        if not 0.0 <= label_noise < 0.5:
            raise ValueError(f"us.demo: label_noise must lie in [0, 0.5), got {label_noise}")
        self.split, self.label_noise = split, float(label_noise)
        self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else int(n)
        if self.n < 1:
            raise ValueError(f"us.demo: n must be >= 1, got {n}")
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(f"us.demo: index {i} out of range for {self.n} cases")
        if i not in self._cache:
            g = generator_from_seed(derive_seed(self.seed, "us-demo", i))
            truth = uniform(g, 0.0, 1.0) < LESION_PREVALENCE
            recorded = truth if uniform(g, 0.0, 1.0) >= self.label_noise else not truth
            phantom = render_phantom(truth, g, SIZE, PIXEL_MM)
            self._cache[i] = Sample(
                image=phantom.envelope,
                exam_id=f"us-demo-{self.split}-{i:04d}",
                modality="us",
                domain=ENVELOPE,
                spacing=(PIXEL_MM, PIXEL_MM),
                label=torch.tensor(int(recorded)),
                mask=phantom.lesion,
            )
        return self._cache[i]


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> UltrasoundDemo:
    """Dataset factory registered as ``us.demo`` (options: ``n``, ``label_noise``)."""
    if source is not None:
        raise ValueError("us.demo is generated and reads no files; leave source unset")
    unknown = set(options) - {"n", "label_noise"}
    if unknown:
        raise ValueError(f"us.demo: unknown option(s) {sorted(unknown)} (known: n, label_noise)")
    return UltrasoundDemo(split=split, **options)  # type: ignore[arg-type]
