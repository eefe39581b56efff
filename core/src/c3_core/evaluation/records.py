"""What one modality's evaluation produced: the record the runner fills and the summary reads.

Apart from both so that neither imports the other (no cycle, ``TYPE_CHECKING`` imports included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from c3_core.neighbourhood import NeighbourhoodSpec


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
    failures: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
