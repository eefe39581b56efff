"""The sample and batch types every operator, model and metric in C3 exchanges.

Images are float32 tensors ``(B, C, *spatial)`` with 2 or 3 spatial axes. Spacing is in mm per
spatial axis, per sample. Exam ids are pseudonymous keys: they seed a case's neighbourhood and
appear in reports, so datasets must never put a patient name or MRN in them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from c3_core.domains import IntensityDomain, parse_domain


class _CheckedSpacing(tuple):  # type: ignore[type-arg]
    """A batch's spacing once validated: rows of floats, all of one length, each positive and
    finite. A tuple in every other respect; a batch built from another's rows (``select``,
    ``replace``) skips the per-row checks, which cost more than the tensor work on small images."""

    __slots__ = ()


@dataclass(frozen=True)
class CaseInfo:
    """What a parameter sampler may know about one case (no pixels)."""

    exam_id: str
    modality: str
    domain: IntensityDomain
    spatial_shape: tuple[int, ...]
    spacing: tuple[float, ...]  # mm per spatial axis
    channels: int


@dataclass(frozen=True)
class Sample:
    """One case: ``image (C, *spatial)`` plus optional label, mask and extras."""

    image: Tensor
    exam_id: str
    modality: str
    domain: IntensityDomain | str
    spacing: tuple[float, ...]
    label: Tensor | None = None
    mask: Tensor | None = None
    extras: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """A batch of cases of one modality and one intensity domain.

    ``label`` is ``(B,)`` int64 class indices (single-label / graded) or ``(B, F)`` float in
    {0, 1, nan} (multi-label, nan = ignore). ``mask`` is ``(B, M, *spatial)`` (lesion or anatomy
    masks, float in [0, 1]). ``extras`` holds per-sample tensors with a leading batch axis whose
    spatial axes follow the image (e.g. a tissue map or a field-of-view mask); spatial operators
    move them like the mask.
    """

    image: Tensor
    exam_ids: tuple[str, ...]
    modality: str
    domain: IntensityDomain
    spacing: tuple[tuple[float, ...], ...]
    label: Tensor | None = None
    mask: Tensor | None = None
    extras: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", parse_domain(self.domain))
        object.__setattr__(self, "exam_ids", tuple(self.exam_ids))
        if not isinstance(self.spacing, _CheckedSpacing):
            object.__setattr__(self, "spacing", tuple(tuple(float(v) for v in s) for s in self.spacing))
        self.validate()
        if not isinstance(self.spacing, _CheckedSpacing):
            object.__setattr__(self, "spacing", _CheckedSpacing(self.spacing))

    # -- invariants -----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError when shapes, spacing or values are inconsistent."""
        img = self.image
        if not isinstance(img, Tensor):
            raise TypeError(f"image must be a torch.Tensor, got {type(img).__name__}")
        if img.ndim not in (4, 5):
            raise ValueError(
                f"image must be (B, C, H, W) or (B, C, D, H, W); got shape {tuple(img.shape)}"
            )
        if not img.is_floating_point():
            raise ValueError(f"image must be floating point, got {img.dtype}")
        b = img.shape[0]
        if len(self.exam_ids) != b:
            raise ValueError(f"{len(self.exam_ids)} exam ids for a batch of {b}")
        if len(self.spacing) != b:
            raise ValueError(f"{len(self.spacing)} spacings for a batch of {b}")
        n_sp = img.ndim - 2
        checked = isinstance(self.spacing, _CheckedSpacing) and (not self.spacing or len(self.spacing[0]) == n_sp)
        if not checked:  # a validated batch's rows (select, replace, to) were checked when it was built
            for exam, sp in zip(self.exam_ids, self.spacing):
                if len(sp) != n_sp or not all(math.isfinite(v) and v > 0 for v in sp):
                    raise ValueError(
                        f"exam {exam}: spacing {sp} must have {n_sp} positive finite values (mm)"
                    )
        if self.mask is not None:
            if self.mask.shape[0] != b or self.mask.shape[2:] != img.shape[2:]:
                raise ValueError(
                    f"mask shape {tuple(self.mask.shape)} does not match image {tuple(img.shape)}"
                )
        if self.label is not None and self.label.shape[0] != b:
            raise ValueError(f"label has {self.label.shape[0]} rows for a batch of {b}")
        for key, value in self.extras.items():
            if value.shape[0] != b:
                raise ValueError(f"extras[{key!r}] has {value.shape[0]} rows for a batch of {b}")

    # -- views ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[2:])

    @property
    def spatial_dims(self) -> int:
        return self.image.ndim - 2

    @property
    def device(self) -> torch.device:
        return self.image.device

    def case_info(self, index: int) -> CaseInfo:
        return CaseInfo(
            exam_id=self.exam_ids[index],
            modality=self.modality,
            domain=self.domain,
            spatial_shape=self.spatial_shape,
            spacing=self.spacing[index],
            channels=int(self.image.shape[1]),
        )

    def replace(self, **changes: Any) -> Batch:
        """A copy with fields replaced (tensors are shared, not cloned)."""
        return replace(self, **changes)

    def select(self, index: Sequence[int] | Tensor, *, image: Tensor | None = None) -> Batch:
        """The sub-batch at ``index`` (order kept). ``image``: those rows' pixels, when the caller
        already holds them (one row per index), used instead of a copy of this batch's."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.image.device)
        ids = [int(i) for i in idx.tolist()]
        if image is not None and image.shape[0] != len(ids):
            raise ValueError(f"select: {image.shape[0]} image rows for {len(ids)} indices")
        return Batch(
            image=self.image.index_select(0, idx) if image is None else image,
            exam_ids=tuple(self.exam_ids[i] for i in ids),
            modality=self.modality,
            domain=self.domain,
            spacing=_CheckedSpacing(self.spacing[i] for i in ids),
            label=None if self.label is None else self.label.index_select(0, idx.to(self.label.device)),
            mask=None if self.mask is None else self.mask.index_select(0, idx),
            extras={k: v.index_select(0, idx.to(v.device)) for k, v in self.extras.items()},
        )

    def repeat_interleave(self, k: int) -> Batch:
        """Each case repeated ``k`` times consecutively: case i lands at rows i*k .. i*k+k-1."""
        idx = torch.arange(self.size, device=self.image.device).repeat_interleave(k)
        return self.select(idx)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            image=self.image.to(device),
            exam_ids=self.exam_ids,
            modality=self.modality,
            domain=self.domain,
            spacing=self.spacing,
            label=None if self.label is None else self.label.to(device),
            mask=None if self.mask is None else self.mask.to(device),
            extras={k: v.to(device) for k, v in self.extras.items()},
        )


def concat(batches: Sequence[Batch]) -> Batch:
    """Concatenate batches of the same modality, domain and spatial shape."""
    if not batches:
        raise ValueError("cannot concatenate zero batches")
    first = batches[0]
    for b in batches[1:]:
        if b.modality != first.modality or b.domain != first.domain:
            raise ValueError("cannot concatenate batches of different modality or domain")

    def cat_opt(values: list[Tensor | None]) -> Tensor | None:
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError("cannot concatenate batches where only some carry a label or mask")
        return torch.cat(values, 0)  # type: ignore[arg-type]

    return Batch(
        image=torch.cat([b.image for b in batches], 0),
        exam_ids=tuple(e for b in batches for e in b.exam_ids),
        modality=first.modality,
        domain=first.domain,
        spacing=tuple(s for b in batches for s in b.spacing),
        label=cat_opt([b.label for b in batches]),
        mask=cat_opt([b.mask for b in batches]),
        extras={k: torch.cat([b.extras[k] for b in batches], 0) for k in first.extras},
    )


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a :class:`Batch` (use as a DataLoader ``collate_fn``)."""
    if not samples:
        raise ValueError("cannot collate zero samples")
    first = samples[0]
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(
            f"samples have different image shapes {sorted(shapes)}; resample them to one grid first"
        )
    for s in samples:
        if s.modality != first.modality or parse_domain(s.domain) != parse_domain(first.domain):
            raise ValueError(f"exam {s.exam_id}: modality/domain differs from exam {first.exam_id}")

    def stack_opt(values: list[Tensor | None], what: str) -> Tensor | None:
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError(f"some samples have a {what} and others do not")
        return torch.stack(values, 0)  # type: ignore[arg-type]

    return Batch(
        image=torch.stack([s.image for s in samples], 0).float(),
        exam_ids=tuple(s.exam_id for s in samples),
        modality=first.modality,
        domain=parse_domain(first.domain),
        spacing=tuple(tuple(s.spacing) for s in samples),
        label=stack_opt([s.label for s in samples], "label"),
        mask=stack_opt([s.mask for s in samples], "mask"),
        extras={k: torch.stack([s.extras[k] for s in samples], 0) for k in first.extras},
    )


def check_finite(image: Tensor, where: str) -> None:
    """Raise a ValueError naming ``where`` when ``image`` holds NaN or Inf values."""
    if not bool(torch.isfinite(image).all()):
        bad = int((~torch.isfinite(image)).sum())
        raise ValueError(f"{where}: image has {bad} NaN or Inf values")
