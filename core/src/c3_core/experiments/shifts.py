"""Held-out shift families: what training never sees, and the fixed shift the test applies.

A :class:`HeldOutShift` names a *family* of operator ids. The source-domain training
neighbourhood is the modality's default neighbourhood without every member that uses one of
them (:func:`training_spec`); the held-out test condition applies :attr:`HeldOutShift.steps`,
a fixed composition of operators at stated severities (each operator's own units), to every
test case, seeded per exam (:func:`shift_spec`), so a case's shifted image does not depend on
batch order.

The shifts themselves are the plugins' declarations (:class:`c3_core.experiment_spec.ExperimentSpec`,
pointed at by the demo dataset's ``experiment`` meta key); a modality that declares none gets
:func:`derived_shift`: its default neighbourhood's first single-operator member, held out and
applied at that operator's most severe listed level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from c3_core.experiment_spec import HeldOutShift, ShiftStep
from c3_core.neighbourhood import MemberSpec, NeighbourhoodSpec, StepSpec

__all__ = [
    "SHIFT_SEED", "HeldOutShift", "ShiftStep", "derived_shift", "first_single_operator", "shift_spec",
    "spec_to_toml", "training_spec", "with_editor_members",
]

SHIFT_SEED = 20_240  # base seed of the held-out shift's per-exam draws (never a training seed)


def derived_shift(modality: str, spec: NeighbourhoodSpec, most_severe: float) -> HeldOutShift:
    """The fallback for a modality that declares no shift: hold out the first single-operator
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
