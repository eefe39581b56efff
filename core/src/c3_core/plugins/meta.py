"""The meta keys each contribution kind understands: ``registry.add(id, target, summary, **meta)``.

One ``TypedDict`` per kind, the single typed declaration of what a registration may say. The hook
reference (``docs/hooks.md``, section "Meta keys") lists the same keys and types, checked by
``core/tests/test_hook_docs.py``; the conformance kit refuses a key that is not declared here or
a value of the wrong type, so a misspelt ``defualt_model=`` fails a plugin's tests instead of
being ignored. No torch import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, get_type_hints

__all__ = ["DatasetMeta", "EditorMeta", "MetricMeta", "ModelMeta", "OperatorMeta", "meta_problems", "meta_type"]


class OperatorMeta(TypedDict, total=False):
    """``c3_register_operators``: no meta keys (an operator describes itself on its class)."""


class EditorMeta(TypedDict, total=False):
    """``c3_register_editors``: no meta keys (an editor describes itself on its class)."""


class _DatasetRequired(TypedDict):
    task: str  # "multiclass", "multilabel" or "segmentation"


class DatasetMeta(_DatasetRequired, total=False):
    """``c3_register_datasets``: ``task`` is required; the rest are optional."""

    default_model: str  # model id evaluated when none is given
    default_neighbourhood: str  # "package:relative/path.toml" or a file path
    default_teacher: str  # model id of the validity gate's teacher
    default_gate: str  # "package:relative/path.json" of the teacher's calibrated thresholds (c3 gate calibrate)
    accepts_path: bool  # ``source`` may be a CSV file or a folder
    demo: bool  # the embedded demo cohort of its modality
    experiment: str  # "package.module:ATTR" of an ExperimentSpec: held-out shifts, budgets, in-domain split


class ModelMeta(TypedDict, total=False):
    """``c3_register_models``."""

    task: str  # "multiclass", "multilabel" or "segmentation"
    architecture: str  # a name for listings, e.g. "SmallCNN"
    spatial_dims: int  # 2 or 3: the input the conformance kit builds (default 2)
    demo: bool  # the factory makes its own small reference weights for weights="demo"


class MetricMeta(TypedDict, total=False):
    """``c3_register_metrics``."""

    task: str  # the task whose probabilities the score function takes


_BY_KIND: dict[str, type] = {
    "operators": OperatorMeta,
    "editors": EditorMeta,
    "datasets": DatasetMeta,
    "models": ModelMeta,
    "metrics": MetricMeta,
}


def meta_type(kind: str) -> type:
    """The ``TypedDict`` declaring the meta keys of contribution ``kind`` (e.g. ``"datasets"``)."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise ValueError(f"no meta keys declared for contribution kind {kind!r}: add a TypedDict in {__name__}") from None


def meta_problems(kind: str, meta: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``meta`` for ``kind``: unknown keys, missing required keys, wrong types."""
    declared = meta_type(kind)
    hints = get_type_hints(declared)
    problems = []
    for key, value in meta.items():
        if key not in hints:
            known = ", ".join(sorted(hints)) or "none"
            problems.append(f"unknown meta key {key!r} for {kind} (declared: {known})")
        elif not _is(value, hints[key]):
            problems.append(f"meta {key}={value!r} should be {hints[key].__name__}")
    for key in sorted(declared.__required_keys__ - set(meta)):  # type: ignore[attr-defined]
        problems.append(f"{kind} registration needs meta {key!r}")
    return problems


def _is(value: Any, expected: type) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)
