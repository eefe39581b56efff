"""``mri.lesion_volume``: set the total volume of the MS lesions above a size floor (3-D Seg-CFT).

Working grid: 36 x 40 x 20 voxels at 3 mm for the demo's 72 x 80 x 40 volumes at 1.5 mm (a 2 x 2 x 2
block average; one working voxel is 27 mm³ = 0.027 mL). The demo's one- and two-voxel lesions
(3.4–10 mm³) vanish at that grid, and lesions up to ~50 mm³ keep at most one working voxel, so
the editor's structure is **the lesions of at least 0.05 mL (50 mm³)**: the training masks drop
smaller connected components (26-connectivity) before the block average (``>= 0.5``), the
segmentor learns those, and only they are edited; smaller lesions lie outside the edit region
unless they touch a large one. Model units: the image divided by its own 99th percentile.
The generator's decoder is fine-tuned against the frozen segmentor read as ``sigmoid(4 * logit)``,
whose soft volume moves by ``ratio - 1`` times the segmented volume (``TUNE``: ``target="shift"``,
``sharpness=4``, as the 2-D area editors; version 1 set ``ratio`` times the plain soft volume).

Weights are never trained on first use: fit them with ``c3 editor fit mri.lesion_volume --out
PATH`` and pass ``weights=PATH`` (or write them to the default path in the C3 cache that the
error message names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from c3_core.domains import IntensityDomain
from c3_core.editors.structure_stages import TuneSettings
from c3_core.editors.volume_structure_editor import VolumeStructureEditor, volume_units
from c3_core.editors.volume_structure_kernels import drop_small_components, mask_to_grid, to_grid
from c3_core.editors.volume_structure_model import VolumeStructureModel, load_volume_model
from c3_core.editors.volume_structure_nets import VolumeStructureConfig

STRUCTURES = ("lesion",)
LESION_CHANNEL = 0
MIN_VOLUME_ML = 0.05  # the size floor: lesions under 50 mm³ are neither trained on nor edited
CONFIG = VolumeStructureConfig(grid=(36, 40, 20), gen_epochs=10, seg_epochs=10, reg_epochs=10, batch_size=4)
TUNE = TuneSettings(steps=48, epochs=4, batch_size=4, target="shift", sharpness=4.0)
TRAIN_CASES = 24  # rendered cases of the demo's training sites (A, B); doubled by a left-right flip
WEIGHTS = "c3_mri-lesion-volume-v2"  # v2: fine-tuned on the shifted, sharpened soft-volume target (TUNE)


def default_weights_path() -> Path:
    from c3_core.cache import cache_dir

    return cache_dir() / "weights" / f"{WEIGHTS}.safetensors"


def working_arrays(images: Tensor, masks: Tensor, spacing: tuple[float, float, float], config: VolumeStructureConfig = CONFIG,
                   min_volume_ml: float = MIN_VOLUME_ML) -> tuple[Tensor, Tensor]:
    """Working-grid volumes in model units ``(N, 1, *grid)`` and lesion masks ``(N, 1, *grid)`` in {0, 1}
    (components under ``min_volume_ml`` dropped at the native grid, then block-averaged, ``>= 0.5``)."""
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    kept = torch.stack([drop_small_components(m[LESION_CHANNEL], min_volume_ml / voxel_ml) for m in masks]).unsqueeze(1)
    return to_grid(volume_units(images.float()), config.grid), mask_to_grid(kept, config.grid)


def demo_arrays(split: str = "train", n: int | None = None, config: VolumeStructureConfig = CONFIG, flip: bool = False,
                min_volume_ml: float = MIN_VOLUME_ML) -> tuple[Tensor, Tensor, tuple[float, float, float]]:
    """Working-grid arrays of the ``mri.demo`` split (see :func:`working_arrays`) and its spacing;
    ``flip`` appends the left-right mirror of every case (axis 0 is left-right)."""
    from c3_core.batch import collate
    from c3_mri.data.demo import MriDemo

    ds = MriDemo(split, n=n)
    batch = collate([ds[i] for i in range(len(ds))])
    spacing = tuple(float(s) for s in batch.spacing[0])
    u, m = working_arrays(batch.image, batch.mask, spacing, config, min_volume_ml)  # type: ignore[arg-type]
    if flip:
        u, m = torch.cat([u, u.flip(2)]), torch.cat([m, m.flip(2)])
    return u, m, spacing  # type: ignore[return-value]


def fit_arrays(limit: int | None = None, config: VolumeStructureConfig = CONFIG) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """What ``c3 editor fit mri.lesion_volume`` trains on (demo training sites, flipped) and a description."""
    n = TRAIN_CASES if limit is None else min(int(limit), TRAIN_CASES)
    u, m, spacing = demo_arrays("train", n, config, flip=True)
    return u, m, {"data": "mri.demo", "split": "train", "cases": n, "flip": True, "spacing_mm": spacing}


class MriLesionVolume(VolumeStructureEditor):
    id = "mri.lesion_volume"
    modality = "mri"
    version = "2"  # 2: fine-tuned on the shifted soft volume of sigmoid(4 * logit) (version 1: ratio x the plain soft volume)
    domain = IntensityDomain.MAGNITUDE
    structure = "lesion"
    mask_channels = (LESION_CHANNEL,)
    lower_bound = 0.0  # magnitude images are never negative
    min_volume_ml = MIN_VOLUME_ML
    model_config = CONFIG
    tune_settings = TUNE
    summary = "set the volume of the MS lesions of at least 0.05 mL (3-D Seg-CFT generator, segmenter-measured)"
    expected_effect = "lesion volume (lesions >= 0.05 mL) set to V mL (V = ratio x the segmented volume of the original)"

    @classmethod
    def load_model(cls) -> VolumeStructureModel:
        path = default_weights_path()
        if not path.is_file():
            raise ValueError(
                f"{cls.id}: no fitted weights at {path}; fit them with "
                f"`c3 editor fit {cls.id} --out {path}` (or pass weights=PATH of a file it wrote)"
            )
        return load_volume_model(path)

    @classmethod
    def fit_arrays(cls, limit: int | None = None, config: VolumeStructureConfig | None = None) -> tuple[Tensor, Tensor, dict[str, Any]]:
        return fit_arrays(limit, cls.model_config if config is None else config)
