"""What a plugin declares about its modality's experiments: held-out shifts, budgets, in-domain split.

A plugin points its demo dataset's ``experiment`` meta key at an :class:`ExperimentSpec`
(``"package.module:ATTR"``, imported only when an experiment runs or the conformance kit checks
it), so core's applications (``c3 experiment``, a trust study) read every modality the same way
and name none of them. No torch import.

* **Held-out shifts** (:class:`HeldOutShift`): a *family* of operator ids that training never
  sees, and the fixed composition of operators at stated severities (each operator's own units,
  inside its admissible range) applied to every test case. The first is the one ``c3 experiment``
  holds out; a declaration gives at least two, so a study can compare shifts.
* **Budgets**: per experiment size (``"quick"``, ``"default"``, ``"powered"``, ``"full"``), the fields of
  :class:`c3_core.experiments.sizes.Budget` that differ from the size's default for this cohort
  (e.g. ``{"default": {"train_cases": 24, "batch_size": 2}}`` for small 3-D volumes).
* **In-domain split**: the dataset split that holds unseen cases of the training domain
  (``"test"`` unless the plugin's test split is itself another domain).
* **Ensemble members** (``members``): ``"package.module:factory"`` of a function
  ``factory(seed: int, device: str) -> ModelBundle`` that returns the demo model trained the same
  way with another seed (seed 0: the demo model itself). The failure-prediction study uses them
  as the deep-ensemble baseline and as its model seeds; None: the study cannot run the modality.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ShiftStep:
    """One operator of a held-out shift at a fixed severity (the operator's units)."""

    op: str
    severity: float
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeldOutShift:
    """A shift family held out of training and the fixed shift applied at test time.

    ``family`` lists the operator ids training never sees (every member of the training
    neighbourhood using one is dropped); ``steps`` apply in order and use only family operators;
    ``why`` says in a sentence what acquisition the shift stands for. ``derived`` marks a shift
    core made up for a modality that declares none.
    """

    modality: str
    name: str
    family: tuple[str, ...]
    steps: tuple[ShiftStep, ...]
    why: str
    derived: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", tuple(self.family))
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.family or not self.steps:
            raise ValueError(f"held-out shift {self.name!r}: needs a family and at least one step")
        outside = [s.op for s in self.steps if s.op not in self.family]
        if outside:
            raise ValueError(f"held-out shift {self.name!r}: steps {outside} are not in its family {list(self.family)}")
        for s in self.steps:
            if not math.isfinite(float(s.severity)):
                raise ValueError(f"held-out shift {self.name!r}: {s.op} severity must be finite, got {s.severity!r}")

    def describe(self) -> str:
        """``op @ severity`` for each step, in order."""
        return " + ".join(f"`{s.op}` @ {s.severity:g}" for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality, "name": self.name, "family": list(self.family),
            "steps": [{"op": s.op, "severity": s.severity, "options": dict(s.options)} for s in self.steps],
            "why": self.why, "derived": self.derived,
        }


@dataclass(frozen=True)
class ExperimentSpec:
    """One modality's experiment declarations (see the module docstring).

    Attributes:
        shifts: the held-out shifts, all of one modality; the first is the one ``c3 experiment``
            holds out.
        in_domain_split: the split of unseen cases from the training domain.
        in_domain_note: why that split (when it is not ``"test"``).
        budgets: size name -> budget fields that differ from the size's default for this cohort.
        members: ``"package.module:factory"`` of the seeded demo-model factory (see the module docstring).
    """

    shifts: tuple[HeldOutShift, ...]
    in_domain_split: str = "test"
    in_domain_note: str = ""
    budgets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    members: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shifts", tuple(self.shifts))
        if not self.shifts:
            raise ValueError("an experiment spec declares at least one held-out shift")
        modalities = {s.modality for s in self.shifts}
        if len(modalities) != 1:
            raise ValueError(f"an experiment spec's shifts belong to one modality, got {sorted(modalities)}")
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError(f"held-out shift names must be distinct, got {names}")
        if not self.in_domain_split.strip():
            raise ValueError("in_domain_split must name a split")
        for size, fields in self.budgets.items():
            for key, value in fields.items():
                if not isinstance(value, bool | int | float | str):
                    raise ValueError(f"budgets[{size!r}][{key!r}] must be a number or string, got {value!r}")

    @property
    def modality(self) -> str:
        return self.shifts[0].modality

    @property
    def primary(self) -> HeldOutShift:
        """The shift ``c3 experiment`` holds out."""
        return self.shifts[0]

    def budget_fields(self, size: str) -> dict[str, Any]:
        """The budget fields this cohort sets for experiment size ``size`` (empty: the size's default)."""
        return dict(self.budgets.get(size, {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality, "shifts": [s.to_dict() for s in self.shifts],
            "in_domain_split": self.in_domain_split, "in_domain_note": self.in_domain_note,
            "budgets": {k: dict(v) for k, v in self.budgets.items()}, "members": self.members,
        }


def load_experiment_spec(ref: str) -> ExperimentSpec:
    """The :class:`ExperimentSpec` that ``ref`` (``"package.module:ATTR"``) names, imported now.

    Raises ValueError for a malformed reference or another kind of object; an import error
    propagates as it is.
    """
    module_name, sep, attr = str(ref).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"experiment reference {ref!r} must look like 'package.module:ATTR'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, ExperimentSpec):
        raise ValueError(f"{ref} is a {type(obj).__name__}, not a c3_core.experiment_spec.ExperimentSpec")
    return obj
