"""Base classes for physics operators and semantic editors.

An operator is split in two, like TorchIO's random/deterministic transforms:

* ``sample_params(info, generator, severity)`` draws one frozen params dataclass for one case,
  in physical units, using only the explicit generator it is given: a ``torch.Generator``, or,
  for an operator that declares ``stream_sampling = True``, the counter-based
  :class:`c3_core.streams.StepStream` the neighbourhood planner hands out (draw through
  :mod:`c3_core.seeding`'s ``uniform``, ``uniform_tensor``, ``draw_seed`` and ``random_sign``,
  which take both);
* ``apply(batch, params)`` is deterministic: the same batch and params give the same bytes.

Subclasses implement ``_sample`` and ``_apply``; the public methods validate inputs first.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Literal, TypeVar

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.domains import IntensityDomain
from c3_core.seeding import Draws

P = TypeVar("P")

CHANGES: Mapping[str, str] = MappingProxyType({
    "mask": "the returned mask describes the edited image (channels the edit cannot state are NaN: unknown)",
    "label": "the returned label is the edited image's expected label (entries the edit cannot state are "
             "NaN, or -1 for class indices: unknown)",
    "structure_area": "a structure's area is set to a declared target (requires 'mask')",
    "structure_volume": "a structure's volume is set to a declared target (requires 'mask')",
})  # the vocabulary of Operator.changes and what each word promises


CHECK_REFERENCES: tuple[str, ...] = ("input", "case")  # values of Operator.check_reference


def check_changes(cls: type) -> None:
    """Raise TypeError when ``cls.changes`` is not a frozenset of :data:`CHANGES` words, overlaps
    ``cls.preserves``, or declares ``structure_area`` or ``structure_volume`` without ``mask``."""
    name = getattr(cls, "id", cls.__name__)
    changes = getattr(cls, "changes", frozenset())
    if not isinstance(changes, frozenset) or not all(isinstance(c, str) for c in changes):
        raise TypeError(f"{name}: changes must be a frozenset of str, got {changes!r}")
    unknown = sorted(changes - set(CHANGES))
    if unknown:
        raise TypeError(f"{name}: unknown changes {unknown} (known: {sorted(CHANGES)})")
    both = sorted(changes & frozenset(getattr(cls, "preserves", frozenset())))
    if both:
        raise TypeError(f"{name}: {both} cannot be both preserved and changed")
    for word in ("structure_area", "structure_volume"):
        if word in changes and "mask" not in changes:
            raise TypeError(f"{name}: a {word} change changes the mask too; declare 'mask'")


class SeverityError(ValueError):
    """A severity value outside an operator's admissible range."""


@dataclass(frozen=True)
class SeveritySource:
    """Where a severity range comes from, so a reader can check that its extreme is plausible.

    * ``quantity`` — the physical quantity the severity measures (e.g. "scatter-to-primary ratio
      at the detector");
    * ``reference`` — a citable source: DOI or URL of a paper, standard or vendor specification,
      or author, title and year;
    * ``derivation`` — a short derivation from physics when no single source gives the number;
    * ``extreme_rationale`` — why the extreme is still an acquisition a site could plausibly make;
    * ``narrowed`` — when the range was cut to what the source supports, the old range and why.

    At least one of ``reference`` and ``derivation`` must be given.
    """

    quantity: str
    reference: str = ""
    derivation: str = ""
    extreme_rationale: str = ""
    narrowed: str = ""

    def __post_init__(self) -> None:
        if not self.quantity.strip():
            raise ValueError("SeveritySource needs the physical quantity")
        if not (self.reference.strip() or self.derivation.strip()):
            raise ValueError(f"SeveritySource for {self.quantity!r} needs a reference or a derivation")

    def describe(self) -> dict[str, str]:
        return {
            "quantity": self.quantity,
            "reference": self.reference,
            "derivation": self.derivation,
            "extreme_rationale": self.extreme_rationale,
            "narrowed": self.narrowed,
        }


