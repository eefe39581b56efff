"""Held-out shift families: what training never sees, and the fixed shift the test applies.

A :class:`HeldOutShift` names a *family* of operator ids. The source-domain training
neighbourhood is the modality's default neighbourhood without every member that uses one of
them (:func:`training_spec`); the held-out test condition applies :attr:`HeldOutShift.steps`,
a fixed composition of operators at stated severities (each operator's own units), to every
test case, seeded per exam (:func:`shift_spec`), so a case's shifted image does not depend on
batch order.

The built-in choices (:data:`BUILTIN_SHIFTS`) follow the plugins' operator catalogues
(``c3 ops``); a modality without one gets :func:`derived_shift`: its default neighbourhood's
first single-operator member, held out and applied at that operator's most severe listed level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from c3_core.neighbourhood import MemberSpec, NeighbourhoodSpec, StepSpec

SHIFT_SEED = 20_240  # base seed of the held-out shift's per-exam draws (never a training seed)


@dataclass(frozen=True)
class ShiftStep:
    """One operator of the held-out shift at a fixed severity (the operator's units)."""

    op: str
    severity: float
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeldOutShift:
    """A shift family held out of training and the fixed shift applied at test time."""

    modality: str
    name: str
    family: tuple[str, ...]
    steps: tuple[ShiftStep, ...]
    why: str
    derived: bool = False

    def describe(self) -> str:
        """``op @ severity`` for each step, in order."""
        return " + ".join(f"`{s.op}` @ {s.severity:g}" for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality, "name": self.name, "family": list(self.family),
            "steps": [{"op": s.op, "severity": s.severity, "options": dict(s.options)} for s in self.steps],
            "why": self.why, "derived": self.derived,
        }


BUILTIN_SHIFTS: Mapping[str, HeldOutShift] = {
    "cxr": HeldOutShift(
        "cxr", "unseen vendor: tone curve + low dose", ("cxr.tone", "cxr.dose"),
        (ShiftStep("cxr.tone", 0.75), ShiftStep("cxr.dose", 0.12)),
        "another vendor's look-up table (75 % of the vendor range) on a 10 %-dose exposure; "
        "training never sees a tone or dose change",
    ),
    "mri": HeldOutShift(
        "mri", "unseen site: protocol contrast + receive bias", ("mri.contrast", "mri.bias_field"),
        (ShiftStep("mri.contrast", 0.75), ShiftStep("mri.bias_field", 0.2)),
        "a site whose FLAIR protocol differs by 75 % of the admissible TR/TE/TI/flip range, with a "
        "strong coil bias (0.2 log-gain per Legendre term); training never sees a contrast or bias change",
    ),
    "fundus": HeldOutShift(
        "fundus", "unseen camera: response + sensor", ("fundus.camera_response", "fundus.sensor"),
        (ShiftStep("fundus.camera_response", 0.8), ShiftStep("fundus.sensor", 1500.0)),
        "a camera with a different exposure / white balance / tone curve (80 % of the camera-to-camera "
        "range) and a small-pixel sensor (1500 e- full well); training never sees either",
    ),
}


def derived_shift(modality: str, spec: NeighbourhoodSpec, most_severe: float) -> HeldOutShift:
    """The fallback for a modality without a built-in shift: hold out the first single-operator
    member's operator and apply it at ``most_severe`` (its most severe listed level)."""
    for member in spec.members:
        if len(member.steps) == 1:
            op = member.steps[0].op
            return HeldOutShift(
                modality, f"held-out {op}", (op,), (ShiftStep(op, most_severe, dict(member.steps[0].options)),),
                f"derived: the first single-operator member of {spec.source}, at its most severe level",
                derived=True,
            )
    raise ValueError(f"{spec.source}: no single-operator member to hold out for {modality}")


def first_single_operator(spec: NeighbourhoodSpec) -> str | None:
    """The operator id of the spec's first single-step member (None when all are compositions)."""
    return next((m.steps[0].op for m in spec.members if len(m.steps) == 1), None)


def training_spec(spec: NeighbourhoodSpec, shift: HeldOutShift) -> NeighbourhoodSpec:
    """``spec`` without every member that uses an operator of the held-out family.

    Raises ValueError (naming the spec) if nothing would be left to train with.
    """
    family = set(shift.family)
    keep = tuple(m for m in spec.members if not family.intersection(s.op for s in m.steps))
    if not keep:
        raise ValueError(f"{spec.source}: every member uses the held-out family {sorted(family)}")
    return NeighbourhoodSpec(keep, spec.k, spec.seed, f"{spec.source} minus {'/'.join(shift.family)}")


def with_editor_members(spec: NeighbourhoodSpec, editor_ids: Sequence[str], levels: Sequence[float]) -> NeighbourhoodSpec:
    """``spec`` plus one single-step member per editor id at ``levels``, weighted so the editors
    together are drawn as often as one average member of ``spec`` (an editor member is kept as is
    when ``spec`` already has it)."""
    present = {s.op for m in spec.members for s in m.steps}
    new = [e for e in editor_ids if e not in present]
    if not new:
        return spec
    weight = sum(m.weight for m in spec.members) / len(spec.members) / len(new)
    extra = tuple(MemberSpec((StepSpec(op=e, levels=tuple(float(v) for v in levels)),), weight=weight) for e in new)
    return NeighbourhoodSpec(spec.members + extra, spec.k, spec.seed, f"{spec.source} plus editors {'/'.join(new)}")


def shift_spec(shift: HeldOutShift, seed: int = SHIFT_SEED) -> NeighbourhoodSpec:
    """The held-out shift as a one-member, K = 1 neighbourhood with fixed levels."""
    steps = tuple(StepSpec(op=s.op, levels=(float(s.severity),), options=dict(s.options)) for s in shift.steps)
    return NeighbourhoodSpec((MemberSpec(steps),), k=1, seed=seed, source=f"held-out shift {shift.name}")


def spec_to_toml(spec: NeighbourhoodSpec) -> str:
    """TOML text that :meth:`NeighbourhoodSpec.from_toml_string` parses back into ``spec``."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(float(v)) if isinstance(v, float) else str(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {v!r} as TOML")

    def step(s: StepSpec) -> str:
        parts = [f"op = {value(s.op)}"]
        if s.low is not None:
            parts.append(f"severity = {value([s.low, s.high])}")
        if s.levels:
            parts.append(f"levels = {value(list(s.levels))}")
        if s.options:
            parts.append(f"options = {value(dict(s.options))}")
        return "{ " + ", ".join(parts) + " }"

    lines = [f"# {spec.source}", f"k = {spec.k}", f"seed = {spec.seed}", ""]
    for m in spec.members:
        lines += ["[[members]]", f"weight = {value(float(m.weight))}", "steps = ["]
        lines += [f"  {step(s)}," for s in m.steps]
        lines += ["]", ""]
    return "\n".join(lines)
