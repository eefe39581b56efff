"""Chest-radiograph concept editors: insert or delete each of the five findings (CARS-style).

The concept model (autoencoder, lung/heart segmentor, one latent direction per finding; see
:mod:`c3_core.editors.concepts`) is trained on the embedded demo cohort's training split at
64 x 64 on first use, deterministically from seed 0 on the CPU, and cached as safetensors under
``c3_core.cache.cache_dir()``. Model units are ``mu / 4`` (the reference display window's upper
end), so a change of 0.25 model units is one line-integral unit.

Regions and preserved anatomy per finding: lung findings (atelectasis, consolidation, edema,
effusion) are edited inside the lungs; cardiomegaly around the heart. Every finding keeps the
structures it does not by definition change: cardiomegaly enlarges the heart (lungs kept),
atelectasis is lung volume loss (heart kept), the others keep both.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from c3_core.cache import cached_weights
from c3_core.domains import IntensityDomain
from c3_core.editors.concepts import (
    ConceptEditor,
    ConceptModel,
    ConceptModelConfig,
    ConceptSpec,
    fit_concept_model,
    to_grid,
)
from c3_core.model import WeightsError

WEIGHTS = "c3_cxr-concepts-v1"
MU_SCALE = 4.0  # model units: mu / MU_SCALE
SEED = 0
ANATOMY = ("lungs", "heart")  # the demo masks' channels 0 and 1
CONFIG = ConceptModelConfig(size=64, channels=1)
CONCEPTS = (
    ConceptSpec("Atelectasis", 0, region=("lungs",), preserve=("heart",)),
    ConceptSpec("Cardiomegaly", 1, region=("heart",), preserve=("lungs",)),
    ConceptSpec("Consolidation", 2, region=("lungs",), preserve=("lungs", "heart")),
    ConceptSpec("Edema", 3, region=("lungs",), preserve=("lungs", "heart")),
    ConceptSpec("Pleural Effusion", 4, region=("lungs",), preserve=("lungs", "heart")),
)


def train_cxr_concept_model(n: int | None = None, device: str = "cpu") -> ConceptModel:
    """Fit the concept model on the demo training split (``n`` cases, default all)."""
    from c3_core.batch import collate
    from c3_cxr.data.demo import ChestDemo

    ds = ChestDemo("train", n=n)
    batch = collate([ds[i] for i in range(len(ds))])
    size = CONFIG.size
    u = to_grid(batch.image / MU_SCALE, size).to(device)
    masks = (to_grid(batch.mask[:, : len(ANATOMY)], size) > 0.5).float().to(device)  # type: ignore[index]
    labels = batch.label.to(device)  # type: ignore[union-attr]
    return fit_concept_model(u, labels, masks, concepts=CONCEPTS, anatomy=ANATOMY, config=CONFIG, seed=SEED)


def load_cxr_concept_model() -> ConceptModel:
    """The cached CXR concept model on the CPU (trained on first use)."""
    from safetensors.torch import load_file

    path = cached_weights(WEIGHTS, lambda: train_cxr_concept_model().state_dict())
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        raise WeightsError(f"{path}: cannot read the CXR concept model ({type(exc).__name__}: {exc}); delete it to retrain") from None
    try:
        return ConceptModel.from_state_dict(state, CONFIG, CONCEPTS, ANATOMY, source=str(path))
    except (ValueError, RuntimeError) as exc:
        raise WeightsError(f"{exc}; delete {path} to retrain" if str(path) in str(exc) else f"{path}: {exc}") from None


class CXRConceptEditor(ConceptEditor):
    """A concept editor on radiographs in log-attenuation ``(B, 1, H, W)``."""

    modality: ClassVar[str] = "cxr"
    domain: ClassVar[IntensityDomain] = IntensityDomain.LOG_ATTENUATION
    channels: ClassVar[tuple[int, ...] | None] = (1,)
    intensity_scale: ClassVar[float] = MU_SCALE
    lower_bound: ClassVar[float | None] = 0.0  # a line integral is never negative
    changes: ClassVar[frozenset[str]] = frozenset({"label", "mask"})
    finding_mask_channels: ClassVar[tuple[int, ...]] = (2,)  # the findings channel: unknown after an edit

    @classmethod
    def load_model(cls) -> ConceptModel:
        return load_cxr_concept_model()


class InsertAtelectasis(CXRConceptEditor):
    id = "cxr.insert_atelectasis"
    concept, sign = "Atelectasis", 1
    summary = "insert atelectasis along its latent concept direction (heart kept)"
    expected_effect = "Atelectasis present"


class DeleteAtelectasis(CXRConceptEditor):
    id = "cxr.delete_atelectasis"
    concept, sign = "Atelectasis", -1
    summary = "delete atelectasis along its latent concept direction (heart kept)"
    expected_effect = "Atelectasis absent"


class InsertCardiomegaly(CXRConceptEditor):
    id = "cxr.insert_cardiomegaly"
    concept, sign = "Cardiomegaly", 1
    summary = "insert cardiomegaly along its latent concept direction (lungs kept)"
    expected_effect = "Cardiomegaly present"


class DeleteCardiomegaly(CXRConceptEditor):
    id = "cxr.delete_cardiomegaly"
    concept, sign = "Cardiomegaly", -1
    summary = "delete cardiomegaly along its latent concept direction (lungs kept)"
    expected_effect = "Cardiomegaly absent"


class InsertConsolidation(CXRConceptEditor):
    id = "cxr.insert_consolidation"
    concept, sign = "Consolidation", 1
    summary = "insert consolidation along its latent concept direction (lungs and heart kept)"
    expected_effect = "Consolidation present"


class DeleteConsolidation(CXRConceptEditor):
    id = "cxr.delete_consolidation"
    concept, sign = "Consolidation", -1
    summary = "delete consolidation along its latent concept direction (lungs and heart kept)"
    expected_effect = "Consolidation absent"


class InsertEdema(CXRConceptEditor):
    id = "cxr.insert_edema"
    concept, sign = "Edema", 1
    summary = "insert edema along its latent concept direction (lungs and heart kept)"
    expected_effect = "Edema present"


class DeleteEdema(CXRConceptEditor):
    id = "cxr.delete_edema"
    concept, sign = "Edema", -1
    summary = "delete edema along its latent concept direction (lungs and heart kept)"
    expected_effect = "Edema absent"


class InsertEffusion(CXRConceptEditor):
    id = "cxr.insert_effusion"
    concept, sign = "Pleural Effusion", 1
    summary = "insert pleural effusion along its latent concept direction (lungs and heart kept)"
    expected_effect = "Pleural Effusion present"


class DeleteEffusion(CXRConceptEditor):
    id = "cxr.delete_effusion"
    concept, sign = "Pleural Effusion", -1
    summary = "delete pleural effusion along its latent concept direction (lungs and heart kept)"
    expected_effect = "Pleural Effusion absent"


EDITORS: tuple[type[CXRConceptEditor], ...] = (
    InsertAtelectasis, DeleteAtelectasis, InsertCardiomegaly, DeleteCardiomegaly, InsertConsolidation,
    DeleteConsolidation, InsertEdema, DeleteEdema, InsertEffusion, DeleteEffusion,
)  # fmt: skip


def intervened_labels(labels: torch.Tensor, editor: type[CXRConceptEditor]) -> torch.Tensor:
    """Multi-label targets ``(B, 5)`` after ``editor``: its finding set to 1 (insert) or 0 (delete)
    (what the editor's returned label holds on every case it edited)."""
    index = next(c.label_index for c in CONCEPTS if c.name == editor.concept)
    out = labels.clone()
    out[:, index] = 1.0 if editor.sign > 0 else 0.0
    return out