@dataclass(frozen=True)
class Severity:
    """An operator's severity axis in physical units.

    ``identity`` is the value at which the operator changes nothing (or least), ``extreme`` the
    most severe value still considered label-preserving. Either may be the larger number
    (e.g. dose fraction: identity 1.0, extreme 0.1). ``source`` says where the admissible range
    comes from (:class:`SeveritySource`); every physics operator must give one (the conformance
    kit checks it).
    """

    name: str
    unit: str
    identity: float
    extreme: float
    levels: tuple[float, ...] = ()
    source: SeveritySource | None = None

    @property
    def low(self) -> float:
        return min(self.identity, self.extreme)

    @property
    def high(self) -> float:
        return max(self.identity, self.extreme)

    def check(self, value: float, where: str) -> float:
        """Return ``value`` as float or raise :class:`SeverityError` naming ``where``."""
        v = float(value)
        if not math.isfinite(v) or v < self.low - 1e-12 or v > self.high + 1e-12:
            raise SeverityError(
                f"{where}: severity {value!r} is outside the admissible range "
                f"[{self.low:g}, {self.high:g}] {self.unit} ({self.name})"
            )
        return v

    def fraction(self, value: float) -> float:
        """Position of ``value`` between identity (0) and extreme (1)."""
        span = self.extreme - self.identity
        return 0.0 if span == 0 else (float(value) - self.identity) / span

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "identity": self.identity,
            "extreme": self.extreme,
            "levels": list(self.levels),
            "source": None if self.source is None else self.source.describe(),
        }


