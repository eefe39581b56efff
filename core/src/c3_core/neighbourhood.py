"""The counterfactual neighbourhood N(x): a declarative spec, per-case plans, and realisation.

A spec lists *members*; each member is a chain of one or more operator steps with a severity
range or a set of levels (physical units of that operator). For each case, K counterfactuals
are planned; counterfactual k of exam e draws everything from the counter-based streams of
:mod:`c3_core.streams` keyed by (seed, exam id) at counter k, so a case's neighbourhood is the
same whatever the batch size, batch order or number of workers, and a whole batch's draws are
computed in one vectorised pass.

TOML form::

    k = 8
    seed = 0

    [[members]]
    op = "mri.bias_field"
    severity = [0.1, 0.4]     # a range: uniform draw; or levels = [0.1, 0.2, 0.4]
    weight = 1.0

    [[members]]                # a composition: steps applied in order
    weight = 0.5
    steps = [
      { op = "mri.bias_field", levels = [0.2] },
      { op = "mri.rician_noise", severity = [20.0, 10.0], options = { coils = 1 } },
    ]
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo, _CheckedSpacing
from c3_core.operator import Operator, SeverityError
from c3_core.provenance import Provenance, Step, params_from_dict, params_to_dict
from c3_core.seeding import generator_from_seed
from c3_core.streams import UNIT, StepStream, stream_key, stream_words
from c3_core.truth import plan_changes, unknown_like

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class NeighbourhoodSpecError(ValueError):
    """A malformed neighbourhood spec; the message names the file and the member."""


@dataclass(frozen=True)
class StepSpec:
    op: str
    low: float | None = None
    high: float | None = None
    levels: tuple[float, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberSpec:
    steps: tuple[StepSpec, ...]
    weight: float = 1.0


@dataclass(frozen=True)
class NeighbourhoodSpec:
    members: tuple[MemberSpec, ...]
    k: int = 8
    seed: int = 0
    source: str = "<spec>"

    @property
    def operator_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.op for m in self.members for s in m.steps))

    def with_overrides(self, *, k: int | None = None, seed: int | None = None) -> NeighbourhoodSpec:
        return NeighbourhoodSpec(
            members=self.members,
            k=self.k if k is None else _positive_int(k, "k", self.source),
            seed=self.seed if seed is None else int(seed),
            source=self.source,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "seed": self.seed,
            "members": [
                {
                    "weight": m.weight,
                    "steps": [
                        {
                            "op": s.op,
                            **({"severity": [s.low, s.high]} if s.low is not None else {}),
                            **({"levels": list(s.levels)} if s.levels else {}),
                            **({"options": dict(s.options)} if s.options else {}),
                        }
                        for s in m.steps
                    ],
                }
                for m in self.members
            ],
        }

    # -- parsing --------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> NeighbourhoodSpec:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise NeighbourhoodSpecError(f"{p}: cannot read neighbourhood spec ({exc.strerror})") from None
        return cls.from_toml_string(text, source=str(p))

    @classmethod
    def from_toml_string(cls, text: str, source: str = "<string>") -> NeighbourhoodSpec:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise NeighbourhoodSpecError(f"{source}: not valid TOML ({exc})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> NeighbourhoodSpec:
        allowed = {"k", "seed", "members", "description"}
        unknown = set(data) - allowed
        if unknown:
            raise NeighbourhoodSpecError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
        raw_members = data.get("members")
        if not isinstance(raw_members, list) or not raw_members:
            raise NeighbourhoodSpecError(f"{source}: needs at least one [[members]] entry")
        members = tuple(_parse_member(m, i, source) for i, m in enumerate(raw_members))
        k = _positive_int(data.get("k", 8), "k", source)
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise NeighbourhoodSpecError(f"{source}: seed must be an integer, got {seed!r}")
        return cls(members=members, k=k, seed=seed, source=source)


def _positive_int(value: Any, name: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise NeighbourhoodSpecError(f"{source}: {name} must be a positive integer, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise NeighbourhoodSpecError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _parse_step(raw: Any, where: str) -> StepSpec:
    if not isinstance(raw, Mapping):
        raise NeighbourhoodSpecError(f"{where}: a step must be a table, got {raw!r}")
    unknown = set(raw) - {"op", "severity", "levels", "options"}
    if unknown:
        raise NeighbourhoodSpecError(f"{where}: unknown key(s) {sorted(unknown)}")
    op = raw.get("op")
    if not isinstance(op, str) or "." not in op:
        raise NeighbourhoodSpecError(f"{where}: 'op' must be an operator id like 'mri.bias_field', got {op!r}")
    low = high = None
    if "severity" in raw:
        sev = raw["severity"]
        if isinstance(sev, list) and len(sev) == 2:
            a, b = (_number(v, f"{where}.severity") for v in sev)
            low, high = min(a, b), max(a, b)
        elif isinstance(sev, int | float) and not isinstance(sev, bool):
            low = high = _number(sev, f"{where}.severity")
        else:
            raise NeighbourhoodSpecError(f"{where}: severity must be a number or [low, high], got {sev!r}")
    levels: tuple[float, ...] = ()
    if "levels" in raw:
        if low is not None:
            raise NeighbourhoodSpecError(f"{where}: give either 'severity' or 'levels', not both")
        lv = raw["levels"]
        if not isinstance(lv, list) or not lv:
            raise NeighbourhoodSpecError(f"{where}: levels must be a non-empty list of numbers")
        levels = tuple(_number(v, f"{where}.levels") for v in lv)
    options = raw.get("options", {})
    if not isinstance(options, Mapping):
        raise NeighbourhoodSpecError(f"{where}: options must be a table")
    return StepSpec(op=op, low=low, high=high, levels=levels, options=dict(options))


def _parse_member(raw: Any, index: int, source: str) -> MemberSpec:
    where = f"{source}: members[{index}]"
    if not isinstance(raw, Mapping):
        raise NeighbourhoodSpecError(f"{where}: must be a table")
    weight = _number(raw.get("weight", 1.0), f"{where}.weight")
    if weight <= 0:
        raise NeighbourhoodSpecError(f"{where}: weight must be > 0")
    if "steps" in raw:
        if "op" in raw:
            raise NeighbourhoodSpecError(f"{where}: give either 'op' or 'steps', not both")
        steps = raw["steps"]
        if not isinstance(steps, list) or not steps:
            raise NeighbourhoodSpecError(f"{where}: steps must be a non-empty list")
        parsed = tuple(_parse_step(s, f"{where}.steps[{j}]") for j, s in enumerate(steps))
    else:
        step_raw = {k: v for k, v in raw.items() if k != "weight"}
        parsed = (_parse_step(step_raw, where),)
    return MemberSpec(steps=parsed, weight=weight)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedStep:
    operator: Operator[Any]
    severity: float
    params: Any
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    """One planned counterfactual of one case: counterfactual ``index`` of ``exam_id``, drawn from
    member ``member`` of the spec with base seed ``seed``."""

    exam_id: str
    index: int
    member: int
    seed: int
    steps: tuple[PlannedStep, ...]

    @property
    def changes(self) -> frozenset[str]:
        """What any of the plan's steps declares it changes (``"mask"``, ``"label"``, ...)."""
        return plan_changes(self)

    def provenance(self) -> Provenance:
        """The plan's provenance (built once per plan, then reused)."""
        cached = self.__dict__.get("_provenance")
        if cached is None:
            cached = self._build_provenance()
            object.__setattr__(self, "_provenance", cached)
        return cached

    def _build_provenance(self) -> Provenance:
        return Provenance(
            exam_id=self.exam_id,
            index=self.index,
            member=self.member,
            seed=self.seed,
            steps=tuple(
                Step(
                    op_id=s.operator.id,
                    op_version=s.operator.version,
                    severity=s.severity,
                    params=params_to_dict(s.params),
                    options=dict(s.options),
                )
                for s in self.steps
            ),
        )


