"""Masks and labels of edited images: the "unknown" encoding and what a counterfactual's truth is.

An operator or editor that declares ``"mask"`` or ``"label"`` in ``changes``
(:data:`c3_core.operator.CHANGES`) returns the mask / label of the *edited* image. What it cannot
state it marks unknown, never leaving the original's value in place:

* masks (float): the channel is NaN;
* multi-label targets (float): the entry is NaN (the ignore value multi-label metrics already skip);
* class indices (int64): the row is :data:`UNKNOWN_CLASS` (-1, never a valid class).

Consumers that use a counterfactual's label or mask as truth must use only the known parts
(:func:`label_known`, :func:`mask_known`); those that compare f(x') with f(x) must skip a
counterfactual whose plan changed the truth (:func:`truth_change`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

UNKNOWN_CLASS = -1


def unknown_like(values: Tensor) -> Tensor:
    """A tensor like ``values`` holding only the unknown value (NaN, or -1 for integers)."""
    if values.is_floating_point():
        return torch.full_like(values, float("nan"))
    return torch.full_like(values, UNKNOWN_CLASS)


def set_unknown(values: Tensor, rows: Tensor, columns: Sequence[int] | None = None) -> Tensor:
    """``values`` with rows ``rows (B,)`` bool made unknown: only ``columns`` of axis 1 when given
    (mask channels, multi-label entries); an integer row is always unknown whole."""
    sel = rows.to(device=values.device, dtype=torch.bool).view(-1, *[1] * (values.ndim - 1)).expand_as(values)
    if columns is not None and values.is_floating_point() and values.ndim >= 2:
        pick = torch.zeros(values.shape[1], dtype=torch.bool, device=values.device)
        pick[list(columns)] = True
        sel = sel & pick.view(1, -1, *[1] * (values.ndim - 2))
    return torch.where(sel, unknown_like(values), values)


def label_known(label: Tensor) -> Tensor:
    """Elementwise: True where the label states a value (not NaN, not :data:`UNKNOWN_CLASS`)."""
    return ~torch.isnan(label) if label.is_floating_point() else label != UNKNOWN_CLASS


def mask_known(mask: Tensor) -> Tensor:
    """``(B, M)``: True for every mask channel that holds no NaN (the channel describes the image)."""
    return ~torch.isnan(mask).flatten(2).any(2)


def plan_changes(plan: Any) -> frozenset[str]:
    """Everything any step of ``plan`` (a :class:`~c3_core.neighbourhood.Plan`) declares it changes."""
    out: frozenset[str] = frozenset()
    for step in plan.steps:
        out |= getattr(step.operator, "changes", frozenset())
    return out


def truth_field(task: str) -> str:
    """What a model of ``task`` is judged against: ``"mask"`` (segmentation) or ``"label"``."""
    return "mask" if task == "segmentation" else "label"


def truth_change(plan: Any, task: str) -> str | None:
    """Why a counterfactual of ``plan`` is no pair for ``task`` (its edit changed the truth), or None."""
    field = truth_field(task)
    for step in plan.steps:
        if field in getattr(step.operator, "changes", frozenset()):
            return f"{step.operator.id} changes the {field}: the edited image's truth is not the original's"
    return None


def truth_record(plan: Any, label: Tensor | None, mask: Tensor | None) -> dict[str, Any]:
    """What the record of one written counterfactual (``label``/``mask``: its row, no batch axis)
    says about its truth: ``changes`` (sorted); for a changed label, ``expected_label`` (unknown
    entries, or an unknown class, are ``null``); for a changed mask, ``mask``: ``"edited"`` when
    every channel is known, else ``"partly_unknown"``, and ``mask_channels_known``."""
    changes = plan_changes(plan)
    out: dict[str, Any] = {"changes": sorted(changes)}
    if "label" in changes and label is not None:
        if label.is_floating_point():
            out["expected_label"] = [None if v != v else float(v) for v in label.double().flatten().tolist()]
        else:
            value = int(label.flatten()[0])
            out["expected_label"] = None if value == UNKNOWN_CLASS else value
    if "mask" in changes and mask is not None:
        channels = mask_known(mask.unsqueeze(0))[0].tolist()
        out["mask"] = "edited" if all(channels) else "partly_unknown"
        out["mask_channels_known"] = [bool(c) for c in channels]
    return out