class Operator(ABC, Generic[P]):
    """A physics-grounded acquisition operator for one modality.

    Class attributes every subclass sets:

    * ``id`` — ``"modality.name"``; ``version`` — bump when outputs for the same params change;
    * ``modality``; ``domain`` — the intensity domain it expects and returns;
    * ``spatial`` — True when it moves pixels (then masks and spatial extras move with it);
    * ``preserves`` — what stays valid: ``{"label", "mask"}`` for admissible operators;
    * ``changes`` — what ``apply`` rewrites, drawn from :data:`CHANGES` (default none): a declared
      ``"mask"`` / ``"label"`` comes back describing the edited image (unknown parts NaN, or -1
      for class indices); everything undeclared comes back untouched (a spatial operator's mask
      moves with the image). Disjoint from ``preserves``; checked when the class is defined;
    * ``severity`` — a :class:`Severity`; ``params_type`` — the frozen params dataclass;
    * ``summary`` — one line for the catalogue; ``spatial_dims`` — supported 2 and/or 3;
    * ``stream_sampling`` — True when ``_sample`` draws only through :mod:`c3_core.seeding`'s
      helpers: the neighbourhood planner then gives it counter-based draws (no generator per
      counterfactual); False (the default) gives it a ``torch.Generator`` seeded from its stream.
    * ``check_reference`` — what :meth:`check` gets as ``original`` in a step after the first of
      a composed plan: ``"input"`` (the default), the step's input (the previous steps' output),
      for checks about what this step did (an editor's achieved target); ``"case"``, the case as
      drawn, before the plan's first step, for checks about what the counterfactual kept of the
      case (lesions still visible): the losses of earlier steps then count, so a chain of steps
      that each pass cannot add up to a counterfactual that fails. In a first step both are the
      same rows; after a step that declared ``changes`` (an edit: the case no longer shows the
      row's truth) a ``"case"`` check, too, gets the step's input.
    """

    id: ClassVar[str]
    version: ClassVar[str] = "1"
    modality: ClassVar[str]
    domain: ClassVar[IntensityDomain]
    spatial: ClassVar[bool] = False
    preserves: ClassVar[frozenset[str]] = frozenset({"label", "mask"})
    changes: ClassVar[frozenset[str]] = frozenset()
    severity: ClassVar[Severity]
    params_type: ClassVar[type]
    summary: ClassVar[str] = ""
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    channels: ClassVar[tuple[int, ...] | None] = None  # allowed channel counts, None = any
    kind: ClassVar[Literal["operator", "editor"]] = "operator"
    stream_sampling: ClassVar[bool] = False
    check_reference: ClassVar[Literal["input", "case"]] = "input"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_changes(cls)
        if cls.check_reference not in CHECK_REFERENCES:
            raise TypeError(
                f"{getattr(cls, 'id', cls.__name__)}: check_reference must be one of {CHECK_REFERENCES}, "
                f"got {cls.check_reference!r}"
            )

    # -- public API -----------------------------------------------------------------------
    def sample_params(self, info: CaseInfo, generator: Draws, severity: float) -> P:
        """Draw params for one case at ``severity`` (physical units) from ``generator`` (a
        ``torch.Generator``; a :class:`~c3_core.streams.StepStream` when ``stream_sampling``)."""
        sev = self.severity.check(severity, self.id)
        if info.modality != self.modality:
            raise ValueError(f"{self.id} is a {self.modality} operator; case {info.exam_id} is {info.modality}")
        return self._sample(info, generator, sev)

    def apply(self, batch: Batch, params: Sequence[P]) -> Batch:
        """Deterministically apply per-case ``params`` to ``batch``; returns a new batch."""
        self.check_input(batch)
        if len(params) != batch.size:
            raise ValueError(f"{self.id}: {len(params)} params for a batch of {batch.size}")
        for p in params:
            if not isinstance(p, self.params_type):
                raise TypeError(f"{self.id}: expected {self.params_type.__name__}, got {type(p).__name__}")
        out = self._apply(batch, params)
        if not self.spatial and "mask" not in self.changes and out.mask is not batch.mask:
            raise RuntimeError(f"{self.id} is an intensity operator but replaced the mask (declare 'mask' in changes)")
        if "label" not in self.changes and out.label is not batch.label and not _same_label(out.label, batch.label):
            raise RuntimeError(f"{self.id} changed the label but does not declare 'label' in changes")
        if "label" in self.changes and batch.label is not None and out.label is not None and (
            out.label.shape != batch.label.shape or out.label.dtype != batch.label.dtype
        ):
            raise RuntimeError(f"{self.id}: the returned label must keep the shape and dtype of the input's")
        return out

    def __call__(
        self, batch: Batch, generator: torch.Generator, severity: float | None = None
    ) -> Batch:
        """Sample params for every case from one generator and apply them (convenience)."""
        sev = self.severity.extreme if severity is None else severity
        params = [self.sample_params(batch.case_info(i), generator, sev) for i in range(batch.size)]
        return self.apply(batch, params)

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[P]) -> list[str | None]:
        """Operator-declared validity: a rejection reason per case, or None. Default: all valid.

        ``counterfactual`` is this step's output for ``params``; ``original`` is its input, or the
        case as drawn when ``check_reference == "case"`` (they differ only in a composed plan)."""
        return [None] * original.size

    def check_input(self, batch: Batch) -> None:
        """Raise ValueError when ``batch`` is not something this operator can take."""
        if batch.modality != self.modality:
            raise ValueError(f"{self.id} expects modality {self.modality!r}, got {batch.modality!r}")
        if batch.domain != self.domain:
            raise ValueError(
                f"{self.id} expects intensity domain {self.domain.value!r}, got {batch.domain.value!r}"
            )
        if batch.spatial_dims not in self.spatial_dims:
            raise ValueError(
                f"{self.id} supports {self.spatial_dims}-D images, got {batch.spatial_dims}-D "
                f"shape {tuple(batch.image.shape)}"
            )
        if self.channels is not None and batch.image.shape[1] not in self.channels:
            raise ValueError(
                f"{self.id} expects {self.channels} channel(s), got {batch.image.shape[1]}"
            )

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The catalogue entry: id, version, domain, units, severity range, flags, and what
        ``check`` compares a step's output with (``check_reference``: its input or the case as drawn)."""
        return {
            "id": cls.id,
            "version": cls.version,
            "kind": cls.kind,
            "modality": cls.modality,
            "domain": cls.domain.value,
            "spatial": cls.spatial,
            "preserves": sorted(cls.preserves),
            "changes": sorted(cls.changes),
            "spatial_dims": list(cls.spatial_dims),
            "check_reference": cls.check_reference,
            "severity": cls.severity.describe(),
            "summary": cls.summary,
            "params": [f for f in getattr(cls.params_type, "__dataclass_fields__", {})],
        }

    # -- to implement ---------------------------------------------------------------------
    @abstractmethod
    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> P: ...

    @abstractmethod
    def _apply(self, batch: Batch, params: Sequence[P]) -> Batch: ...


def _same_label(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """True when both are None or hold the same values (NaN equal to NaN) in the same dtype."""
    if a is None or b is None:
        return a is b
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
    return torch.equal(a, b)


class Editor(Operator[P]):
    """A semantic editor (learned or mask-guided). Same contract as :class:`Operator`.

    ``intent`` is ``"admissible"`` (label preserved; passes through the validity gate) or
    ``"interventional"`` (the edit changes the label or a structure on purpose, and
    ``expected_effect`` says how, e.g. ``"lesion removed"``).
    """

    kind: ClassVar[Literal["operator", "editor"]] = "editor"
    intent: ClassVar[Literal["admissible", "interventional"]] = "admissible"
    expected_effect: ClassVar[str] = ""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d.update(intent=cls.intent, expected_effect=cls.expected_effect)
        return d
