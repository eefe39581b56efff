"""Segmentor-guided structure-area editors on chest radiographs (log attenuation): heart area, lung area.

The structure model (see :mod:`c3_core.editors.structure`) is fitted on the ``cxr.demo`` training
split at a 64 x 64 working grid: a segmentor of lungs (mask channel 0) and heart (channel 1), a
conditional VAE conditioned on both area fractions, then Seg-CFT fine-tuning of its decoder
against the frozen segmentor (the soft area moves by ``ratio - 1`` times the segmented area; see
:func:`c3_core.editors.structure.shifted_target`). Model units are log attenuation / 4 (the
reference display window).
Weights are cached as safetensors in the C3 cache on first use (trained on the CPU, seeded).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from c3_core.batch import collate
from c3_core.domains import IntensityDomain
from c3_core.editors.structure import (
    FineTuneConfig,
    StructureAreaEditor,
    StructureModel,
    StructureModelConfig,
    fit_structure_model,
    mask_to_grid,
    to_grid,
)

STRUCTURES = ("lungs", "heart")
MASK_CHANNELS = (0, 1)  # cxr.demo mask channels of the structures above
INTENSITY_SCALE = 4.0  # log attenuation -> model units (the reference window [0, 4])
CONFIG = StructureModelConfig(size=64, channels=1, structures=len(STRUCTURES))
TUNE = FineTuneConfig()
SEED = 0
WEIGHTS = "c3_cxr-structure-segcft-v2"  # v2: fine-tuned on the shifted soft-area target (FineTuneConfig.target "shift")


def demo_arrays(split: str, size: int = CONFIG.size, n: int | None = None) -> tuple[Tensor, Tensor, tuple[float, float]]:
    """Working-grid images in model units ``(N, 1, size, size)``, structure masks ``(N, 2, size, size)``
    in {0, 1}, and the cohort's pixel spacing (mm) at the original resolution."""
    from c3_cxr.data.demo import ChestDemo

    ds = ChestDemo(split, n=n)
    batch = collate([ds[i] for i in range(len(ds))])
    spacing = batch.spacing[0]
    if any(sp != spacing for sp in batch.spacing):
        raise ValueError(f"cxr.demo {split}: cases have different pixel spacings")
    u = to_grid(batch.image / INTENSITY_SCALE, size)
    masks = mask_to_grid(batch.mask[:, list(MASK_CHANNELS)], size)  # type: ignore[index]
    return u, masks, (float(spacing[0]), float(spacing[1]))


def train_structure_state(seed: int = SEED, config: StructureModelConfig = CONFIG, tune: FineTuneConfig = TUNE, n: int | None = None) -> dict[str, Tensor]:
    """Fit the structure model on the demo training split on the CPU; its flat state dict."""
    u, masks, _ = demo_arrays("train", config.size, n)
    return fit_structure_model(u, masks, structures=STRUCTURES, config=config, tune=tune, seed=seed).state_dict()


def load_structure_model(train: Callable[[], dict[str, Tensor]] = train_structure_state) -> StructureModel:
    """The cached Seg-CFT structure model on the CPU (trained with ``train`` on first use)."""
    from safetensors.torch import load_file

    from c3_core.cache import cached_weights

    path = cached_weights(WEIGHTS, train)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        raise ValueError(f"{path}: cannot read the structure model ({type(exc).__name__}: {exc}); delete it to retrain") from None
    return StructureModel.from_state_dict(state, CONFIG, STRUCTURES, source=str(path))


class _CxrStructureArea(StructureAreaEditor):
    """Options as :class:`~c3_core.editors.structure.StructureAreaEditor`, plus ``weights`` — a
    ``.safetensors`` file from ``c3 editor fit`` (default: the cached demo model)."""

    modality = "cxr"
    version = "2"  # 2: the generator is fine-tuned on the shifted soft-area target (the border no longer moves ~1.8x too far)
    domain = IntensityDomain.LOG_ATTENUATION
    intensity_offset = 0.0
    intensity_scale = INTENSITY_SCALE
    lower_bound = 0.0  # a line integral is never negative
    mask_channels = MASK_CHANNELS  # edited cases: segmented lungs and heart; the findings channel unknown

    model_config = CONFIG  # what `c3 editor fit` trains
    tune_config = TUNE

    def __init__(self, weights: str | None = None, direction: str = "either", tolerance: float = 0.15, region_px: int | None = 4) -> None:
        super().__init__(direction=direction, tolerance=tolerance, region_px=region_px)
        if weights is not None and not Path(weights).is_file():
            raise ValueError(f"{self.id}: weights file {weights} not found (write one with `c3 editor fit {self.id} --out PATH`)")
        self.weights = weights

    @classmethod
    def load_model(cls) -> StructureModel:
        return load_structure_model()

    def model(self, device: torch.device | str) -> StructureModel:
        if self.weights is None:
            return super().model(device)
        from c3_core.editors.nets import model_on_device
        from c3_core.editors.structure_fit import load_area_model

        path = self.weights
        return model_on_device(self._models, device, lambda: load_area_model(path), lambda m, d: m.to(d))

    @classmethod
    def fit_arrays(cls, limit: int | None = None, size: int = CONFIG.size) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """What ``c3 editor fit`` trains on: the demo training split at ``size`` px."""
        u, masks, spacing = demo_arrays("train", size, limit)
        return u, masks, {"data": "cxr.demo", "split": "train", "structures": list(STRUCTURES), "spacing_mm": spacing}


class CxrHeartArea(_CxrStructureArea):
    id = "cxr.heart_area"
    structure = "heart"
    summary = "set the heart's area (Seg-CFT generator, segmentor-measured)"
    expected_effect = "heart area set to A mm² (A = ratio x the segmented heart area of the original)"


class CxrLungArea(_CxrStructureArea):
    id = "cxr.lung_area"
    structure = "lungs"
    summary = "set the lungs' area (Seg-CFT generator, segmentor-measured)"
    expected_effect = "lung area set to A mm² (A = ratio x the segmented lung area of the original)"
