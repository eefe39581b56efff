"""SeveritySource: every physics operator says where its severity range comes from."""

from __future__ import annotations

import dataclasses
import types

import pytest
import toy_plugin

from c3_core.operator import Severity, SeveritySource
from c3_core.plugins.markers import hookimpl
from c3_core.testing import check_severity_source, plugin_checks


def test_source_needs_quantity_and_reference_or_derivation() -> None:
    s = SeveritySource("gain", reference="doi:10.0000/example")
    assert s.derivation == "" and s.extreme_rationale == "" and s.narrowed == ""
    assert SeveritySource("gain", derivation="20 log10 of the amplitude ratio").reference == ""
    with pytest.raises(ValueError, match="reference or a derivation"):
        SeveritySource("gain")
    with pytest.raises(ValueError, match="reference or a derivation"):
        SeveritySource("gain", reference="  ", derivation="", extreme_rationale="plausible")
    with pytest.raises(ValueError, match="physical quantity"):
        SeveritySource(" ", reference="x")


def test_source_is_frozen() -> None:
    s = SeveritySource("gain", reference="r")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.quantity = "other"  # type: ignore[misc]


def test_severity_keeps_its_old_constructor_and_describes_the_source() -> None:
    bare = Severity("g", "dB", 0.0, 6.0, (3.0, 6.0))
    assert bare.source is None and bare.describe()["source"] is None
    src = SeveritySource("receive gain", reference="ref", derivation="der", extreme_rationale="why", narrowed="0-9 -> 0-6")
    sev = Severity("g", "dB", identity=0.0, extreme=6.0, source=src)
    assert sev.describe()["source"] == {
        "quantity": "receive gain", "reference": "ref", "derivation": "der", "extreme_rationale": "why",
        "narrowed": "0-9 -> 0-6",
    }
    assert sev.check(3.0, "here") == 3.0


def test_toy_operators_declare_sources() -> None:
    for cls in (toy_plugin.ToyGain, toy_plugin.ToyNoise, toy_plugin.ToyShift):
        check_severity_source(cls)
        assert cls.describe()["severity"]["source"]["quantity"]


class _Sourceless(toy_plugin.ToyGain):
    id = "toy.sourceless"
    severity = Severity("gain_db", "dB", identity=0.0, extreme=6.0)


def test_an_operator_without_a_source_fails_the_check() -> None:
    with pytest.raises(AssertionError, match="toy.sourceless: severity has no source"):
        check_severity_source(_Sourceless)


def test_a_source_without_reference_or_derivation_fails_the_check() -> None:
    # bypass __post_init__ the way a hand-rolled object could
    hollow = object.__new__(SeveritySource)
    for name, value in (("quantity", "gain"), ("reference", ""), ("derivation", ""), ("extreme_rationale", ""), ("narrowed", "")):
        object.__setattr__(hollow, name, value)

    class Hollow(toy_plugin.ToyGain):
        id = "toy.hollow"
        severity = Severity("gain_db", "dB", identity=0.0, extreme=6.0, source=hollow)

    with pytest.raises(AssertionError, match="needs a reference or a derivation"):
        check_severity_source(Hollow)


def test_editors_are_not_physics_operators() -> None:
    class AnEditor(_Sourceless):
        kind = "editor"

    check_severity_source(AnEditor)  # no source needed


def _plugin_with(cls: type) -> types.ModuleType:
    module = types.ModuleType("sourceless_plugin")

    @hookimpl
    def c3_register_operators(registry):  # noqa: ANN001, ANN202
        registry.add(cls.id, f"{__name__}:{cls.__name__}", "an operator")

    @hookimpl
    def c3_register_datasets(registry):  # noqa: ANN001, ANN202
        registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True)

    module.c3_register_operators = c3_register_operators  # type: ignore[attr-defined]
    module.c3_register_datasets = c3_register_datasets  # type: ignore[attr-defined]
    return module


def test_conformance_kit_runs_the_check_on_physics_operators() -> None:
    checks = {str(c): c for c in plugin_checks(_plugin_with(_Sourceless))}
    check = checks["toy.sourceless::severity_has_source"]
    with pytest.raises(AssertionError, match="severity has no source"):
        check()
    toy = {str(c) for c in plugin_checks(toy_plugin)}
    assert {"toy.gain::severity_has_source", "toy.noise::severity_has_source", "toy.shift::severity_has_source"} <= toy
