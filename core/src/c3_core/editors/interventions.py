"""Mask-guided interventional editors (lesion removed, lesion only, healthy control), generic over modality.

After the mask-guided counterfactual study of brain-tumour classifiers (seed 004): the lesion is
*removed* by inpainting it from its surroundings, or kept *alone* with the background suppressed,
and a *control* inpaints a healthy region of the same size and shape elsewhere, so the effect of
removing the lesion can be told apart from the effect of inpainting as such.

The edited region is the lesion mask (the union of ``lesion_channels`` of ``batch.mask``, >= 0.5)
dilated by ``margin_mm`` (the severity axis, in mm). Every voxel outside the edited region is
bit-identical to the input (inside it, for :class:`LesionOnly`).

Masks and labels describe the edited image (``changes``): removal empties the lesion channels
inside the removed region, lesion-only keeps of every channel only what is left visible; the
label of an edited case is :meth:`MaskGuidedEditor.expected_label` (default: unknown — NaN, or
-1 for a class index — since only the plugin knows which findings the lesion mask outlines).
The control changes neither. Where the lesion *was* is the original's mask, which is what the
causal probe reads.

Inpainting: ``method="auto"`` uses OpenCV Navier–Stokes (:func:`inpaint_ns`) for 2-D images (or
what the class's ``auto_method_2d`` says) and the harmonic fill (:func:`harmonic_fill`) for
volumes; ``"ns"`` on a volume inpaints slice by slice along the last axis; ``"harmonic"`` works in
2-D and 3-D and can take its boundary values from a subset (:meth:`MaskGuidedEditor.fill_sources`).

A modality plugin subclasses these with ``id``, ``modality``, ``domain``, ``severity`` (the
margin range), ``lesion_channels`` and, where it has one, the area a control may use
(:meth:`MaskGuidedEditor.allowed_regions`: lungs, body, brain or field of view) — see ``c3_cxr.editors.inpainting`` for an example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.editors.inpainting import dilate_mm, harmonic_fill, inpaint_ns, place_control
from c3_core.operator import Editor
from c3_core.seeding import Draws, draw_seed, generator_from_seed
from c3_core.truth import set_unknown

METHODS = ("auto", "ns", "harmonic")


@dataclass(frozen=True)
class RemovalParams:
    """Lesion removal: the lesion mask is dilated by ``margin_mm`` (mm) and inpainted."""

    margin_mm: float


@dataclass(frozen=True)
class LesionOnlyParams:
    """Lesion only: everything farther than ``margin_mm`` (mm) from the lesion is set to the background value."""

    margin_mm: float


@dataclass(frozen=True)
class ControlParams:
    """Healthy control: the dilated lesion region, translated by a placement drawn from ``placement_seed``,
    is inpainted instead of the lesion."""

    margin_mm: float
    placement_seed: int


P = TypeVar("P", RemovalParams, LesionOnlyParams, ControlParams)


class MaskGuidedEditor(Editor[P]):
    """Shared machinery: lesion and allowed-region masks, the edited region, the fill method.

    Options (constructor keywords, recorded in provenance): ``method`` ("auto", "ns",
    "harmonic"), ``radius_px`` (OpenCV's inpainting radius, pixels), ``tol`` (harmonic fill
    relative residual).
    """

    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only

    intent = "interventional"
    preserves = frozenset()
    spatial = False
    lesion_channels: ClassVar[tuple[int, ...]] = (0,)
    probe_role: ClassVar[str] = ""
    auto_method_2d: ClassVar[str] = "ns"  # what method="auto" means for 2-D images

    def __init__(self, method: str = "auto", radius_px: float = 3.0, tol: float = 1e-8) -> None:
        if method not in METHODS:
            raise TypeError(f"{self.id}: method must be one of {METHODS}, got {method!r}")
        if not (isinstance(radius_px, int | float) and math.isfinite(radius_px) and radius_px > 0):
            raise TypeError(f"{self.id}: radius_px must be a positive number of pixels, got {radius_px!r}")
        if not (isinstance(tol, int | float) and 0 < tol < 1):
            raise TypeError(f"{self.id}: tol must be in (0, 1), got {tol!r}")
        self.method, self.radius_px, self.tol = method, float(radius_px), float(tol)

    # -- masks ----------------------------------------------------------------------------------
    def check_input(self, batch: Batch) -> None:
        super().check_input(batch)
        if batch.mask is None:
            raise ValueError(f"{self.id} needs a lesion mask (batch.mask is None)")
        need = max(self.lesion_channels) + 1
        if batch.mask.shape[1] < need:
            raise ValueError(
                f"{self.id} reads lesion channel(s) {self.lesion_channels} of the mask, "
                f"which has only {batch.mask.shape[1]} channel(s)"
            )

    def lesion_mask(self, batch: Batch) -> Tensor:
        """``(B, *spatial)`` bool: the union of the lesion channels, thresholded at 0.5."""
        return (batch.mask[:, list(self.lesion_channels)] >= 0.5).any(dim=1)  # type: ignore[index]

    def allowed_regions(self, batch: Batch) -> list[Tensor]:
        """Where a healthy control region may lie, tightest first: ``(B, *spatial)`` bool each.

        Default: the whole image. Plugins return e.g. ``[lungs, body]`` or ``[brain]``.
        """
        return [torch.ones((batch.size, *batch.spatial_shape), dtype=torch.bool, device=batch.device)]

    def edit_region(self, batch: Batch, index: int, margin_mm: float) -> Tensor:
        """The lesion of case ``index`` dilated by ``margin_mm``."""
        return dilate_mm(self.lesion_mask(batch.select([index]))[0], margin_mm, batch.spacing[index])

    def expected_label(self, label: Tensor, edited: Tensor) -> Tensor:
        """The label of the edited images, for editors that declare ``"label"`` in ``changes``:
        ``label`` with the rows ``edited (B,)`` bool made unknown. A plugin that knows which
        findings the lesion mask outlines states them instead."""
        return set_unknown(label, edited)

    # -- filling --------------------------------------------------------------------------------
    def resolved_method(self, spatial_dims: int) -> str:
        """``"ns"`` or ``"harmonic"``: what ``method`` means for images of ``spatial_dims`` axes."""
        if self.method == "auto":
            return self.auto_method_2d if spatial_dims == 2 else "harmonic"
        return self.method

    def fill_sources(self, batch: Batch, index: int) -> Tensor | None:
        """Voxels the harmonic fill may take boundary values from (default None: all around)."""
        return None

    def fill(self, image: Tensor, region: Tensor, spacing: Sequence[float], sources: Tensor | None = None) -> Tensor:
        """Inpaint ``region`` of one case ``image (C, *spatial)`` with the configured method
        (``sources`` restricts the harmonic fill's boundary values; Navier–Stokes uses all)."""
        if self.resolved_method(image.ndim - 1) == "harmonic":
            return harmonic_fill(image, region, spacing, tol=self.tol, sources=sources)
        if image.ndim == 3:
            return inpaint_ns(image, region, self.radius_px)
        slices = [inpaint_ns(image[..., z], region[..., z], self.radius_px) if bool(region[..., z].any()) else image[..., z]
                  for z in range(image.shape[-1])]
        return torch.stack(slices, -1)

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[P]) -> list[str | None]:
        """A reason for every case the edit could not intervene on (no lesion, an unknown lesion
        mask left by an earlier edit, no control place)."""
        lesion = self.lesion_mask(original).flatten(1).any(1).tolist()
        unknown = original.mask[:, list(self.lesion_channels)].isnan().flatten(1).any(1).tolist()  # type: ignore[index]
        return [
            f"{self.id}: the lesion mask is unknown (an earlier edit changed it); nothing was edited" if lost
            else None if has else f"{self.id}: the case has no lesion in the mask; nothing was edited"
            for has, lost in zip(lesion, unknown)
        ]


