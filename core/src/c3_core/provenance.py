"""Provenance: enough to replay a counterfactual bit-for-bit on the same device."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from c3_core._jsonenc import dumps, dumps_sorted

_ESCAPE = json.encoder.encode_basestring_ascii  # what json.dumps writes a str with


def params_to_dict(params: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-ready dict of a frozen params dataclass (``names``: its field names, when the caller
    has them already)."""
    if names is None:
        if not dataclasses.is_dataclass(params):
            raise TypeError(f"params must be a dataclass instance, got {type(params).__name__}")
        names = [f.name for f in dataclasses.fields(params)]
    return {name: _jsonable(getattr(params, name)) for name in names}


# -- the provenance JSON text: one writer, used by Provenance.to_json and the evaluation's rows --
def step_head(op_id: str, op_version: str, options: Mapping[str, Any]) -> str:
    """The JSON text of a provenance step up to its params (keys sorted, as ``json.dumps(...,
    sort_keys=True)`` writes them): what every step of one operator with one set of options shares."""
    return f'{{"op_id": {dumps(op_id)}, "op_version": {dumps(op_version)}, "options": {dumps_sorted(dict(options))}, "params": '


def step_json(head: str, params: Mapping[str, Any], severity: float) -> str:
    """One step's JSON text from its :func:`step_head` and its JSON-ready params."""
    return step_json_text(head, dumps_sorted(params), severity)


def step_json_text(head: str, params_text: str, severity: float) -> str:
    """One step's JSON text from its :func:`step_head` and its params' JSON text."""
    return f'{head}{params_text}, "severity": {_number(severity)}}}'


def params_json_writer(params_type: type) -> Callable[[Any], str]:
    """A function writing an instance of the params dataclass ``params_type`` as the JSON text
    ``json.dumps(params_to_dict(params), sort_keys=True)``, from a template made here once: the
    sorted field names are written once, and each value as the encoder writes it (``repr`` for
    ints and finite floats, the C string escaper for str, the encoder itself for anything else)."""
    if not dataclasses.is_dataclass(params_type):
        raise TypeError(f"params must be dataclass instances, got {getattr(params_type, '__name__', params_type)}")
    names = sorted(f.name for f in dataclasses.fields(params_type))  # sort_keys: keys in str order
    if not names:
        return lambda params: "{}"
    # field names are identifiers: no '%' to escape in the template
    template = "{" + ", ".join(f"{_ESCAPE(name)}: %s" for name in names) + "}"
    if len(names) == 1:
        name = names[0]
        return lambda params: template % (_value_json(getattr(params, name)),)
    values = attrgetter(*names)  # a tuple of the field values, in ``names`` order
    return lambda params: template % tuple([_value_json(v) for v in values(params)])


def _value_json(value: Any) -> str:
    """``json.dumps(_jsonable(value), sort_keys=True)``, with the usual scalars written directly."""
    kind = type(value)
    if kind is float:
        return repr(value) if value - value == 0.0 else dumps(value)  # finite: x - x == 0
    if kind is int:
        return repr(value)
    if kind is str:
        return _ESCAPE(value)
    return dumps_sorted(_jsonable(value))


def record_json(exam_id: str, index: int, member: int, seed: int, steps: Sequence[str]) -> str:
    """A provenance record's JSON text from its steps' (:func:`step_json`): equal to
    ``json.dumps(Provenance(...).to_dict(), sort_keys=True)``."""
    return (f'{{"exam_id": {_string(exam_id)}, "index": {_number(index)}, "member": {_number(member)}, '
            f'"seed": {_number(seed)}, "steps": [{", ".join(steps)}]}}')


def _string(value: str) -> str:
    """``json.dumps`` of a str (its C escaper, called directly)."""
    return _ESCAPE(value) if type(value) is str else dumps(value)


def _number(value: Any) -> str:
    """``json.dumps`` of an int or float, as its encoder writes them (``repr``; NaN and the
    infinities as ``NaN``, ``Infinity``, ``-Infinity``), without the encoder's per-call cost."""
    kind = type(value)
    if kind is int or (kind is float and value - value == 0.0):  # finite floats: x - x == 0
        return repr(value)
    return dumps(value)


def params_from_dict(params_type: type, data: dict[str, Any]) -> Any:
    """Rebuild a params dataclass from :func:`params_to_dict` output (lists become tuples)."""
    names = {f.name for f in dataclasses.fields(params_type)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{params_type.__name__}: unknown parameter(s) {sorted(unknown)}")
    return params_type(**{k: _tuplify(v) for k, v in data.items()})


_SCALARS = frozenset({float, int, str, bool, type(None)})


def _jsonable(value: Any) -> Any:
    if type(value) in _SCALARS:  # the common case, returned as below
        return value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if hasattr(value, "value"):  # Enum
        return value.value
    raise TypeError(f"parameter value of type {type(value).__name__} is not JSON-serialisable")


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


@dataclass(frozen=True)
class Step:
    """One operator application inside a counterfactual."""

    op_id: str
    op_version: str
    severity: float
    params: dict[str, Any]
    options: dict[str, Any]


@dataclass(frozen=True)
class Provenance:
    """How one counterfactual was made: the case, its index, its seed and the operator chain.

    ``seed`` is the neighbourhood's base seed: with the exam's stable id and ``index`` it names
    the counter-based stream the plan was drawn from (:mod:`c3_core.streams`); the steps' params
    alone are what a replay needs."""

    exam_id: str
    index: int
    member: int
    seed: int
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "exam_id": self.exam_id,
            "index": self.index,
            "member": self.member,
            "seed": self.seed,
            "steps": [  # flat copies: params and options hold JSON values already (no deep recursion)
                {"op_id": s.op_id, "op_version": s.op_version, "severity": s.severity,
                 "params": dict(s.params), "options": dict(s.options)}
                for s in self.steps
            ],
        }

    def to_json(self) -> str:
        """``json.dumps(self.to_dict(), sort_keys=True)``."""
        steps = [step_json(step_head(s.op_id, s.op_version, s.options), s.params, s.severity) for s in self.steps]
        return record_json(self.exam_id, self.index, self.member, self.seed, steps)

    @property
    def label(self) -> str:
        """A short human label: ``op@severity + op@severity``."""
        return " + ".join(f"{s.op_id}@{s.severity:g}" for s in self.steps)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        steps = tuple(
            Step(
                op_id=s["op_id"],
                op_version=str(s["op_version"]),
                severity=float(s["severity"]),
                params=dict(s["params"]),
                options=dict(s.get("options", {})),
            )
            for s in data["steps"]
        )
        return cls(
            exam_id=str(data["exam_id"]),
            index=int(data["index"]),
            member=int(data["member"]),
            seed=int(data["seed"]),
            steps=steps,
        )
