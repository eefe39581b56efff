"""Edits that change masks and labels say so (``Operator.changes``), and every consumer honours it.

The declaration is checked when a class is defined; ``apply`` refuses an undeclared change;
``apply_plans`` carries a declared mask / label (unknown where the edit returns none) and leaves
everything else bit-identical; training never pairs a counterfactual whose truth changed;
``c3 generate`` records the edited truth; the conformance kit checks both directions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import toy_interventions
import toy_plugin

from c3_core.batch import Batch, CaseInfo, collate
from c3_core.domains import IntensityDomain
from c3_core.editors.changes import (
    UNKNOWN_CLASS,
    label_known,
    mask_known,
    plan_changes,
    set_unknown,
    truth_change,
    truth_record,
)
from c3_core.neighbourhood import Plan, PlannedStep, apply_plans
from c3_core.operator import Editor, Severity
from c3_core.plugins.host import PluginHost
from c3_core.seeding import generator_from_seed
from c3_core.testing import check_declared_changes, check_undeclared_untouched
from c3_core.training.gating import admitted_pairs

SEV = Severity("amount", "a.u.", 0.0, 1.0)


@dataclass(frozen=True)
class StampParams:
    amount: float


class _Toy(Editor[StampParams]):
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    severity = SEV
    params_type = StampParams
    preserves = frozenset()
    summary = "toy"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> StampParams:
        return StampParams(float(severity))


class Stamp(_Toy):
    """Paints a bright square at the centre; its mask channel 0 and class 1 say so."""

    id = "toy.stamp"
    changes = frozenset({"mask", "label"})

    def _apply(self, batch: Batch, params: Sequence[StampParams]) -> Batch:
        mask = torch.zeros_like(batch.mask)  # type: ignore[arg-type]
        mask[:, 0, 12:20, 12:20] = 1.0
        return batch.replace(image=torch.where(mask[:, :1] > 0, torch.ones_like(batch.image), batch.image),
                             mask=mask, label=torch.ones_like(batch.label))  # type: ignore[arg-type]  # fmt: skip


class Forget(_Toy):
    """Changes the image; cannot state the mask or label of the result."""

    id = "toy.forget"
    changes = frozenset({"mask", "label"})

    def _apply(self, batch: Batch, params: Sequence[StampParams]) -> Batch:
        return batch.replace(image=batch.image * 0.5, mask=None, label=None)


class Sneaky(_Toy):
    """Changes the label without declaring it."""

    id = "toy.sneaky"

    def _apply(self, batch: Batch, params: Sequence[StampParams]) -> Batch:
        return batch.replace(label=1 - batch.label)  # type: ignore[operator]


def _batch(indices: Sequence[int] = (1, 2, 3)) -> Batch:
    ds = toy_interventions.make_dataset(n=12)
    return collate([ds[i] for i in indices])


def _plans(batch: Batch, chains: Sequence[Sequence[Editor]]) -> list[Plan]:
    g = generator_from_seed(0)
    out = []
    for i, chain in enumerate(chains):
        steps = tuple(PlannedStep(op, op.severity.extreme, op.sample_params(batch.case_info(i), g, op.severity.extreme), {}) for op in chain)
        out.append(Plan(batch.exam_ids[i], 0, 0, 0, steps))
    return out


def _host() -> PluginHost:
    return PluginHost(autoload=False, modules={"toy": toy_plugin, "iv": toy_interventions}).load()


# -- the declaration -------------------------------------------------------------------------------
def test_changes_are_checked_when_the_class_is_defined_and_listed_by_describe() -> None:
    with pytest.raises(TypeError, match="unknown changes"):
        type("Bad", (_Toy,), {"id": "toy.bad", "changes": frozenset({"colour"})})
    with pytest.raises(TypeError, match="both preserved and changed"):
        type("Bad", (_Toy,), {"id": "toy.bad", "changes": frozenset({"label"}), "preserves": frozenset({"label"})})
    with pytest.raises(TypeError, match="declare 'mask'"):
        type("Bad", (_Toy,), {"id": "toy.bad", "changes": frozenset({"structure_area"})})
    with pytest.raises(TypeError, match="frozenset"):
        type("Bad", (_Toy,), {"id": "toy.bad", "changes": {"mask"}})
    assert Stamp.describe()["changes"] == ["label", "mask"] and Sneaky.describe()["changes"] == []
    assert toy_interventions.ToyLesionRemoved.changes == {"mask", "label"}
    assert toy_interventions.ToyHealthyControl.changes == frozenset()


def test_apply_refuses_a_change_it_does_not_declare() -> None:
    batch = _batch()
    with pytest.raises(RuntimeError, match="toy.sneaky changed the label"):
        Sneaky()(batch, generator_from_seed(0))


# -- apply_plans -----------------------------------------------------------------------------------
def test_apply_plans_carries_declared_masks_and_labels_and_leaves_the_rest_bit_identical() -> None:
    batch = _batch([1, 2, 3, 5])
    noise = _host().make_operator("toy.noise")
    cf, _ = apply_plans(batch, _plans(batch, [[noise], [Stamp()], [Forget()], [noise, Stamp()]]))
    assert torch.equal(cf.mask[0], batch.mask[0]) and int(cf.label[0]) == int(batch.label[0])  # undeclared: untouched
    stamped = torch.zeros_like(batch.mask[1])
    stamped[0, 12:20, 12:20] = 1.0
    assert torch.equal(cf.mask[1], stamped) and torch.equal(cf.mask[3], stamped)  # declared: as returned
    assert cf.label.tolist() == [int(batch.label[0]), 1, UNKNOWN_CLASS, 1]
    assert bool(cf.mask[2].isnan().all())  # returned as None: unknown, never the original's
    assert batch.label.tolist() == [1, 0, 1, 1] and not bool(batch.mask.isnan().any())  # the input is not touched


def test_a_later_step_sees_the_mask_an_earlier_edit_left() -> None:
    batch = _batch([1, 3])
    removed = toy_interventions.ToyLesionRemoved()
    once, reasons_once = apply_plans(batch, _plans(batch, [[removed], [removed]]))
    twice, reasons = apply_plans(batch, _plans(batch, [[removed, removed], [Forget(), removed]]))
    assert reasons_once == [None, None]
    assert torch.equal(twice.image[0], once.image[0])  # the second removal found no lesion left
    assert "no lesion" in reasons[0]
    assert "lesion mask is unknown" in reasons[1]


# -- helpers ---------------------------------------------------------------------------------------
def test_unknown_values_and_truth_helpers() -> None:
    label = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = set_unknown(label, torch.tensor([True, False]), columns=[1])
    assert out[0, 1].isnan() and torch.equal(out[1], label[1]) and torch.equal(out[0, [0, 2]], label[0, [0, 2]])
    assert label_known(out).tolist() == [[True, False, True], [True, True, True]]
    assert set_unknown(torch.tensor([2, 3]), torch.tensor([False, True])).tolist() == [2, UNKNOWN_CLASS]
    mask = set_unknown(torch.zeros(2, 3, 4, 4), torch.tensor([True, False]), columns=[2])
    assert mask_known(mask).tolist() == [[True, True, False], [True, True, True]]
    batch = _batch([1])
    plan = _plans(batch, [[toy_interventions.ToyLesionRemoved()]])[0]
    assert plan_changes(plan) == plan.changes == {"mask", "label"}
    assert "changes the label" in truth_change(plan, "multiclass") and "changes the mask" in truth_change(plan, "segmentation")
    noise = _plans(batch, [[_host().make_operator("toy.noise")]])[0]
    assert truth_change(noise, "multilabel") is None and truth_record(noise, None, None) == {"changes": []}
    record = truth_record(plan, torch.tensor([1.0, float("nan")]), mask[0])
    assert record == {"changes": ["label", "mask"], "expected_label": [1.0, None], "mask": "partly_unknown",
                      "mask_channels_known": [True, True, False]}  # fmt: skip
    assert truth_record(plan, torch.tensor(UNKNOWN_CLASS), None)["expected_label"] is None


# -- training --------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["multiclass", "segmentation"])
@pytest.mark.parametrize("gate", [None, "default"])
def test_training_never_pairs_a_counterfactual_whose_truth_changed(task: str, gate: str | None) -> None:
    from c3_core.evaluation.scoring import GateSettings

    batch = _batch([1, 3])
    noise = _host().make_operator("toy.noise")
    plans = [_plans(batch, [[noise], [noise]]), _plans(batch, [[toy_interventions.ToyLesionRemoved()], [Stamp()]])]
    by_case = [[plans[0][i], plans[1][i]] for i in range(2)]
    cf, _ = apply_plans(batch.repeat_interleave(2), [p for row in by_case for p in row])
    admitted, decision = admitted_pairs(
        task, batch, cf, by_case, [[None, None], [None, None]],
        gate=None if gate is None else GateSettings(), teacher=None, class_names=("absent", "present"),
    )  # fmt: skip
    assert admitted.tolist() == [[True, False], [True, False]]
    field = "mask" if task == "segmentation" else "label"
    assert f"changes the {field}" in decision.reasons[0][1] and decision.reasons[0][0] is None


# -- c3 generate -----------------------------------------------------------------------------------
def test_generate_records_the_edited_label_and_writes_the_edited_mask(tmp_path: Path) -> None:
    import numpy as np

    from c3_core.generate import generate_command

    pytest.importorskip("cv2")
    out = tmp_path / "gen"
    messages: list[str] = []
    code = generate_command("toy", None, None, ["toy.noise", "toy.lesion_removed"], 3, 0, out, 4, host=_host(),
                            echo=messages.append, key_file=str(tmp_path / "k.key"))  # fmt: skip
    assert code == 0, messages
    seen = {"toy.noise": 0, "toy.lesion_removed": 0}
    for path in sorted((out / "toy").rglob("cf-*.json")):
        record = json.loads(path.read_text())
        op = record["provenance"]["steps"][0]["op_id"]
        seen[op] += 1
        truth = record["truth"]
        if op == "toy.noise":
            assert truth == {"changes": []}
            continue
        assert truth["changes"] == ["label", "mask"] and truth["mask"] == "edited"
        assert truth["expected_label"] == 0  # toy: a removed lesion is "absent"; a case without one already was
        mask = np.load(path.parent / truth["mask_file"])
        assert mask.shape[0] == 1 and float(mask.max()) == 0.0  # the lesion is gone from the mask too
    assert seen["toy.noise"] > 0 and seen["toy.lesion_removed"] > 0


# -- the conformance kit, both ways ----------------------------------------------------------------
class StaleRemoval(toy_interventions.ToyLesionRemoved):
    """Declares the mask change but hands back the original's lesion mask."""

    def removed_mask(self, mask: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        return mask.clone()


class QuietLabel(Stamp):
    """Declares nothing about the label it returns through an ``apply`` that skips the contract."""

    id = "toy.quiet"
    changes = frozenset({"mask"})

    def apply(self, batch: Batch, params: Sequence[StampParams]) -> Batch:  # bypasses Operator.apply's guard
        return self._apply(batch, params)


def test_kit_checks_undeclared_untouched_and_declared_consistent() -> None:
    batch = _batch([1, 3])
    for ed in (toy_interventions.ToyLesionRemoved(), toy_interventions.ToyLesionOnly(), toy_interventions.ToyHealthyControl(), Stamp()):
        check_undeclared_untouched(ed, batch)
        check_declared_changes(ed, batch)
    check_declared_changes(toy_interventions.ToyLesionRemoved(), _batch([2]))  # no lesion: the kit plants one
    with pytest.raises(AssertionError, match="not empty inside the removed region"):
        check_declared_changes(StaleRemoval(), batch)
    with pytest.raises(AssertionError, match="changed the label"):
        check_undeclared_untouched(QuietLabel(), _batch([1, 2]))  # labels 1, 0 -> 1, 1