class LesionRemoved(MaskGuidedEditor[RemovalParams]):
    """Remove the lesion: inpaint the dilated lesion region from its surroundings. The returned
    mask has the lesion channels emptied inside that region; the label is :meth:`expected_label`
    on every case that had a lesion."""

    params_type = RemovalParams
    changes = frozenset({"mask", "label"})
    expected_effect = "lesion removed: the findings in the lesion mask are absent (label and lesion mask become negative)"
    probe_role = "removed"
    summary = "lesion removed by inpainting the dilated lesion mask (interventional)"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> RemovalParams:
        return RemovalParams(margin_mm=severity)

    def _apply(self, batch: Batch, params: Sequence[RemovalParams]) -> Batch:
        out, regions = [], []
        for i, p in enumerate(params):
            region = self.edit_region(batch, i, p.margin_mm)
            out.append(self.fill(batch.image[i], region, batch.spacing[i], self.fill_sources(batch, i)))
            regions.append(region)
        removed = torch.stack(regions)
        edited = removed.flatten(1).any(1)
        label = None if batch.label is None else self.expected_label(batch.label, edited)
        return batch.replace(image=torch.stack(out), mask=self.removed_mask(batch.mask, removed), label=label)  # type: ignore[arg-type]

    def removed_mask(self, mask: Tensor, removed: Tensor) -> Tensor:
        """``mask (B, M, *spatial)`` with the lesion channels set to 0 inside ``removed (B, *spatial)``."""
        out = mask.clone()
        ch = list(self.lesion_channels)
        out[:, ch] = torch.where(removed.unsqueeze(1), torch.zeros_like(out[:, ch]), out[:, ch])
        return out


