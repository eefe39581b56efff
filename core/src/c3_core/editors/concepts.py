"""Concept perturbation (after CARS): insert or delete a finding along a latent concept direction.

For one case ``x`` (an image in the editor's intensity domain) the edit is

1. ``u = (x - offset) / scale`` (model units), resampled to the working grid ``size x size``;
2. ``z = E(u)``; ``z' = z + sign * alpha * sigma_v * v + jitter`` where ``v`` is the unit concept
   direction, ``sigma_v`` the within-class standard deviation of the latent codes along ``v``
   (so ``alpha`` is in *latent standard deviations*) and ``jitter`` a small latent noise
   orthogonal to ``v``;
3. ``delta = D(z') - D(z)``: the decoder *difference*, so the autoencoder's reconstruction error
   cancels and an ``alpha = 0`` edit is the identity;
4. ``w = feather(dilate(region))`` from the anatomy segmentor's masks of the original: ``w`` is 1 on
   the finding's region and exactly 0 farther than ``dilate_px + 4 * feather_px`` working pixels away;
5. ``x' = x + scale * upsample(w * delta)``: nothing changes outside the region's support.

Concept directions (one per finding, from the training cohort's latent codes ``Z`` and the
finding's labels ``y``): the difference of class-conditional means ``mu_1 - mu_0`` (CARS moves a
case's feature vector towards the finding's class), optionally the normal of an L2-regularised
logistic probe, then made orthogonal to the latent directions that predict the area of each
anatomy structure the finding must keep (ridge regression of the area on ``Z``), so moving along
``v`` does not, to first order, grow or shrink the lungs or heart.

The editor's ``check`` segments original and counterfactual and rejects a case whose preserved
anatomy has ``IoU < tau``, or that changed outside the region's support.

The pieces live in one-job modules, all re-exported here: ``concepts_kernels`` (grids, regions,
latent shift, IoU), ``concepts_directions``, ``concepts_nets`` (networks, config, concept spec),
``concepts_model`` (the fitted model and its edit) and ``concepts_training``.

Randomness: network initialisation, shuffling and jitter come only from explicit generators.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.editors.concepts_directions import (
    mean_difference_direction,
    probe_direction,
    project_out,
    ridge_direction,
    within_class_std,
)
from c3_core.editors.concepts_kernels import dilate, feather, from_grid, mask_iou, shift_latent, soft_region, to_grid
from c3_core.editors.concepts_model import ConceptModel, EditResult, concept_edit
from c3_core.editors.concepts_nets import (
    AnatomySegmentor,
    ConceptAutoencoder,
    ConceptModelConfig,
    ConceptSpec,
    DirectionMethod,
)
from c3_core.editors.concepts_training import encode_all, fit_concept_model, train_autoencoder, train_segmentor
from c3_core.editors.nets import model_on_device
from c3_core.operator import Editor, Severity
from c3_core.seeding import Draws, draw_seed, generator_from_seed
from c3_core.truth import set_unknown

__all__ = [  # the editor, and every piece this module held before the split (imported from here)
    "AnatomySegmentor", "ConceptAutoencoder", "ConceptEditor", "ConceptModel", "ConceptModelConfig", "ConceptParams",
    "ConceptSpec", "DirectionMethod", "EditResult", "concept_edit", "dilate", "encode_all", "feather",
    "fit_concept_model", "from_grid", "mask_iou", "mean_difference_direction", "probe_direction", "project_out",
    "ridge_direction", "shift_latent", "soft_region", "to_grid", "train_autoencoder", "train_segmentor",
    "within_class_std",
]  # fmt: skip


@dataclass(frozen=True)
class ConceptParams:
    """``alpha``: shift along the concept direction, latent standard deviations (>= 0; the editor's
    sign says insert or delete). ``jitter``: latent noise orthogonal to the direction, in units of
    the cohort's per-dimension latent standard deviation. ``noise_seed``: its realisation."""

    alpha: float
    jitter: float
    noise_seed: int


