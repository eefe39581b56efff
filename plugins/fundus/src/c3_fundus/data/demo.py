"""The embedded demo cohort ``fundus.demo``: procedural fundus photographs graded 0-4, with grader noise.

Task "multiclass" over the five ICDR grades; referable DR is grade >= 2. Images are sRGB
(3, 128, 128) at about 0.094 mm per pixel (a 45° field, about 12 mm of retina across the FOV);
masks are (3, H, W): microaneurysms, haemorrhages, exudates; ``extras['fov']`` is the FOV mask.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.reference_training import one_thread
from c3_core.seeding import derive_seed, generator_from_seed, uniform
from c3_fundus.data.phantom import FOV_RADIUS, render_fundus

GRADE_PRIOR = (0.42, 0.14, 0.2, 0.14, 0.1)
SPLITS = {"train": (11, 300), "test": (23, 100)}
RETINA_MM_ACROSS_FOV = 12.0  # a 45° field covers about 12 mm of retina


def demo_spacing(size: int) -> float:
    """Pixel spacing (mm) of a demo image of ``size`` px."""
    return RETINA_MM_ACROSS_FOV / (FOV_RADIUS * size)


class FundusDemo(Dataset):
    """Deterministic, lazily rendered (then cached per instance) demo cohort.

    The recorded grade differs from the true grade by ±1 for ``label_noise`` of cases (graders
    disagree on adjacent grades); lesion masks always follow the true grade. Exam ids are
    pseudonymous: ``fundus-demo-<split>-0007``.
    """

    def __init__(self, split: str = "test", size: int = 128, n: int | None = None, label_noise: float = 0.12) -> None:
        if split not in SPLITS:
            raise ValueError(f"fundus.demo: unknown split {split!r} (choose from {sorted(SPLITS)})")
        if int(size) < 32:
            raise ValueError(f"fundus.demo: size must be >= 32 px, got {size}")
        if not 0.0 <= float(label_noise) <= 1.0:
            raise ValueError(f"fundus.demo: label_noise must be in [0, 1], got {label_noise}")
        self.split, self.size, self.label_noise = split, int(size), float(label_noise)
        self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else int(n)
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self.n

    def true_grade(self, i: int) -> int:
        """The grade the lesions were drawn for (before grader noise)."""
        g = generator_from_seed(derive_seed(self.seed, "fundus-demo", i))
        u = uniform(g, 0.0, 1.0)
        cum = 0.0
        for grade, p in enumerate(GRADE_PRIOR):
            cum += p
            if u < cum:
                return grade
        return len(GRADE_PRIOR) - 1

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(f"fundus.demo {self.split}: index {i} out of range 0..{self.n - 1}")
        if i not in self._cache:
            g = generator_from_seed(derive_seed(self.seed, "fundus-demo", i))
            uniform(g, 0.0, 1.0)  # the grade draw (see true_grade)
            grade = self.true_grade(i)
            with one_thread():
                phantom = render_fundus(grade, g, self.size)
            recorded = grade
            if uniform(g, 0.0, 1.0) < self.label_noise:
                recorded = min(4, max(0, grade + (1 if uniform(g, 0.0, 1.0) < 0.5 else -1)))
            sp = demo_spacing(self.size)
            self._cache[i] = Sample(
                image=phantom.image,
                exam_id=f"fundus-demo-{self.split}-{i:04d}",
                modality="fundus",
                domain="srgb",
                spacing=(sp, sp),
                label=torch.tensor(recorded),
                mask=phantom.lesions,
                extras={"fov": phantom.fov},
            )
        return self._cache[i]


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> FundusDemo:
    """Dataset factory registered as ``fundus.demo`` (options: ``size``, ``n``, ``label_noise``)."""
    if source is not None:
        raise ValueError("fundus.demo is generated, it takes no source; use fundus.csv to read files")
    return FundusDemo(split=split, **options)  # type: ignore[arg-type]
