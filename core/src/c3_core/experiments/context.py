"""Everything one modality's experiment shares across rows and seeds, resolved once.

The cohort is the modality's embedded demo dataset: its ``train`` split is the source domain;
the in-domain test split, the held-out shift and the budget fields are what the plugin declares in
the :class:`~c3_core.experiment_spec.ExperimentSpec` its demo dataset points at (meta
``experiment``; :func:`declared_experiment`); without one, the split is ``test`` and the shift is
derived (:func:`~c3_core.experiments.shifts.derived_shift`). The evaluation neighbourhood is the dataset's
default one (K = the budget's ``k_eval``); the training neighbourhood is that spec without the
held-out shift family, plus every registered *admissible* editor of the modality at strengths
:data:`EDITOR_LEVELS` (together drawn as often as one average member), so the editor-only ablation
has members. The validity gate's teacher is never the rows' starting point (a model must not
gate itself): the dataset's ``default_teacher`` with its calibrated ``default_gate``, else the
demo reference model where rows start from a random initialisation, else none (operator checks
only); the same for every row, so every row is scored on the same admitted counterfactuals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from c3_core.experiment_spec import ExperimentSpec, load_experiment_spec
from c3_core.experiments.cases import InMemory, Shifted
from c3_core.experiments.shifts import (
    HeldOutShift,
    derived_shift,
    first_single_operator,
    shift_spec,
    training_spec,
    with_editor_members,
)
from c3_core.experiments.sizes import EDITOR_LEVELS, Budget
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec, NeighbourhoodSpecError
from c3_core.plugins.host import PluginHost
from c3_core.shown_paths import portable_source


def admissible_editors(host: PluginHost, modality: str) -> list[str]:
    """Ids of the modality's registered editors whose class declares ``intent = "admissible"``."""
    out = []
    for c in host.registry("editors").for_modality(modality):
        try:
            cls = c.load()
        except Exception:  # noqa: BLE001 - an editor whose extra is not installed is simply not used
            continue
        if getattr(cls, "intent", "") == "admissible":
            out.append(c.id)
    return sorted(out)


class ExperimentInputError(ValueError):
    """A modality cannot be run as asked (maps to exit code 2)."""


@dataclass
class ModalityContext:
    """Data, neighbourhoods, shift and teacher of one modality (see the module docstring)."""

    modality: str
    dataset_id: str
    model_id: str
    task: str
    make_model: Callable[[str | None], ModelBundle]
    make_operator: Callable[..., Any]
    train_set: InMemory
    test_set: InMemory
    shifted_set: Shifted
    in_domain_split: str
    eval_spec: NeighbourhoodSpec
    eval_nb: Neighbourhood
    train_spec: NeighbourhoodSpec
    member_kinds: tuple[frozenset[str], ...]
    teacher: ModelBundle | None
    teacher_id: str | None
    shift: HeldOutShift
    editors_registered: int
    spacing: tuple[float, ...]
    seconds: float
    device: str = "cpu"
    gate: Any = None  # the gate's thresholds (GateSettings); None: the defaults

    def has_members(self, members: str) -> bool:
        """Whether the training spec has any member of that kind (``all``/``operators``/``editors``)."""
        if members == "all":
            return True
        want_editor = members == "editors"
        return any(("editor" in kinds) == want_editor for kinds in self.member_kinds)

    def restricted_spec(self, members: str, k: int) -> NeighbourhoodSpec:
        """The training spec restricted to physics-only (``operators``) or ``editors`` members."""
        if members == "all":
            keep = self.train_spec.members
        else:
            want_editor = members == "editors"
            keep = tuple(m for m, kinds in zip(self.train_spec.members, self.member_kinds) if ("editor" in kinds) == want_editor)
        if not keep:
            raise ExperimentInputError(f"{self.train_spec.source}: no {members} member")
        return NeighbourhoodSpec(keep, k, self.train_spec.seed, f"{self.train_spec.source} [{members}]")

    def operators_record(self) -> dict[str, Any]:
        """:func:`~c3_core.neighbourhood.operators_record` of every operator and editor the runs
        draw from (evaluation, training, shift)."""
        from c3_core.neighbourhood import Neighbourhood, operators_record

        train = Neighbourhood(self.train_spec, self.make_operator)
        return operators_record([*self.eval_nb.drawn_operators(), *train.drawn_operators(),
                                 *self.shifted_set.shift.drawn_operators()])

    def describe(self) -> dict[str, Any]:
        return {
            "modality": self.modality, "dataset": self.dataset_id, "model": self.model_id, "task": self.task,
            "teacher": self.teacher_id, "gate": self.gate.to_dict() if self.gate is not None else None,
            "in_domain_split": self.in_domain_split,
            "n_train": len(self.train_set), "n_test": len(self.test_set),
            "shift": self.shift.to_dict(), "shift_operator_rejections": len(self.shifted_set.rejections),
            "eval_neighbourhood": self.eval_spec.to_dict() | {"source": portable_source(self.eval_spec.source)},
            "train_neighbourhood": self.train_spec.to_dict() | {"source": portable_source(self.train_spec.source)},
            "editors_registered": self.editors_registered, "prepare_seconds": round(self.seconds, 2),
        }