OperatorFactory = Callable[[str, Mapping[str, Any]], Operator[Any]]


def operators_record(operators: Iterable[Operator[Any]]) -> dict[str, Any]:
    """What a stored result depends on in the operators it drew from: ``operator_versions``
    (``{id: version}``) and, where any check compares a chain with the case as drawn
    (``check_reference == "case"``), ``case_checked`` (their ids), so a resume never mixes outputs
    of two versions of an operator nor decisions made under the two check rules."""
    ops = list(operators)
    case = sorted({op.id for op in ops if op.check_reference == "case"})
    return {"operator_versions": dict(sorted({op.id: str(op.version) for op in ops}.items())),
            **({"case_checked": case} if case else {})}


PLANNED_BLOCKS = 1  # Philox blocks (4 words each) precomputed per plan and step; later ones on demand


def _generator(draws: StepStream) -> torch.Generator:
    """A ``torch.Generator`` for an operator without ``stream_sampling``, seeded from its step's
    stream (so its draws, too, depend only on the spec seed, the exam id and k)."""
    return generator_from_seed(draws.integer(63))


class Neighbourhood:
    """Plans and realises K counterfactuals per case from a :class:`NeighbourhoodSpec`.

    ``make_operator(op_id, options)`` builds an operator instance (the plugin host provides one);
    every step is checked against the operator's severity range when the neighbourhood is built.
    """

    def __init__(self, spec: NeighbourhoodSpec, make_operator: OperatorFactory) -> None:
        self.spec = spec
        self._ops: list[list[Operator[Any]]] = []
        for i, member in enumerate(spec.members):
            chain = []
            for j, step in enumerate(member.steps):
                where = f"{spec.source}: members[{i}].steps[{j}] ({step.op})"
                try:
                    op = make_operator(step.op, step.options)
                except (KeyError, LookupError) as exc:
                    raise NeighbourhoodSpecError(f"{where}: {exc.args[0] if exc.args else exc}") from None
                except TypeError as exc:
                    raise NeighbourhoodSpecError(f"{where}: bad options {dict(step.options)} ({exc})") from None
                try:
                    if step.low is not None:
                        op.severity.check(step.low, where)
                        op.severity.check(step.high, where)  # type: ignore[arg-type]
                    for lv in step.levels:
                        op.severity.check(lv, where)
                except SeverityError as exc:
                    raise NeighbourhoodSpecError(str(exc)) from None
                chain.append(op)
            self._ops.append(chain)
        w = np.array([m.weight for m in spec.members], dtype=np.float64)
        self._cum_weights_array = np.cumsum(w / w.sum())  # a member's share of [0, 1)
        self._steps = self._member_steps()  # resolved once (reseeded copies share members and operators)
        self._depth = max(len(m.steps) for m in spec.members)

    def operator_versions(self) -> dict[str, str]:
        """``{operator id: version}`` of every operator and editor the neighbourhood draws from:
        what a stored result made with it depends on besides the spec (a resumed run or a cached
        result must not mix outputs of two versions of an operator)."""
        return operators_record(self.drawn_operators())["operator_versions"]

    def drawn_operators(self) -> list[Operator[Any]]:
        """Every operator and editor instance of every member's steps, in spec order."""
        return [op for chain in self._ops for op in chain]

    @property
    def k(self) -> int:
        return self.spec.k

    def reseeded(self, seed: int) -> Neighbourhood:
        """The same neighbourhood (operators shared) with base seed ``seed``: fresh draws per
        training epoch without rebuilding the operators."""
        other = copy.copy(self)
        other.spec = self.spec.with_overrides(seed=seed)
        return other

    def operators(self) -> list[Operator[Any]]:
        seen: dict[str, Operator[Any]] = {}
        for chain in self._ops:
            for op in chain:
                seen.setdefault(op.id, op)
        return list(seen.values())

    def check_compatible(self, batch: Batch) -> None:
        """Raise ValueError if any operator cannot take ``batch`` (modality, domain, rank)."""
        for op in self.operators():
            op.check_input(batch)

    # -- planning -------------------------------------------------------------------------
    def _member_steps(self) -> list[list[tuple[StepSpec, Operator[Any], tuple[float, ...], float | None, float | None]]]:
        """Per member, per step: (step spec, operator, levels, low, high). A step's severity is one
        of ``levels`` (the step's, else the operator's), drawn uniformly, or with no levels a
        uniform draw on [low, high) (the step's range, else identity to extreme)."""
        table = []
        for member, chain in zip(self.spec.members, self._ops):
            rows = []
            for step, op in zip(member.steps, chain):
                step = replace(step, options=MappingProxyType(dict(step.options)))  # shared by every plan: read-only
                if step.levels:
                    rows.append((step, op, tuple(step.levels), None, None))
                elif step.low is not None:
                    rows.append((step, op, (), step.low, step.high))
                elif op.severity.levels:
                    rows.append((step, op, tuple(op.severity.levels), None, None))
                else:
                    rows.append((step, op, (), op.severity.identity, op.severity.extreme))
            table.append(rows)
        return table

    def plan_case(self, batch: Batch, index: int) -> list[Plan]:
        """The K plans of case ``index``: a pure function of (spec seed, exam id, k)."""
        return self._plan_cases([batch.case_info(index)])[0]

    def plan(self, batch: Batch) -> list[list[Plan]]:
        """The K plans of every case of ``batch`` (each a pure function of spec seed, exam id and
        k), their draws computed for the whole batch in one vectorised pass."""
        return self._plan_cases([batch.case_info(i) for i in range(batch.size)])

    def _plan_cases(self, infos: Sequence[CaseInfo]) -> list[list[Plan]]:
        """Plans from the counter-based streams of :mod:`c3_core.streams`: counterfactual k of an
        exam reads stream (key, k, 0) for its member and (key, k, s + 1) for its step s (word 0
        the severity, the rest the operator's draws, :class:`~c3_core.streams.StepStream`)."""
        k, base = self.spec.k, self.spec.seed
        for modality in {info.modality for info in infos}:  # sample_params' checks, once per batch
            for op in self.operators():
                if op.modality != modality:
                    raise ValueError(f"{op.id} is a {op.modality} operator; this batch holds {modality} cases")
        keys = [stream_key(base, info.exam_id) for info in infos]
        n = len(infos) * k
        if n == 0:
            return [[] for _ in infos]
        slots = 1 + self._depth  # per plan: its member, then each step
        words = stream_words(
            np.repeat(np.asarray(keys, dtype=np.uint64), k * slots, axis=0),
            np.tile(np.repeat(np.arange(k), slots), len(infos)),
            np.tile(np.arange(slots), n),
            PLANNED_BLOCKS,
        ).reshape(n, slots, PLANNED_BLOCKS * 4)
        members = np.minimum(
            np.searchsorted(self._cum_weights_array, words[:, 0, 0] * UNIT, side="right"), len(self._ops) - 1
        ).tolist()
        words_l = words[:, 1:].astype(np.int64).tolist()  # per plan, per step: its precomputed words
        plans: list[list[Plan]] = []
        r = 0
        for info, key in zip(infos, keys):
            case = []
            for j in range(k):
                member = members[r]
                steps = []
                for s, (step_spec, op, levels, low, high) in enumerate(self._steps[member]):
                    w = words_l[r][s]
                    if levels:
                        sev = levels[(w[0] * len(levels)) >> 32]
                    else:
                        sev = low + (high - low) * (w[0] * UNIT)  # type: ignore[operator]
                    draws = StepStream(key, j, s + 1, w)
                    # sample_params without its checks (the modality is checked above for the batch,
                    # the severity is a level or in the range checked when the neighbourhood was
                    # built), unless a subclass replaced sample_params itself
                    sample = op._sample if type(op).sample_params is Operator.sample_params else op.sample_params
                    params = sample(info, draws if op.stream_sampling else _generator(draws), sev)
                    steps.append(PlannedStep(op, sev, params, step_spec.options))
                case.append(Plan(info.exam_id, j, member, base, tuple(steps)))
                r += 1
            plans.append(case)
        return plans

    # -- realisation ----------------------------------------------------------------------
    def realise(self, batch: Batch, plans: Sequence[Sequence[Plan]]) -> tuple[Batch, list[str | None]]:
        """Apply plans: returns the (B*K)-row batch (row i*K+k) and operator-check rejections (one per row)."""
        cf, rejections, _ = self._realise(batch, plans, beside=False)
        return cf, rejections

    def _realise(
        self, batch: Batch, plans: Sequence[Sequence[Plan]], *, beside: bool
    ) -> tuple[Batch, list[str | None], Tensor | None]:
        """:meth:`realise`; with ``beside``, also the (B + B*K)-row image of the originals followed
        by the counterfactuals, whose rows B: are the returned batch's image (no copy made for it)."""
        k = len(plans[0]) if plans else 0
        flat = [p for case in plans for p in case]
        if any(len(case) != k for case in plans):
            raise ValueError("every case must have the same number of plans")
        if k == 0 or not all(p.steps for p in flat):
            cf, rejections = apply_plans(batch.repeat_interleave(k), flat)
            return cf, rejections, torch.cat([batch.image, cf.image], 0) if beside else None
        # every row is written by its first step, which reads the row from ``batch``: the K copies
        # of each image are never made, and the repeated buffers are this call's own (no clone)
        repeated, stacked = _repeated_without_pixels(batch, k, beside=beside)
        cf, rejections = _apply_plans(repeated, flat, source=batch, k=k)
        return cf, rejections, stacked

    def draw(self, batch: Batch) -> tuple[Batch, list[list[Plan]], list[list[str | None]]]:
        """Plan and realise: ``(counterfactuals (B*K rows), plans (B x K), rejections (B x K))``."""
        _, cf, plans, rejections = self._draw(batch, beside=False)
        return cf, plans, rejections

    def draw_beside(
        self, batch: Batch, *, stack: bool = True
    ) -> tuple[Tensor | None, Batch, list[list[Plan]], list[list[str | None]]]:
        """:meth:`draw`, with the counterfactuals' images written after a copy of the originals':
        ``(images, counterfactuals, plans, rejections)``, ``images`` holding B + B*K rows (the B
        originals, then counterfactual k of case i at row B + i*K + k) and the counterfactuals'
        image being its rows B: (a view). One forward over originals and counterfactuals takes
        ``images`` as it is, with no concatenation. ``stack=False`` (a caller with no such
        forward this time): ``images`` is None and the rest is :meth:`draw`'s."""
        return self._draw(batch, beside=stack)

    def _draw(
        self, batch: Batch, *, beside: bool
    ) -> tuple[Tensor | None, Batch, list[list[Plan]], list[list[str | None]]]:
        plans = self.plan(batch)
        cf, rejections, stacked = self._realise(batch, plans, beside=beside)
        k = self.spec.k
        return stacked, cf, plans, [rejections[i * k : (i + 1) * k] for i in range(batch.size)]


