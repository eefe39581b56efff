"""The plugin-author API of c3-core: everything a plugin imports, from one module.

A plugin imports from here, and its tests from :mod:`c3_core.testing` (the conformance kit)::

    from c3_core.api import Batch, CaseInfo, IntensityDomain, Operator, Severity, SeveritySource, hookimpl

What is listed in ``__all__`` is promised until the next major version; every other module of
c3-core is internal and may change. (The module paths 0.1's guide named — ``c3_core.batch``,
``c3_core.operator``, ``c3_core.plugins.markers`` … — keep working until 1.0; the conformance kit
warns about them with a ``DeprecationWarning`` naming this module.)

Importing this module is cheap: no torch. Each name is imported from its home module on first
access (PEP 562), so a hook module's ``from c3_core.api import hookimpl`` keeps ``c3 plugins``
light, while ``Batch`` or ``Operator`` import torch when an operator module asks for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers and editors; kept equal to _EXPORTS by a test
    from c3_core.batch import Batch, CaseInfo, Sample, collate
    from c3_core.cache import cache_dir, cached_weights
    from c3_core.datapaths import CohortPathError, refuse_duplicate_ids, resolve_inside, stable_id
    from c3_core.domains import Domain, DomainRegistry, IntensityDomain, parse_domain
    from c3_core.editors.concepts import ConceptEditor, ConceptModel, ConceptModelConfig, ConceptSpec, fit_concept_model
    from c3_core.editors.diffusion import DiffusionEditor, DiffusionEditParams, encode_labels
    from c3_core.editors.diffusion_demo import DemoDiffusionEditor
    from c3_core.editors.diffusion_fit import FitSettings, cached_default_model
    from c3_core.editors.diffusion_model import DiffusionConfig, DiffusionModel, model_from_state
    from c3_core.editors.interventions import HealthyControl, LesionOnly, LesionRemoved
    from c3_core.editors.scorer import Scorer, TaskModelScorer
    from c3_core.editors.structure import (
        FineTuneConfig,
        StructureAreaEditor,
        StructureModel,
        StructureModelConfig,
        fit_structure_model,
    )
    from c3_core.editors.structure_stages import TuneSettings
    from c3_core.editors.volume_structure_editor import VolumeStructureEditor
    from c3_core.editors.volume_structure_model import VolumeStructureModel, load_volume_model
    from c3_core.editors.volume_structure_nets import VolumeStructureConfig
    from c3_core.experiment_spec import ExperimentSpec, HeldOutShift, ShiftStep
    from c3_core.functional.photon import photon_counts
    from c3_core.model import ModelBundle, WeightsError, load_state_dict_safely
    from c3_core.operator import Editor, Operator, P, Severity, SeverityError, SeveritySource
    from c3_core.plugins.markers import hookimpl
    from c3_core.plugins.meta import DatasetMeta, EditorMeta, MetricMeta, ModelMeta, OperatorMeta
    from c3_core.plugins.registry import Registry
    from c3_core.reference_models import PoolResNet, SmallCNN
    from c3_core.reference_training import one_thread, seeded_training, train_reference
    from c3_core.seeding import Draws, derive_seed, draw_seed, generator_from_seed, random_sign, uniform, uniform_tensor

# home module -> the names it gives the API
_EXPORTS: dict[str, tuple[str, ...]] = {
    # registering contributions (no torch)
    "c3_core.plugins.markers": ("hookimpl",),
    "c3_core.plugins.registry": ("Registry",),
    "c3_core.plugins.meta": ("DatasetMeta", "EditorMeta", "MetricMeta", "ModelMeta", "OperatorMeta"),
    # cases and what their values mean
    "c3_core.batch": ("Batch", "CaseInfo", "Sample", "collate"),
    "c3_core.domains": ("Domain", "DomainRegistry", "IntensityDomain", "parse_domain"),
    # operators: params, severity, randomness, shared physics kernels
    "c3_core.operator": ("Editor", "Operator", "P", "Severity", "SeverityError", "SeveritySource"),
    "c3_core.seeding": ("Draws", "derive_seed", "draw_seed", "generator_from_seed", "random_sign", "uniform", "uniform_tensor"),
    "c3_core.functional.photon": ("photon_counts",),
    # models and their weights
    "c3_core.model": ("ModelBundle", "WeightsError", "load_state_dict_safely"),
    "c3_core.cache": ("cache_dir", "cached_weights"),
    "c3_core.reference_models": ("PoolResNet", "SmallCNN"),
    "c3_core.reference_training": ("one_thread", "seeded_training", "train_reference"),
    # what a modality's experiments hold out (held-out shifts, budgets, in-domain split)
    "c3_core.experiment_spec": ("ExperimentSpec", "HeldOutShift", "ShiftStep"),
    # cohort loaders that read user files
    "c3_core.datapaths": ("CohortPathError", "refuse_duplicate_ids", "resolve_inside", "stable_id"),
    # the generic editor families a plugin subclasses
    "c3_core.editors.interventions": ("HealthyControl", "LesionOnly", "LesionRemoved"),
    "c3_core.editors.diffusion": ("DiffusionEditParams", "DiffusionEditor", "encode_labels"),
    "c3_core.editors.diffusion_demo": ("DemoDiffusionEditor",),
    "c3_core.editors.diffusion_model": ("DiffusionConfig", "DiffusionModel", "model_from_state"),
    "c3_core.editors.diffusion_fit": ("FitSettings", "cached_default_model"),
    "c3_core.editors.scorer": ("Scorer", "TaskModelScorer"),
    "c3_core.editors.structure": (
        "FineTuneConfig", "StructureAreaEditor", "StructureModel", "StructureModelConfig", "fit_structure_model",
    ),
    "c3_core.editors.volume_structure_editor": ("VolumeStructureEditor",),
    "c3_core.editors.volume_structure_nets": ("VolumeStructureConfig",),
    "c3_core.editors.volume_structure_model": ("VolumeStructureModel", "load_volume_model"),
    "c3_core.editors.structure_stages": ("TuneSettings",),
    "c3_core.editors.concepts": ("ConceptEditor", "ConceptModel", "ConceptModelConfig", "ConceptSpec", "fit_concept_model"),
}

__all__ = [
    "Batch", "CaseInfo", "CohortPathError", "ConceptEditor", "ConceptModel", "ConceptModelConfig", "ConceptSpec",
    "DatasetMeta", "DemoDiffusionEditor", "Draws", "DiffusionConfig", "DiffusionEditParams", "DiffusionEditor", "DiffusionModel", "Domain",
    "DomainRegistry", "Editor", "EditorMeta", "ExperimentSpec", "FineTuneConfig", "FitSettings", "HealthyControl",
    "HeldOutShift", "IntensityDomain", "LesionOnly", "LesionRemoved", "MetricMeta", "ModelBundle", "ModelMeta",
    "Operator", "OperatorMeta", "P", "PoolResNet", "Registry", "Sample", "Scorer", "Severity", "SeverityError", "SeveritySource",
    "ShiftStep", "SmallCNN", "StructureAreaEditor", "StructureModel", "StructureModelConfig", "TaskModelScorer",
    "TuneSettings", "VolumeStructureConfig", "VolumeStructureEditor", "VolumeStructureModel",
    "WeightsError", "cache_dir", "cached_default_model", "cached_weights", "collate", "derive_seed", "draw_seed",
    "encode_labels", "fit_concept_model", "fit_structure_model", "generator_from_seed", "hookimpl",
    "load_state_dict_safely", "load_volume_model", "model_from_state", "one_thread", "parse_domain", "photon_counts", "random_sign", "refuse_duplicate_ids",
    "resolve_inside", "seeded_training", "stable_id", "train_reference", "uniform", "uniform_tensor",
]  # the promise: equal to the names in _EXPORTS (checked by a test)


def _home(name: str) -> str | None:
    return next((module for module, names in _EXPORTS.items() if name in names), None)


def __getattr__(name: str) -> Any:
    module = _home(name)
    if module is None:
        raise AttributeError(f"module 'c3_core.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