def declared_experiment(host: PluginHost, modality: str) -> ExperimentSpec | None:
    """The :class:`ExperimentSpec` the modality's demo dataset points at (meta ``experiment``,
    ``"package.module:ATTR"``), or None where it declares none; raises :class:`ExperimentInputError`."""
    try:
        dataset_c = host.demo_dataset(modality)
    except LookupError as exc:
        raise ExperimentInputError(str(exc)) from None
    ref = dataset_c.meta.get("experiment")
    if ref is None:
        return None
    try:
        obj = load_experiment_spec(ref)
    except Exception as exc:  # noqa: BLE001 - a broken declaration is reported, not raised through
        raise ExperimentInputError(f"{dataset_c.id}: experiment={ref!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if obj.modality != modality:
        raise ExperimentInputError(f"{dataset_c.id}: experiment={ref!r} declares shifts of {obj.modality}, not {modality}")
    return obj


def held_out_shift(host: PluginHost, modality: str, spec: NeighbourhoodSpec, declared: ExperimentSpec | None) -> HeldOutShift:
    """The declared primary shift, else one derived from ``spec`` (see :func:`derived_shift`)."""
    if declared is not None:
        return declared.primary
    op_id = first_single_operator(spec)
    if op_id is None:
        raise ExperimentInputError(f"{spec.source}: no single-operator member to hold out for {modality}")
    sev = host.make_operator(op_id).severity
    return derived_shift(modality, spec, sev.levels[-1] if sev.levels else sev.extreme)


def experiment_teacher(
    host: PluginHost, dataset_c: Any, model_id: str, make_model: Callable[[str | None], ModelBundle],
    budget: Budget, device: str,
) -> tuple[ModelBundle | None, str | None, Any]:
    """The gate of every row: a teacher that is not the rows' starting point, and its thresholds.

    The dataset's ``default_teacher`` (with the thresholds of its ``default_gate``); without one,
    the demo reference model only when rows start from a random initialisation (``init`` is not
    ``"demo"``); otherwise no teacher (operator checks only).
    """
    from c3_core.evaluation.runner import EvaluationInputError, read_gate_file, resolve_model
    from c3_core.evaluation.scoring import GateSettings

    teacher_id = dataset_c.meta.get("default_teacher")
    if teacher_id and teacher_id != model_id:
        try:
            teacher, teacher_id = resolve_model(host, dataset_c.modality, dataset_c, teacher_id, device, role="teacher")
            ref = dataset_c.meta.get("default_gate")
            return teacher, teacher_id, read_gate_file(ref)[0] if ref else GateSettings()
        except (EvaluationInputError, ValueError, LookupError) as exc:
            raise ExperimentInputError(f"{dataset_c.id}: teacher {teacher_id}: {exc}") from None
    if budget.init != "demo":
        return make_model("demo"), f"{model_id}[demo]", GateSettings()
    return None, None, GateSettings()


def split_of(make_split: Callable[..., Any], split: str, n: int | None) -> Any:
    """The dataset's ``split``, enlarged to ``n`` cases where it holds fewer and its factory takes
    ``n`` (the procedural demo cohorts render case i from (split, i) alone, so the first cases stay
    the same). A factory without ``n`` gives its split as it is (the tables state the cases used)."""
    base = make_split(split=split)
    if n is None or len(base) >= int(n):
        return base
    try:
        return make_split(split=split, n=int(n))
    except TypeError:
        return base


def prepare_context(host: PluginHost, modality: str, budget: Budget, device: str) -> ModalityContext:
    """Resolve and build one modality's shared state; raises :class:`ExperimentInputError`."""
    from c3_core.evaluation.runner import EvaluationInputError, load_spec

    started = time.perf_counter()
    try:
        dataset_c = host.demo_dataset(modality)
        spec = load_spec(dataset_c, None, budget.k_eval, None)
    except (LookupError, EvaluationInputError) as exc:
        raise ExperimentInputError(str(exc)) from None
    model_id = dataset_c.meta.get("default_model")
    models = host.registry("models")
    if model_id is None or model_id not in models:
        raise ExperimentInputError(f"dataset {dataset_c.id} names no registered default model")
    factory = models.get(model_id).load()

    def make_model(weights: str | None) -> ModelBundle:
        return factory(weights=weights, device=device)

    declared = declared_experiment(host, modality)
    shift = held_out_shift(host, modality, spec, declared)
    try:
        eval_nb = Neighbourhood(spec, host.make_operator)
        shift_nb = Neighbourhood(shift_spec(shift), host.make_operator)
        base = training_spec(spec, shift)
        train_spec = with_editor_members(base, admissible_editors(host, modality), EDITOR_LEVELS).with_overrides(k=budget.k_train)
        kinds = tuple(frozenset(host.make_operator(s.op, s.options).kind for s in m.steps) for m in train_spec.members)
    except (NeighbourhoodSpecError, ValueError) as exc:
        raise ExperimentInputError(str(exc)) from None
    split = declared.in_domain_split if declared is not None else "test"
    make_split = dataset_c.load()
    train_set = InMemory(split_of(make_split, "train", budget.train_cases), budget.train_cases)
    test_set = InMemory(split_of(make_split, split, budget.test_cases), budget.test_cases)
    shifted = Shifted(test_set, shift_nb)
    teacher, teacher_id, gate = experiment_teacher(host, dataset_c, model_id, make_model, budget, device)
    task = teacher.task if teacher is not None else dataset_c.meta["task"]
    editors = len(host.registry("editors").for_modality(modality))
    return ModalityContext(
        modality, dataset_c.id, model_id, task, make_model, host.make_operator, train_set, test_set, shifted, split,
        spec, eval_nb, train_spec, kinds, teacher, teacher_id, shift, editors,
        tuple(test_set[0].spacing), time.perf_counter() - started, device, gate,
    )
