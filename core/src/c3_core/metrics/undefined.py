"""Undefined metrics in JSON summaries: ``null`` in the metric's place, the reason beside it.

The shape (each modality's ``summary.json`` of ``c3 evaluate``, the ``metrics`` of an experiment
run): a metric that is undefined for the cohort is ``null``, and the object's ``"undefined"``
entry holds its reason at the same path::

    {"volume_slope": null,
     "auroc": {"Edema": null, "Effusion": 0.81},
     "utility": {"mean": 0.71, "mean_ci": null, ...},
     "undefined": {
       "volume_slope": "every lesion mask is empty (no lesion volume to regress on)",
       "auroc": {"Edema": "only one class is present (0 positive, 12 negative)"},
       "utility": {"mean_ci": "a bootstrap CI needs at least two cases (1 evaluated)"}}}

Positions in a list (the severity-response points) are written as strings: ``"0"``, ``"1"``, ...
``"undefined"`` is always present, ``{}`` when every metric is defined. Nothing is ever NaN.

Also here: the cohort-level guards the summaries share (:func:`cohort_mean`, :func:`ratio`,
:func:`probability_problem`, ...), each raising :class:`UndefinedMetricError` with its reason.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from c3_core.metrics.errors import UndefinedMetricError

__all__ = [
    "UNDEFINED_KEY",
    "Reasons",
    "attempt",
    "cohort_mean",
    "iter_reasons",
    "non_finite_reason",
    "probability_problem",
    "ratio",
    "reason_at",
    "refuse",
    "undefined_reason",
    "unless",
]

UNDEFINED_KEY = "undefined"
NOT_FINITE = "not a finite number (NaN or inf in the per-case values)"
T = TypeVar("T")
Key = str | int


def refuse(reason: str | None, metric: str) -> None:
    """Raise :class:`UndefinedMetricError` for ``metric`` when there is a ``reason``."""
    if reason is not None:
        raise UndefinedMetricError.because(metric, reason)


def unless(problem: str | None, metric: str, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn``, or, when the cohort has a ``problem``, a function that refuses ``metric`` for it."""

    def guarded() -> T:
        refuse(problem, metric)
        return fn()

    return guarded


def non_finite_reason(values: Tensor, what: str) -> str | None:
    """Why ``values`` (one row per case) cannot be aggregated, or None when they can."""
    if values.shape[0] == 0:
        return "no case was evaluated"
    bad = int((~torch.isfinite(values.reshape(values.shape[0], -1))).any(1).sum())
    if bad:
        return f"{bad} of {values.shape[0]} cases have a non-finite {what} (NaN/inf: see cases.csv)"
    return None


def probability_problem(probs: Tensor) -> str | None:
    """Why a model's probabilities ``(N, C)`` cannot be scored (NaN/inf or outside [0, 1]), or None."""
    bad = int((~(torch.isfinite(probs) & (probs >= 0) & (probs <= 1))).reshape(probs.shape[0], -1).any(1).sum())
    if bad:
        return f"the model gave {bad} of {probs.shape[0]} cases probabilities that are NaN/inf or outside [0, 1]"
    return None


def cohort_mean(values: Tensor, what: str) -> float:
    """The mean of a per-case column; undefined with no case or a non-finite value."""
    refuse(non_finite_reason(values, what), f"the mean {what}")
    return float(values.mean())


def ratio(part: float, whole: float, metric: str, reason: str) -> float:
    """``part / whole``; undefined (for ``reason``) when ``whole`` is zero."""
    refuse(reason if not whole else None, metric)
    return part / whole


def attempt(compute: Callable[[], T]) -> tuple[T | None, str | None]:
    """``(compute(), None)``, or ``(None, reason)`` when the metric is undefined."""
    try:
        return compute(), None
    except UndefinedMetricError as exc:
        return None, exc.reason


class Reasons:
    """The ``"undefined"`` tree of one summary, filled while its metrics are computed."""

    def __init__(self) -> None:
        self._tree: dict[str, Any] = {}

    def add(self, path: Sequence[Key], reason: str) -> None:
        """Record ``reason`` for the metric at ``path``."""
        if not path:
            raise ValueError("a reason needs the path of its metric")
        node = self._tree
        for key in path[:-1]:
            node = node.setdefault(str(key), {})
        node[str(path[-1])] = reason

    def keep(self, path: Sequence[Key], value: T | None, reason: str | None) -> T | None:
        """``value``; when it is None, ``reason`` is recorded at ``path``."""
        if value is None:
            self.add(path, reason or "undefined for this cohort")
        return value

    def compute(self, path: Sequence[Key], fn: Callable[[], T]) -> T | None:
        """``fn()``, or None with the reason recorded when the metric is undefined."""
        value, reason = attempt(fn)
        return self.keep(path, value, reason)

    def finite(self, obj: Any, path: tuple[Key, ...] = ()) -> Any:
        """A copy of ``obj`` (JSON-like) whose NaN/inf floats are None, each with a reason:
        the safety net that keeps a summary writable with ``allow_nan=False``."""
        if isinstance(obj, float) and not math.isfinite(obj):
            self.add(path, NOT_FINITE)
            return None
        if isinstance(obj, Mapping):
            return {k: v if k == UNDEFINED_KEY and not path else self.finite(v, (*path, k)) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.finite(v, (*path, i)) for i, v in enumerate(obj)]
        return obj

    def to_dict(self) -> dict[str, Any]:
        """The tree, for the summary's ``"undefined"`` entry."""
        return copy.deepcopy(self._tree)


def reason_at(tree: Mapping[str, Any] | None, path: Sequence[Key]) -> str | None:
    """The reason at ``path`` in an ``"undefined"`` tree, or None."""
    node: Any = tree or {}
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(str(key))
    return node if isinstance(node, str) else None


def undefined_reason(summary: Mapping[str, Any], *path: Key) -> str | None:
    """Why the metric at ``path`` of ``summary`` is null (None when no reason is given)."""
    tree = summary.get(UNDEFINED_KEY)
    return reason_at(tree if isinstance(tree, Mapping) else None, path)


def iter_reasons(tree: Mapping[str, Any] | None, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every ``(path, reason)`` of an ``"undefined"`` tree, depth first in key order."""
    for key, value in (tree or {}).items():
        if isinstance(value, Mapping):
            yield from iter_reasons(value, (*prefix, str(key)))
        elif isinstance(value, str):
            yield (*prefix, str(key)), value