class LesionOnly(MaskGuidedEditor[LesionOnlyParams]):
    """Keep only the lesion: voxels outside the dilated lesion region become ``background_value``.
    The returned mask keeps of every channel only what lies inside that region (the lesion whole);
    the label is :meth:`expected_label` on every case whose image changed."""

    params_type = LesionOnlyParams
    changes = frozenset({"mask", "label"})
    expected_effect = "lesion only: the background is suppressed; the prediction should rest on the lesion alone"
    probe_role = "only"
    summary = "lesion only: background outside the dilated lesion mask suppressed (interventional)"
    background_value: ClassVar[float] = 0.0  # the domain's "no signal" value (set per modality)

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> LesionOnlyParams:
        return LesionOnlyParams(margin_mm=severity)

    def _apply(self, batch: Batch, params: Sequence[LesionOnlyParams]) -> Batch:
        out, regions = [], []
        for i, p in enumerate(params):
            region = self.edit_region(batch, i, p.margin_mm)
            img = batch.image[i]
            out.append(torch.where(region, img, torch.full_like(img, self.background_value)))
            regions.append(region)
        kept = torch.stack(regions).unsqueeze(1)
        mask = torch.where(kept, batch.mask, torch.zeros_like(batch.mask))  # type: ignore[arg-type]
        edited = (~kept).flatten(1).any(1)
        label = None if batch.label is None else self.expected_label(batch.label, edited)
        return batch.replace(image=torch.stack(out), mask=mask, label=label)


class HealthyControl(MaskGuidedEditor[ControlParams]):
    """Inpaint a healthy region of the lesion region's size (and shape, where it fits whole),
    placed at random inside :meth:`allowed_regions`, away from the lesion (:func:`place_control`).
    Label and mask are kept: the control is meant to change neither."""

    params_type = ControlParams
    preserves = frozenset({"label", "mask"})
    expected_effect = "control: a healthy region the size of the lesion is inpainted; the label should not change"
    probe_role = "control"
    summary = "control: inpaint a same-size healthy region away from the lesion (interventional control)"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> ControlParams:
        return ControlParams(margin_mm=severity, placement_seed=draw_seed(generator))

    def guard_px(self, spatial_dims: int) -> int:
        """How far (voxels) the control region keeps from the lesion: the fill's reach."""
        return 1 if self.resolved_method(spatial_dims) == "harmonic" else int(math.ceil(self.radius_px))

    def placement(self, batch: Batch, index: int, params: ControlParams) -> tuple[Tensor, Tensor] | None:
        """``(control region, the allowed area it lies in)`` of case ``index``, or None."""
        region = self.edit_region(batch, index, params.margin_mm)
        areas = [a[0] for a in self.allowed_regions(batch.select([index]))]
        g = generator_from_seed(params.placement_seed)
        placed = place_control(region, areas, g, guard_px=self.guard_px(batch.spatial_dims))
        return None if placed is None else (placed[0], areas[placed[1]])

    def control_region(self, batch: Batch, index: int, params: ControlParams) -> Tensor | None:
        """The control region of case ``index`` (:func:`place_control`), or None when none fits."""
        placed = self.placement(batch, index, params)
        return None if placed is None else placed[0]

    def _apply(self, batch: Batch, params: Sequence[ControlParams]) -> Batch:
        out = []
        for i, p in enumerate(params):
            placed = self.placement(batch, i, p)
            img = batch.image[i]
            # the fill takes its boundary values from the area the control lies in (e.g. lung, body)
            out.append(img.clone() if placed is None else self.fill(img, placed[0], batch.spacing[i], placed[1]))
        return batch.replace(image=torch.stack(out))

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[ControlParams]) -> list[str | None]:
        reasons = super().check(original, counterfactual, params)
        for i, p in enumerate(params):
            if reasons[i] is None and self.control_region(original, i, p) is None:
                reasons[i] = f"{self.id}: no healthy region of the lesion's size fits inside the allowed area"
        return reasons