def _repeated_without_pixels(batch: Batch, k: int, *, beside: bool = False) -> tuple[Batch, Tensor | None]:
    """``batch.repeat_interleave(k)`` with an uninitialised image (label, mask, extras, ids and
    spacing repeated as there): for :func:`_apply_plans` with ``source=batch``, which writes every row.
    With ``beside``, that image is rows B: of a (B + B*K)-row tensor whose rows :B are a copy of
    ``batch.image``, returned second (else None)."""
    idx = torch.arange(batch.size, device=batch.image.device).repeat_interleave(k)
    b = batch.size
    rows = b + b * k if beside else b * k
    stacked = torch.empty((rows, *batch.image.shape[1:]), dtype=batch.image.dtype, device=batch.image.device)
    if beside:
        stacked[:b].copy_(batch.image)
    repeated = Batch(
        image=stacked[b:] if beside else stacked,
        exam_ids=tuple(e for e in batch.exam_ids for _ in range(k)),
        modality=batch.modality,
        domain=batch.domain,
        spacing=_CheckedSpacing(s for s in batch.spacing for _ in range(k)),
        label=None if batch.label is None else batch.label.index_select(0, idx.to(batch.label.device)),
        mask=None if batch.mask is None else batch.mask.index_select(0, idx),
        extras={key: v.index_select(0, idx.to(v.device)) for key, v in batch.extras.items()},
    )
    return repeated, stacked if beside else None


