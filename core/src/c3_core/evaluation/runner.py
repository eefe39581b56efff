"""Evaluate one modality: stream its cohort, draw and gate neighbourhoods, score, summarise."""

from __future__ import annotations

import importlib
import importlib.resources
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from c3_core.batch import collate
from c3_core.evaluation.scoring import GateSettings, score_batch
from c3_core.evaluation.summary import segmentation_case_metrics, summarise
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec, NeighbourhoodSpecError
from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import Contribution

Progress = Callable[[int, int], None]


class EvaluationInputError(ValueError):
    """A bad option or input for an evaluation (maps to the CLI's usage exit code)."""


@dataclass
class ModalityRun:
    modality: str
    dataset: str
    model: str
    task: str
    class_names: tuple[str, ...]
    spec: NeighbourhoodSpec
    gated_by: str
    cases: list[dict[str, Any]] = field(default_factory=list)
    counterfactuals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def resolve_resource(ref: str) -> Path:
    """``"package:relative/path"`` (package data) or a plain filesystem path."""
    if ":" in ref and not Path(ref).exists():
        package, rel = ref.split(":", 1)
        return Path(str(importlib.resources.files(package).joinpath(rel)))
    return Path(ref)


def resolve_dataset(host: PluginHost, modality: str, data: str | None) -> tuple[Contribution, str | None]:
    """The dataset contribution and the ``source`` to pass it."""
    datasets = host.registry("datasets")
    if data is None:
        try:
            return host.demo_dataset(modality), None
        except LookupError as exc:
            raise EvaluationInputError(str(exc)) from None
    if data in datasets:
        c = datasets.get(data)
        if c.modality != modality:
            raise EvaluationInputError(f"--data {data} is a {c.modality} dataset, not {modality}")
        return c, None
    if Path(data).exists():
        for c in datasets.for_modality(modality):
            if c.meta.get("accepts_path"):
                return c, data
        raise EvaluationInputError(f"no installed {modality} dataset loader reads files (--data {data})")
    raise EvaluationInputError(f"--data {data!r} is neither a registered dataset id nor an existing path")


def resolve_model(
    host: PluginHost, modality: str, dataset: Contribution, model: str | None, device: str
) -> tuple[ModelBundle, str]:
    """A model bundle from a registered id, a ``package.module:factory`` or a weights file."""
    default_id = dataset.meta.get("default_model")
    models = host.registry("models")
    if model is None or model in models:
        model_id = model or default_id
        if model_id is None:
            raise EvaluationInputError(f"dataset {dataset.id} names no default model; pass --model")
        c = models.get(model_id)
        weights = "demo" if model is None or c.meta.get("demo") else None
        return c.load()(weights=weights, device=device), model_id
    if Path(model).suffix in {".safetensors", ".pt", ".pth", ".ts"}:
        if not Path(model).is_file():
            raise EvaluationInputError(f"--model {model}: file not found")
        if default_id is None:
            raise EvaluationInputError(f"--model {model}: no default architecture for {modality}")
        return models.get(default_id).load()(weights=model, device=device), f"{default_id}@{Path(model).name}"
    if ":" in model:
        module, attr = model.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise EvaluationInputError(f"--model {model}: cannot import ({exc})") from None
        bundle = factory(device=device)
        if not isinstance(bundle, ModelBundle):
            raise EvaluationInputError(f"--model {model}: factory must return a c3_core.model.ModelBundle")
        return bundle, model
    raise EvaluationInputError(f"--model {model!r}: not a registered model id, weights file or module:factory")


def load_spec(dataset: Contribution, path: str | None, k: int | None, seed: int | None) -> NeighbourhoodSpec:
    ref = path or dataset.meta.get("default_neighbourhood")
    if ref is None:
        raise EvaluationInputError(f"dataset {dataset.id} has no default neighbourhood; pass --neighborhood")
    try:
        spec = NeighbourhoodSpec.from_toml(resolve_resource(ref))
        return spec.with_overrides(k=k, seed=seed)
    except NeighbourhoodSpecError as exc:
        raise EvaluationInputError(str(exc)) from None


def evaluate_modality(
    host: PluginHost,
    modality: str,
    *,
    data: str | None = None,
    model: str | None = None,
    teacher: str | None = None,
    neighbourhood: str | None = None,
    k: int | None = None,
    seed: int | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    workers: int = 0,
    gate: GateSettings | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> ModalityRun:
    """Run one modality end to end; raises :class:`EvaluationInputError` for bad input."""
    started = time.perf_counter()
    gate = gate or GateSettings()
    dataset_c, source = resolve_dataset(host, modality, data)
    spec = load_spec(dataset_c, neighbourhood, k, seed)
    try:
        nb = Neighbourhood(spec, host.make_operator)
    except NeighbourhoodSpecError as exc:
        raise EvaluationInputError(str(exc)) from None
    for op in nb.operators():
        if op.modality != modality:
            raise EvaluationInputError(f"{spec.source}: operator {op.id} is for {op.modality}, not {modality}")
    bundle, model_id = resolve_model(host, modality, dataset_c, model, device)
    teacher_bundle = None
    teacher_id = teacher or dataset_c.meta.get("default_teacher")
    if teacher_id:
        teacher_bundle, teacher_id = resolve_model(host, modality, dataset_c, teacher_id, device)
    dataset = dataset_c.load()(source=source, split="test") if source else dataset_c.load()(split="test")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(n))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    run = ModalityRun(
        modality=modality,
        dataset=dataset_c.id,
        model=model_id,
        task=bundle.task,
        class_names=tuple(bundle.class_names),
        spec=spec,
        gated_by=f"teacher {teacher_id} + operator checks" if teacher_bundle else "operator checks only (no teacher model)",
    )
    raw: list[dict[str, torch.Tensor]] = []
    done = 0
    first = True
    for batch in loader:
        batch = batch.to(device)
        if first:
            try:
                nb.check_compatible(batch)
            except ValueError as exc:
                raise EvaluationInputError(f"{spec.source}: {exc}") from None
            if batch.domain != bundle.input_domain:
                raise EvaluationInputError(
                    f"model {model_id} takes {bundle.input_domain.value} images; dataset {dataset_c.id} gives {batch.domain.value}"
                )
            first = False
        with torch.no_grad():
            cf, plans, rejections = nb.draw(batch)
            cases, cfs, tensors = score_batch(bundle, batch, cf, plans, rejections, gate, teacher_bundle)
            if bundle.task == "segmentation":
                probs = tensors.pop("probs")
                for row, extra in zip(cases, segmentation_case_metrics(probs, batch, gate.threshold)):
                    row.update(extra)
        if bundle.task != "segmentation":
            tensors["label"] = batch.label.cpu()  # type: ignore[union-attr]
        raw.append(tensors)
        run.cases.extend(cases)
        run.counterfactuals.extend(cfs)
        done += batch.size
        if progress:
            progress(done, n)
    if not run.cases:
        raise EvaluationInputError(f"dataset {dataset_c.id} yielded no cases")
    run.summary = summarise(run, raw, seed=spec.seed)
    run.seconds = time.perf_counter() - started
    return run
