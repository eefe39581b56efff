"""The generic 3-D structure-volume editor (Seg-CFT on volumes): set a structure's volume to
``ratio`` times its segmented volume, within a bounded region around it.

A plugin subclass names the structure, its mask channel, the size floor it was fitted with and
how to load its fitted :class:`~c3_core.editors.volume_structure_model.VolumeStructureModel`
(:meth:`VolumeStructureEditor.load_model`; it never trains: a missing file is an error that says
to run ``c3 editor fit``). Model units are the volume divided by its own 99th percentile
(:func:`volume_units`), so the map is per case and batch-invariant.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.editors.nets import model_on_device
from c3_core.editors.structure_stages import TuneSettings
from c3_core.editors.volume_structure_kernels import from_grid, hard_voxels, region_weight, to_grid, voxel_volume_ml
from c3_core.editors.volume_structure_model import VolumeStructureModel, load_volume_model
from c3_core.editors.volume_structure_nets import VolumeStructureConfig
from c3_core.operator import Editor, Severity
from c3_core.seeding import Draws, random_sign

UNIT_PERCENTILE = 0.99


def unit_scale(image: Tensor) -> Tensor:
    """Per-case scale ``(B, 1, 1, ...)``: the 99th percentile of ``|image|`` (floored at 1e-6)."""
    flat = image.detach().abs().flatten(1).float()
    k = max(1, int(round(UNIT_PERCENTILE * flat.shape[1])))
    q = flat.kthvalue(k, dim=1).values.clamp_min(1e-6)
    return q.view(-1, *[1] * (image.ndim - 1)).to(image.dtype)


def volume_units(image: Tensor) -> Tensor:
    """``image`` in model units: divided by its own :func:`unit_scale`."""
    return image / unit_scale(image)


@dataclass(frozen=True)
class VolumeParams:
    """``ratio``: target volume / the segmented volume of the structure in the original (> 0)."""

    ratio: float


class VolumeStructureEditor(Editor[VolumeParams]):
    """Set one structure's volume to ``ratio`` times its segmented volume (interventional, 3-D).

    Options (constructor keywords, recorded in provenance): ``weights`` — a ``.safetensors`` file
    from ``c3 editor fit`` (default: the plugin's :meth:`load_model`); ``direction`` — ``"grow"``,
    ``"shrink"`` or ``"either"``; ``tolerance`` — the relative volume error above which
    :meth:`check` rejects a counterfactual; ``region_vox`` — the change is applied only within
    ``region_vox`` working-grid voxels of the segmented structure, feathered to exactly 0 beyond
    ``region_vox + 4``.

    Changes: on every edited case (ratio != 1) the returned mask, inside the edit region (the
    image voxels where the blend weight is > 0), holds the frozen segmentor's mask of the *edited*
    volume in the structure's channel and unknown (NaN) in the other channels; outside the region
    the image is untouched and the mask is the input's. Unedited cases keep their mask.
    """

    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only

    intent: ClassVar[Literal["admissible", "interventional"]] = "interventional"
    version: ClassVar[str] = "1"
    preserves: ClassVar[frozenset[str]] = frozenset()
    changes: ClassVar[frozenset[str]] = frozenset({"mask", "structure_volume"})
    spatial_dims: ClassVar[tuple[int, ...]] = (3,)
    severity: ClassVar[Severity] = Severity("relative volume change", "fraction of the segmented volume", 0.0, 0.3, (0.1, 0.2, 0.3))
    params_type: ClassVar[type] = VolumeParams
    structure: ClassVar[str]
    mask_channels: ClassVar[tuple[int, ...]] = (0,)  # the batch mask channel of each of the model's structures
    lower_bound: ClassVar[float | None] = None
    min_volume_ml: ClassVar[float] = 0.0  # the size floor the plugin fits with (stated in the catalogue)
    model_config: ClassVar[VolumeStructureConfig | None] = None  # what `c3 editor fit` trains
    tune_settings: ClassVar[TuneSettings] = TuneSettings()

    def __init__(self, weights: str | None = None, direction: str = "either", tolerance: float = 0.25, region_vox: int = 1) -> None:
        if direction not in ("grow", "shrink", "either"):
            raise ValueError(f"{self.id}: direction must be 'grow', 'shrink' or 'either', got {direction!r}")
        if not (math.isfinite(float(tolerance)) and float(tolerance) > 0):
            raise ValueError(f"{self.id}: tolerance must be a finite number > 0, got {tolerance!r}")
        if isinstance(region_vox, bool) or not isinstance(region_vox, int) or region_vox < 0:
            raise ValueError(f"{self.id}: region_vox must be an integer >= 0, got {region_vox!r}")
        if weights is not None and not Path(weights).is_file():
            raise ValueError(f"{self.id}: weights file {weights} not found (write one with `c3 editor fit {self.id} --out PATH`)")
        self.weights = weights
        self.direction = direction
        self.tolerance = float(tolerance)
        self.region_vox = region_vox
        self._models: dict[str, VolumeStructureModel] = {}

    @classmethod
    @abstractmethod
    def load_model(cls) -> VolumeStructureModel:
        """The plugin's fitted model on the CPU; raises ValueError naming ``c3 editor fit`` if missing."""

    @classmethod
    def fit_arrays(cls, limit: int | None = None, config: VolumeStructureConfig | None = None) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """Working-grid training volumes ``(N, C, *grid)``, masks ``(N, S, *grid)`` and a description
        (what ``c3 editor fit`` trains on); a plugin overrides it."""
        raise NotImplementedError(f"{cls.id} does not say what to fit on")

    def model(self, device: torch.device | str) -> VolumeStructureModel:
        """The model on ``device`` (loaded once per editor instance and device)."""

        def load() -> VolumeStructureModel:
            m = load_volume_model(self.weights) if self.weights is not None else type(self).load_model()
            m.index(self.structure)
            if len(self.mask_channels) != len(m.structures):
                raise ValueError(f"{self.id}: {len(self.mask_channels)} mask channel(s) for the model's structures {list(m.structures)}")
            return m

        return model_on_device(self._models, device, load, lambda m, d: m.to(d))

    # -- params ---------------------------------------------------------------------------
    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> VolumeParams:
        if self.direction == "either":
            sign = random_sign(generator)
        else:
            sign = 1.0 if self.direction == "grow" else -1.0
        return VolumeParams(ratio=1.0 + sign * float(severity))

    # -- apply ----------------------------------------------------------------------------
    def _prepare(self, batch: Batch) -> tuple[VolumeStructureModel, Tensor, Tensor]:
        model = self.model(batch.device)
        if batch.image.shape[1] != model.config.channels:
            raise ValueError(f"{self.id}: the model takes {model.config.channels} channel(s), the image has {batch.image.shape[1]}")
        scale = unit_scale(batch.image)
        return model, scale, to_grid((batch.image / scale).float(), model.config.grid)

    def edit_region(self, batch: Batch) -> Tensor:
        """The image voxels an edit may change ``(B, 1, *spatial)`` bool: the blend weight of the
        original's segmented structure (see ``region_vox``), resampled, ``> 0``."""
        model, _, small = self._prepare(batch)
        logits = model.segment_logits(small)
        return self._weight(model, logits, batch.spatial_shape) > 0

    def _weight(self, model: VolumeStructureModel, logits: Tensor, shape: Sequence[int]) -> Tensor:
        s = model.index(self.structure)
        return from_grid(region_weight(logits[:, s : s + 1] > 0, self.region_vox), shape).clamp(0.0, 1.0)

    def _apply(self, batch: Batch, params: Sequence[VolumeParams]) -> Batch:
        for p in params:
            if not (isinstance(p.ratio, int | float) and math.isfinite(p.ratio) and p.ratio > 0):
                raise ValueError(f"{self.id}: ratio must be a finite number > 0, got {p.ratio!r}")
        model, scale, small = self._prepare(batch)
        s = model.index(self.structure)
        ratio = torch.tensor([p.ratio for p in params], dtype=small.dtype, device=batch.device)
        with torch.no_grad():
            delta, logits = model.edit_delta(small, s, ratio)
            weight = self._weight(model, logits, batch.spatial_shape)
            change = from_grid(delta, batch.spatial_shape) * weight * scale
        out = batch.image + change.to(batch.image.dtype)
        if self.lower_bound is not None:
            out = out.clamp_min(self.lower_bound)
        edited = (ratio != 1.0).view(-1)
        touched = (weight > 0) & edited.view(-1, *[1] * (weight.ndim - 1))  # nothing outside the region moves
        out = torch.where(touched, out, batch.image)
        if batch.mask is None:
            return batch.replace(image=out)
        channels = list(self.mask_channels)
        if max(channels) >= batch.mask.shape[1]:
            raise ValueError(f"{self.id}: the mask has {batch.mask.shape[1]} channel(s); the structure needs channel {channels}")
        seg = self.segmented_mask(batch.replace(image=out)).to(batch.mask.dtype)
        mask = torch.where(touched, torch.full_like(batch.mask, float("nan")), batch.mask)
        mask[:, channels] = torch.where(touched, seg, batch.mask[:, channels])
        return batch.replace(image=out, mask=mask)

    @torch.no_grad()
    def segmented_mask(self, batch: Batch) -> Tensor:
        """The frozen segmentor's masks ``(B, S, *spatial)`` in {0, 1} of ``batch``'s volumes at the
        image grid (logits resampled trilinearly, then ``> 0``)."""
        model, _, small = self._prepare(batch)
        return (from_grid(model.segment_logits(small), batch.spatial_shape) > 0).to(batch.image.dtype)

    # -- measurement and validity ---------------------------------------------------------
    @torch.no_grad()
    def measure_volume_ml(self, batch: Batch) -> Tensor:
        """The segmentor's volume of the structure per case ``(B,)`` in mL (float64, CPU)."""
        model, _, small = self._prepare(batch)
        vox = hard_voxels(model.segment_logits(small))[:, model.index(self.structure)].cpu()
        ml = torch.tensor([voxel_volume_ml(sp, batch.spatial_shape, model.config.grid) for sp in batch.spacing], dtype=torch.float64)
        return vox * ml

    def target_volume_ml(self, original: Batch, params: Sequence[VolumeParams]) -> Tensor:
        """The declared effect per case ``(B,)``: ``ratio`` times the original's segmented volume, mL."""
        return self.measure_volume_ml(original) * torch.tensor([p.ratio for p in params], dtype=torch.float64)

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[VolumeParams]) -> list[str | None]:
        """Reject a case whose segmented volume misses the target by more than ``tolerance`` (relative)."""
        target = self.target_volume_ml(original, params)
        got = self.measure_volume_ml(counterfactual)
        reasons: list[str | None] = []
        for t, v, p in zip(target.tolist(), got.tolist(), params):
            if p.ratio == 1.0:
                reasons.append(None)
            elif t <= 0:
                reasons.append(f"{self.id}: no {self.structure} of >= {self.min_volume_ml:g} mL segmented in the original, no volume to set")
            elif abs(v - t) / t > self.tolerance:
                reasons.append(f"{self.id}: {self.structure} volume {v:.3f} mL misses the target {t:.3f} mL by {100 * abs(v - t) / t:.1f} % (> {100 * self.tolerance:g} %)")
            else:
                reasons.append(None)
        return reasons

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d.update(structure=cls.structure, min_volume_ml=cls.min_volume_ml)
        if cls.model_config is not None:
            d.update(grid=list(cls.model_config.grid))
        return d