def _group_key(step: PlannedStep) -> tuple[str, str]:
    """Steps that run as one batch: same operator id and same options."""
    options = step.options
    return step.operator.id, repr(sorted(options.items())) if options else "[]"


def apply_plans(original: Batch, plans: Sequence[Plan]) -> tuple[Batch, list[str | None]]:
    """Apply ``plans[r]`` to row r of ``original``; rows sharing an operator run as one batch.

    A row's mask is what its last step returned when that step moves pixels (``spatial``) or
    declares ``"mask"`` in ``changes``; its label is what a step declaring ``"label"`` returned.
    A declared mask or label the step returned as None becomes unknown (NaN, or -1 for class
    indices), so no row carries the original's value for something its edit changed. Each step
    sees the mask and label the previous steps left. A step's ``check`` compares its output with
    its input, or with the row of ``original`` when the operator's ``check_reference`` is
    ``"case"`` and no earlier step of the row's plan declared ``changes``; a row's reasons are
    those of all its steps, joined by "; ".

    Steps are batched across positions in the plans: a call applies one operator (with one set
    of options) to every row whose next step it is, and the calls are ordered so that an
    operator runs once all the rows that reach it have (see :func:`_schedule`): with the chains
    of one neighbourhood in a consistent order, each operator is called once. Operators are
    batch-invariant (the conformance kit checks it), so which rows share a call, and in which
    order, does not change a row's result beyond float rounding.
    """
    return _apply_plans(original, plans)


