"""Stored results name the operator versions they were made with, so a changed operator is recomputed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import toy_plugin

from c3_core.experiment_spec import HeldOutShift, ShiftStep
from c3_core.experiments.failure_study import inputs_record
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
from c3_core.plugins.host import PluginHost

SPEC = {"k": 2, "seed": 0, "members": [{"op": "toy.noise"}, {"steps": [{"op": "toy.gain"}, {"op": "toy.noise"}]}]}


def _host() -> PluginHost:
    return PluginHost(autoload=False, modules={"toy": toy_plugin}).load()


def test_a_neighbourhood_names_every_operator_version_it_draws_from(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _host()
    nb = Neighbourhood(NeighbourhoodSpec.from_dict(SPEC, source="t"), host.make_operator)
    before = nb.operator_versions()
    assert set(before) == {"toy.noise", "toy.gain"}
    monkeypatch.setattr(toy_plugin.ToyGain, "version", "99")
    after = Neighbourhood(NeighbourhoodSpec.from_dict(SPEC, source="t"), host.make_operator).operator_versions()
    assert after["toy.gain"] == "99" and after["toy.noise"] == before["toy.noise"]


def test_a_failure_study_records_the_versions_of_its_shift_and_its_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _host()
    shift = HeldOutShift("toy", "gain", ("toy.gain",), (ShiftStep("toy.gain", 3.0),), "test")

    def study(delta: float) -> SimpleNamespace:
        gate = SimpleNamespace(to_dict=lambda: {"delta": delta})
        return SimpleNamespace(spec=NeighbourhoodSpec.from_dict({"k": 1, "seed": 0, "members": [{"op": "toy.noise"}]}, source="t"),
                               make_operator=host.make_operator, shifts=[shift], teacher_id="toy.teacher", gate=gate)

    base = inputs_record(study(0.5))  # type: ignore[arg-type]
    assert base["operator_versions"].keys() == {"toy.noise", "toy.gain"} and base["gate"] == {"delta": 0.5}
    assert inputs_record(study(0.6)) != base  # type: ignore[arg-type]  # a re-calibrated gate
    monkeypatch.setattr(toy_plugin.ToyGain, "version", "99")  # an operator only the held-out shift uses
    assert inputs_record(study(0.5))["operator_versions"]["toy.gain"] == "99"  # type: ignore[arg-type]
