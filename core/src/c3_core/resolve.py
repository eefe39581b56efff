"""Resolving what a command names — datasets, models, neighbourhood specs, package resources —
and the checks every command makes before anything is read or written.

A shared service of the contract layer: evaluation, training, ``generate`` and the editor fits
all resolve ``--data``, ``--model`` and ``--neighborhood`` the same way, so they import this
module rather than each other.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from c3_core.factory_options import FactoryOptionError, convert
from c3_core.model import ModelBundle, WeightsError
from c3_core.neighbourhood import NeighbourhoodSpec, NeighbourhoodSpecError
from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import Contribution


class InputError(ValueError):
    """A bad option or input of a command (maps to the CLI's usage exit code, 2)."""


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
            raise InputError(str(exc)) from None
    if data in datasets:
        c = datasets.get(data)
        if c.modality != modality:
            raise InputError(f"--data {data} is a {c.modality} dataset, not {modality}")
        return c, None
    if Path(data).exists():
        for c in datasets.for_modality(modality):
            if c.meta.get("accepts_path"):
                return c, data
        raise InputError(f"no installed {modality} dataset loader reads files (--data {data})")
    raise InputError(f"--data {data!r} is neither a registered dataset id nor an existing path")


def build_dataset(contribution: Contribution, source: str | None, split: str, options: Mapping[str, Any] | None = None) -> Dataset:
    """The dataset the contribution's factory makes for ``split`` with the user's ``--data-option``s."""
    factory = contribution.load()
    try:
        kwargs = convert(options or {}, factory, "dataset", "--data-option", contribution.id)
    except FactoryOptionError as exc:
        raise InputError(str(exc)) from None
    return factory(source=source, split=split, **kwargs) if source else factory(split=split, **kwargs)


def _load_bundle(c: Contribution, weights: str | None, device: str, options: Mapping[str, Any] | None) -> ModelBundle:
    factory = c.load()
    try:
        kwargs = convert(options or {}, factory, "model", "--model-option", c.id)
    except FactoryOptionError as exc:
        raise InputError(str(exc)) from None
    return factory(weights=weights, device=device, **kwargs)


def _weights_file(model: str) -> Path:
    """``model`` as a readable weights file, or an input error that says why not."""
    p = Path(model)
    try:
        p.stat()
    except PermissionError:
        raise InputError(f"--model {model}: permission denied (cannot reach the weights file)") from None
    except FileNotFoundError:
        raise InputError(f"--model {model}: file not found") from None
    if not p.is_file():
        raise InputError(f"--model {model}: not a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"--model {model}: permission denied (the weights file is not readable)")
    return p


def resolve_model(
    host: PluginHost, modality: str, dataset: Contribution, model: str | None, device: str,
    options: Mapping[str, Any] | None = None, *, require_trained: bool = True, role: str = "--model",
) -> tuple[ModelBundle, str]:
    """A model bundle from a registered id, a ``package.module:factory`` or a weights file.

    With ``require_trained`` a registered architecture built without weights (its factory says
    ``trained=False``) is refused: scoring a randomly initialised network measures nothing.
    """
    default_id = dataset.meta.get("default_model")
    models = host.registry("models")
    if model is None or model in models:
        model_id = model or default_id
        if model_id is None:
            raise InputError(f"dataset {dataset.id} names no default model; pass {role}")
        c = models.get(model_id)
        weights = "demo" if model is None or c.meta.get("demo") else None
        try:
            bundle = _load_bundle(c, weights, device, options)
        except WeightsError:
            if model is not None or dataset.meta.get("demo"):
                raise
            raise InputError(
                f"--data {dataset.id} needs {role}: its default architecture {model_id} has no weights of its own. "
                f"Give trained weights, e.g. `{role} weights.safetensors` (from `c3 train`), or "
                f"`{role} {model_id} --model-option KEY=VALUE` for weights the model can load itself"
            ) from None
        _check_trained(bundle, model_id, role, require_trained)
        return bundle, model_id
    if Path(model).suffix in {".safetensors", ".pt", ".pth", ".ts"}:
        path = _weights_file(model)
        if default_id is None:
            raise InputError(f"{role} {model}: no default architecture for {modality}")
        return _load_bundle(models.get(default_id), str(path), device, options), f"{default_id}@{path.name}"
    if ":" in model:
        if options:
            raise InputError(f"--model-option applies to a registered model id, not {role} {model}")
        module, attr = model.split(":", 1)
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"{role} {model}: cannot import ({exc})") from None
        bundle = factory(device=device)
        if not isinstance(bundle, ModelBundle):
            raise InputError(f"{role} {model}: factory must return a c3_core.model.ModelBundle")
        return bundle, model
    if Path(model).suffix:
        _weights_file(model)  # says "permission denied" / "not found" for a path-like value
    raise InputError(f"{role} {model!r}: not a registered model id, weights file or module:factory")


def _check_trained(bundle: ModelBundle, model_id: str, role: str, required: bool) -> None:
    if required and bundle.trained is False:
        raise InputError(
            f"{role} {model_id}: the network has no trained weights (it would be scored at random). "
            f"Give weights: `{role} weights.safetensors`, `--model-option` for weights the model loads itself "
            f"(see its factory's options), or train some with `c3 train`"
        )


def load_spec(dataset: Contribution, path: str | None, k: int | None, seed: int | None) -> NeighbourhoodSpec:
    ref = path or dataset.meta.get("default_neighbourhood")
    if ref is None:
        raise InputError(f"dataset {dataset.id} has no default neighbourhood; pass --neighborhood")
    try:
        spec = NeighbourhoodSpec.from_toml(resolve_resource(ref))
        return spec.with_overrides(k=k, seed=seed)
    except NeighbourhoodSpecError as exc:
        raise InputError(str(exc)) from None


MAX_COUNTERFACTUALS = 10_000_000


def check_counterfactual_budget(n_cases: int, k: int, limit: int | None, modality: str) -> None:
    """Refuse a request of more than ``limit`` (default :data:`MAX_COUNTERFACTUALS`)
    counterfactuals (cases x K) up front, with the estimate; ``--max-counterfactuals`` raises it."""
    cap = MAX_COUNTERFACTUALS if limit is None else limit
    total = n_cases * k
    if total > cap:
        raise InputError(
            f"{modality}: {n_cases:,} cases x K={k:,} = {total:,} counterfactuals exceeds the limit of {cap:,}; "
            "lower K or --limit, or raise the limit with --max-counterfactuals"
        )