def _apply_plans(
    original: Batch, plans: Sequence[Plan], *, source: Batch | None = None, k: int = 1
) -> tuple[Batch, list[str | None]]:
    """:func:`apply_plans`. With ``source``, ``original`` is ``source.repeat_interleave(k)`` whose
    buffers belong to this call (they are updated in place, not cloned) and whose image need not
    hold pixels: a row's first step reads it from row r // k of ``source`` (the same values) and
    every plan has a first step, so every row of the image is written."""
    if len(plans) != original.size:
        raise ValueError(f"{len(plans)} plans for {original.size} rows")
    if source is None:
        image = original.image.clone()
        mask = None if original.mask is None else original.mask.clone()
        label = None if original.label is None else original.label.clone()
        extras = {key: v.clone() for key, v in original.extras.items()}
    else:
        image, mask, label, extras = original.image, original.mask, original.label, dict(original.extras)
    reasons: list[str | None] = [None] * len(plans)
    cases, case_k = (source, k) if source is not None else (original, 1)  # row r's case: cases[r // case_k]
    # the buffers are updated in place by every call: a call reads its rows (copies, by select)
    # before it writes them back, and the rows of one call are distinct
    current = original.replace(image=image, mask=mask, label=label, extras=extras)
    for rows, at in _schedule(plans):
        op = plans[rows[0]].steps[at[0]].operator
        if source is None or all(at):
            sub = current.select(rows)
        elif not any(at):
            sub = source.select([r // k for r in rows])
        else:  # rows at their first step (pixels still in ``source``) first, then the others
            rows, at = _first_steps_first(rows, at)
            sub = current.select(rows, image=_gathered(source.image, [r // k for r, s in zip(rows, at) if s == 0],
                                                       image, [r for r, s in zip(rows, at) if s > 0]))
        params = [plans[r].steps[s].params for r, s in zip(rows, at)]
        out = op.apply(sub, params)
        for r, why in zip(rows, _step_check(op, at, rows, plans, sub, out, params, cases, case_k)):
            if why is not None:
                reasons[r] = why if reasons[r] is None else f"{reasons[r]}; {why}"
        idx = torch.as_tensor(rows, device=image.device)
        image.index_copy_(0, idx, out.image.to(image.dtype))  # the same writes as image[idx] = ..., faster
        if mask is not None and (op.spatial or "mask" in op.changes):
            mask[idx] = unknown_like(mask[idx]) if out.mask is None else out.mask.to(mask.dtype)
        if op.spatial:
            for key in extras:
                extras[key][idx] = out.extras[key]
        if label is not None and "label" in op.changes:
            label[idx.to(label.device)] = unknown_like(label[idx.to(label.device)]) if out.label is None else out.label.to(label)
    return current, reasons


def _first_steps_first(rows: list[int], at: list[int]) -> tuple[list[int], list[int]]:
    """``rows`` and their step indices reordered: the rows at their first step first (order kept)."""
    order = sorted(range(len(rows)), key=lambda i: at[i] > 0)
    return [rows[i] for i in order], [at[i] for i in order]


def _gathered(first: Tensor, first_rows: list[int], second: Tensor, second_rows: list[int]) -> Tensor:
    """Rows ``first_rows`` of ``first`` followed by rows ``second_rows`` of ``second``, each row
    copied once (into one new tensor)."""
    out = torch.empty((len(first_rows) + len(second_rows), *first.shape[1:]), dtype=first.dtype, device=first.device)
    n = len(first_rows)
    torch.index_select(first, 0, torch.as_tensor(first_rows, device=first.device), out=out[:n])
    torch.index_select(second, 0, torch.as_tensor(second_rows, device=second.device), out=out[n:])
    return out


def _schedule(plans: Sequence[Plan]) -> Iterator[tuple[list[int], list[int]]]:
    """The calls that realise ``plans``: ``(rows, step index of each row)``, rows ascending, all
    of one group key (:func:`_group_key`), each row's steps in their order.

    A call takes every row whose next step has the key; the key chosen is one that no row still
    needs in a later step (so it is not called again), else the first key at the earliest step
    (a neighbourhood whose chains order two operators both ways: no order calls each once).
    Ties go to the key reached first in row order, so the calls are a function of the plans.
    """
    keys = [[_group_key(step) for step in plan.steps] for plan in plans]
    later: dict[tuple[str, str], int] = {}  # per key, how many (row, step) pairs wait behind another step
    ready: dict[tuple[str, str], list[int]] = {}  # per key, the rows whose next step it is
    position = [0] * len(plans)
    for r, row_keys in enumerate(keys):
        if row_keys:
            ready.setdefault(row_keys[0], []).append(r)
        for key in row_keys[1:]:
            later[key] = later.get(key, 0) + 1
    while ready:
        key = next((key for key in ready if not later.get(key)), None)
        if key is None:
            key = min(ready, key=lambda kk: min(position[r] for r in ready[kk]))
        rows = sorted(ready.pop(key))
        yield rows, [position[r] for r in rows]
        for r in rows:
            position[r] += 1
            if position[r] < len(keys[r]):
                following = keys[r][position[r]]
                later[following] -= 1
                ready.setdefault(following, []).append(r)


def _step_check(
    op: Operator[Any], at: list[int], rows: list[int], plans: Sequence[Plan], sub: Batch, out: Batch,
    params: list[Any], cases: Batch, k: int,
) -> list[str | None]:
    """``op.check`` for the call on ``rows`` (row ``rows[i]`` at step ``at[i]``; input ``sub``,
    output ``out``). A ``"case"`` check compares with the case as drawn (row r // k of
    ``cases``; at a first step that is the step's input), except in rows where an earlier step
    declared ``changes`` (an edit whose new truth the case no longer shows): those compare with
    the step's input, as an ``"input"`` check does. Checks are per row, so the two sets of rows
    may be checked in separate calls."""
    if op.check_reference != "case" or not any(at):
        return op.check(sub, out, params)
    edited = [any(step.operator.changes for step in plans[r].steps[:s]) for r, s in zip(rows, at)]
    reasons: list[str | None] = [None] * len(rows)
    for after_edit in (False, True):
        chosen = [i for i, e in enumerate(edited) if e == after_edit]
        if not chosen:
            continue
        whole = len(chosen) == len(rows)  # the usual case: no copies of the step's rows
        ref = (sub if whole else sub.select(chosen)) if after_edit else cases.select([rows[i] // k for i in chosen])
        got = op.check(ref, out if whole else out.select(chosen), params if whole else [params[i] for i in chosen])
        for i, why in zip(chosen, got):
            reasons[i] = why
    return reasons


def replay(original: Batch, provenance: Provenance, make_operator: OperatorFactory) -> Batch:
    """Rebuild a single-case counterfactual from its provenance (bit-for-bit on the same device)."""
    if original.size != 1:
        raise ValueError("replay takes a batch of exactly one case")
    steps = []
    for s in provenance.steps:
        op = make_operator(s.op_id, s.options)
        if op.version != s.op_version:
            raise ValueError(
                f"{s.op_id}: provenance was made with version {s.op_version}, installed is {op.version}"
            )
        steps.append(PlannedStep(op, s.severity, params_from_dict(op.params_type, s.params), s.options))
    plan = Plan(provenance.exam_id, provenance.index, provenance.member, provenance.seed, tuple(steps))
    out, _ = apply_plans(original, [plan])
    return out
