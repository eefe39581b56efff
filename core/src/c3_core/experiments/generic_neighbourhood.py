"""A generic-corruption neighbourhood at strength matched to a physics neighbourhood.

The failure-prediction study asks whether acquisition physics beats generic corruption. This
module draws K counterfactuals per case from four display-space corruptions
(:mod:`c3_core.functional.corruptions`: Gaussian noise, Gaussian blur, contrast, JPEG), each at
one of three levels whose mean absolute change of the display image (the image in its own
0.5-99.5 percentile window) is 0.5x, 1x and 1.5x that of the physics counterfactuals it is
matched to. A counterfactual depends only on (seed, exam id, k), like a physics neighbourhood's.

Volumes (3-D images) use the first three only (:data:`VOLUME_KINDS`): JPEG is a codec for 2-D
pictures, and a volume is not stored or sent slice by slice as JPEG (DICOM and NIfTI volumes are
kept raw or losslessly compressed), so JPEG blocking is no plausible corruption of an MR volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.functional import corruptions as C
from c3_core.seeding import derive_seed, generator_from_seed

KINDS = ("gaussian_noise", "gaussian_blur", "contrast", "jpeg")
VOLUME_KINDS = ("gaussian_noise", "gaussian_blur", "contrast")  # no JPEG for volumes (module docstring)
LEVELS = (0.5, 1.0, 1.5)  # multiples of the physics neighbourhood's mean absolute display change

# parameter search interval per kind: (weak end, strong end); integer for JPEG quality
_SEARCH: dict[str, tuple[float, float]] = {
    "gaussian_noise": (0.0, 0.5),
    "gaussian_blur": (0.0, 8.0),
    "contrast": (1.0, 0.05),
    "jpeg": (95.0, 1.0),
}


def _corrupt(kind: str, u: Tensor, param: float, g: torch.Generator) -> Tensor:
    if kind == "gaussian_noise":
        return C.gaussian_noise(u, param, g)
    if kind == "gaussian_blur":
        return C.gaussian_blur(u, param)
    if kind == "contrast":
        return C.contrast(u, param)
    if kind == "jpeg":
        return C.jpeg(u, int(round(param)))
    raise ValueError(f"unknown generic corruption {kind!r} (choose from {list(KINDS)})")


def kinds_for(images: Tensor) -> tuple[str, ...]:
    """The corruptions for a batch ``(B, C, *spatial)``: :data:`KINDS` for 2-D images, :data:`VOLUME_KINDS` for volumes."""
    return KINDS if images.ndim <= 4 else VOLUME_KINDS


def mean_display_change(original: Tensor, counterfactual: Tensor, repeats: int) -> float:
    """Mean |u' - u| in display-window units, ``counterfactual`` holding ``repeats`` rows per original."""
    u, lo, hi = C.display_window(original)
    rep = u.repeat_interleave(repeats, 0)
    v = ((counterfactual - lo.repeat_interleave(repeats, 0)) / (hi - lo).repeat_interleave(repeats, 0)).clamp(0, 1)
    return float((v - rep).abs().mean())


def _effect(kind: str, u: Tensor, param: float, seed: int) -> float:
    return float((_corrupt(kind, u, param, generator_from_seed(seed)) - u).abs().mean())


def match_parameter(kind: str, u: Tensor, target: float, seed: int = 0, steps: int = 10) -> float:
    """The parameter of ``kind`` whose mean absolute display change on ``u`` is ``target``
    (bisection between the kind's weak and strong ends; the strong end if out of reach)."""
    weak, strong = _SEARCH[kind]
    if _effect(kind, u, strong, seed) <= target:
        return strong
    for _ in range(steps):
        mid = (weak + strong) / 2
        if kind == "jpeg":
            mid = float(round(mid))
            if mid in (weak, strong):
                break
        if _effect(kind, u, mid, seed) < target:
            weak = mid
        else:
            strong = mid
    return strong


@dataclass(frozen=True)
class GenericNeighbourhood:
    """K generic corruptions per case, drawn among ``kinds``; ``params[kind]`` holds one parameter
    per level of :data:`LEVELS`."""

    params: dict[str, tuple[float, ...]]
    k: int
    seed: int
    kinds: tuple[str, ...] = KINDS

    @classmethod
    def matched(cls, images: Tensor, target_change: float, k: int, seed: int,
                kinds: tuple[str, ...] | None = None) -> GenericNeighbourhood:
        """Levels matched on ``images`` to ``target_change`` (see :func:`mean_display_change`);
        ``kinds`` default :func:`kinds_for` the images."""
        kinds = kinds_for(images) if kinds is None else tuple(kinds)
        unknown = [kd for kd in kinds if kd not in _SEARCH]
        if unknown or not kinds:
            raise ValueError(f"unknown generic corruption(s) {unknown} (choose from {list(KINDS)})")
        u, _lo, _hi = C.display_window(images)
        params = {kind: tuple(match_parameter(kind, u, lv * target_change, seed) for lv in LEVELS) for kind in kinds}
        return cls(params, int(k), int(seed), kinds)

    def describe(self) -> dict[str, object]:
        return {"levels": list(LEVELS), "params": {k: list(v) for k, v in self.params.items()}, "k": self.k, "seed": self.seed,
                "kinds": list(self.kinds)}

    def draw(self, batch: Batch) -> tuple[Tensor, list[list[str]]]:
        """``(images (B*K rows, row i*K+k), labels "kind@level")``; the images stay in the batch's domain."""
        u, lo, hi = C.display_window(batch.image)
        rows: list[Tensor] = []
        labels: list[list[str]] = []
        for i, exam in enumerate(batch.exam_ids):
            case_labels = []
            for j in range(self.k):
                g = generator_from_seed(derive_seed(self.seed, "generic", exam, j))
                kind = self.kinds[int(torch.randint(0, len(self.kinds), (1,), generator=g))]
                level = int(torch.randint(0, len(LEVELS), (1,), generator=g))
                v = _corrupt(kind, u[i : i + 1], self.params[kind][level], g)
                rows.append(C.from_display_window(v, lo[i : i + 1], hi[i : i + 1]))
                case_labels.append(f"{kind}@{LEVELS[level]:g}")
            labels.append(case_labels)
        return torch.cat(rows, 0), labels