class ConceptEditor(Editor[ConceptParams]):
    """Insert (``sign = +1``) or delete (``sign = -1``) the finding ``concept`` (see module docstring).

    Plugin subclasses set ``id``, ``modality``, ``domain``, ``concept``, ``sign``, ``summary``,
    ``expected_effect``, the affine map to model units (``intensity_offset``, ``intensity_scale``),
    an optional ``lower_bound`` of the domain, and implement :meth:`load_model` (CPU).

    Options: ``tau`` — the anatomy IoU every preserved structure must keep; ``jitter`` — the
    latent noise scale drawn into each case's params; ``dilate_px`` / ``feather_px`` — the region
    margin on the working grid.

    Changes: on every case with ``alpha > 0`` the label's column of the finding
    (:attr:`ConceptSpec.label_index`) becomes 1 (insert) or 0 (delete) — multi-label targets only;
    the mask channels that outline findings (``finding_mask_channels``; a subclass with any
    declares ``"mask"`` in ``changes`` too) become unknown (NaN), the anatomy channels are kept
    (:meth:`check` rejects a case whose preserved anatomy moved).
    """

    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only

    intent: ClassVar[Literal["admissible", "interventional"]] = "interventional"
    version: ClassVar[str] = "1"
    preserves: ClassVar[frozenset[str]] = frozenset()  # the finding changes: label, and its mask, no longer hold
    changes: ClassVar[frozenset[str]] = frozenset({"label"})
    finding_mask_channels: ClassVar[tuple[int, ...]] = ()
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    severity: ClassVar[Severity] = Severity("concept_shift", "latent standard deviations", 0.0, 4.0, (1.0, 2.0, 3.0, 4.0))
    params_type: ClassVar[type] = ConceptParams
    concept: ClassVar[str]
    sign: ClassVar[int]
    intensity_offset: ClassVar[float] = 0.0
    intensity_scale: ClassVar[float] = 1.0
    lower_bound: ClassVar[float | None] = None

    def __init__(self, tau: float = 0.8, jitter: float = 0.1, dilate_px: int = 2, feather_px: int = 1) -> None:
        if not 0.0 <= float(tau) <= 1.0:
            raise ValueError(f"{self.id}: tau must be in [0, 1], got {tau!r}")
        if not (math.isfinite(float(jitter)) and float(jitter) >= 0.0):
            raise ValueError(f"{self.id}: jitter must be a finite number >= 0, got {jitter!r}")
        if int(dilate_px) < 0 or int(feather_px) < 0:
            raise ValueError(f"{self.id}: dilate_px and feather_px must be >= 0")
        if self.sign not in (1, -1):
            raise TypeError(f"{type(self).__name__}: sign must be +1 or -1")
        if self.finding_mask_channels and "mask" not in self.changes:
            raise TypeError(f"{type(self).__name__}: finding_mask_channels are edited: declare 'mask' in changes")
        self.tau = float(tau)
        self.jitter = float(jitter)
        self.dilate_px = int(dilate_px)
        self.feather_px = int(feather_px)
        self._models: dict[str, ConceptModel] = {}

    @classmethod
    @abstractmethod
    def load_model(cls) -> ConceptModel:
        """The fitted concept model on the CPU (trained and cached by the plugin on first use)."""

    def model(self, device: torch.device | str) -> ConceptModel:
        """The concept model on ``device`` (loaded once per editor instance and device)."""
        return model_on_device(self._models, device, self.load_model, lambda m, d: m.to(d))

    # -- params ---------------------------------------------------------------------------
    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> ConceptParams:
        return ConceptParams(alpha=float(severity), jitter=self.jitter, noise_seed=draw_seed(generator))

    # -- apply ----------------------------------------------------------------------------
    def _edit(self, batch: Batch, params: Sequence[ConceptParams]) -> tuple[Tensor, EditResult, ConceptModel]:
        model = self.model(batch.device)
        index, spec = model.concept(self.concept)
        dev, dt = batch.device, batch.image.dtype
        shift = torch.tensor([self.sign * p.alpha for p in params], device=dev, dtype=dt) * model.sigma[index]
        noise = torch.stack([
            torch.randn(model.config.latent_dim, generator=generator_from_seed(p.noise_seed)) * p.jitter for p in params
        ]).to(dev, dt) * model.latent_std.to(dt)  # fmt: skip
        u = (batch.image - self.intensity_offset) / self.intensity_scale
        res = concept_edit(
            model, u, index, shift, region=model.anatomy_index(spec.region),
            dilate_px=self.dilate_px, feather_px=self.feather_px, noise=noise,
        )  # fmt: skip
        out = batch.image + (res.change * self.intensity_scale).to(dt)
        if self.lower_bound is not None:
            out = out.clamp_min(self.lower_bound)
        return torch.where(res.weight > 0, out, batch.image), res, model

    def _apply(self, batch: Batch, params: Sequence[ConceptParams]) -> Batch:
        image, _, model = self._edit(batch, params)
        edited = torch.tensor([p.alpha > 0 for p in params], dtype=torch.bool)
        label = None if batch.label is None else self.expected_label(batch.label, edited, model.concept(self.concept)[1].label_index)
        mask = batch.mask
        if mask is not None and "mask" in self.changes:
            if max(self.finding_mask_channels, default=-1) >= mask.shape[1]:
                raise ValueError(f"{self.id}: the mask has {mask.shape[1]} channel(s), findings are in {self.finding_mask_channels}")
            mask = set_unknown(mask, edited, self.finding_mask_channels) if self.finding_mask_channels else mask
        return batch.replace(image=image, label=label, mask=mask)

    def expected_label(self, label: Tensor, edited: Tensor, label_index: int) -> Tensor:
        """Multi-label targets ``(B, F)`` with column ``label_index`` set to 1 (insert) or 0
        (delete) on the rows ``edited (B,)`` bool."""
        if not label.is_floating_point() or label.ndim != 2 or label.shape[1] <= label_index:
            raise ValueError(
                f"{self.id}: moves multi-label column {label_index}; got a label of dtype {label.dtype}, "
                f"shape {tuple(label.shape)}"
            )
        out = label.clone()
        rows = edited.to(label.device)
        out[rows, label_index] = 1.0 if self.sign > 0 else 0.0
        return out

    # -- validity -------------------------------------------------------------------------
    @torch.no_grad()
    def anatomy_iou(self, original: Batch, counterfactual: Batch) -> dict[str, Tensor]:
        """IoU ``(B,)`` of the segmentor's masks of original and counterfactual, per preserved structure."""
        model = self.model(original.device)
        _, spec = model.concept(self.concept)
        size = model.config.size
        a = model.segment(to_grid((original.image - self.intensity_offset) / self.intensity_scale, size))
        b = model.segment(to_grid((counterfactual.image - self.intensity_offset) / self.intensity_scale, size))
        return {name: mask_iou(a[:, i], b[:, i]).cpu() for name, i in zip(spec.preserve, model.anatomy_index(spec.preserve))}

    @torch.no_grad()
    def outside_change(self, original: Batch, counterfactual: Batch) -> Tensor:
        """Max |x' - x| per case where the blend weight of the original is exactly 0 (domain units)."""
        model = self.model(original.device)
        _, spec = model.concept(self.concept)
        u = (original.image - self.intensity_offset) / self.intensity_scale
        anatomy = model.segment(to_grid(u, model.config.size))
        w = from_grid(soft_region(anatomy, model.anatomy_index(spec.region), self.dilate_px, self.feather_px), u.shape[2:])
        w = torch.where(w < 1e-6, torch.zeros_like(w), w)
        diff = (counterfactual.image - original.image).abs() * (w == 0)
        return diff.flatten(1).amax(1).cpu()

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[ConceptParams]) -> list[str | None]:
        """Reject a case whose preserved anatomy has IoU < tau or that changed outside its region."""
        reasons: list[list[str]] = [[] for _ in range(original.size)]
        for name, values in self.anatomy_iou(original, counterfactual).items():
            for i, v in enumerate(values.tolist()):
                if v < self.tau:
                    reasons[i].append(f"{self.id}: {name} IoU {v:.3f} < tau {self.tau:g}")
        for i, v in enumerate(self.outside_change(original, counterfactual).tolist()):
            if v > 0.0:
                reasons[i].append(f"{self.id}: changed by {v:.3g} outside the {self.concept} region")
        return ["; ".join(r) if r else None for r in reasons]

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d.update(concept=cls.concept, sign=cls.sign)
        return d
