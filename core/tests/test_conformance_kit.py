"""The conformance kit's checks on what plugins ship: default neighbourhoods, meta keys, editors
handed over with test weights, and the pytest decorator with its expected failures."""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import toy_plugin

from c3_core.api import Batch, CaseInfo, Domain, Editor, Severity, collate, hookimpl
from c3_core.testing import Check, editor_checks, parametrize_with_checks, plugin_checks, with_model

pytest_plugins = ("pytester",)


class LogGain(toy_plugin.ToyGain):
    id = "toy.log_gain"
    domain = Domain.LOG_ATTENUATION


class FlatGain(toy_plugin.ToyGain):
    id = "toy.flat_gain"
    spatial_dims = (2,)


class VolumeGain(toy_plugin.ToyGain):
    id = "toy.volume_gain"
    spatial_dims = (3,)


class OtherGain(toy_plugin.ToyGain):
    id = "other.gain"
    modality = "other"


def _plugin(spec: Path, **meta: Any) -> types.ModuleType:
    module = types.ModuleType("toy_neighbourhood_plugin")

    @hookimpl
    def c3_register_operators(registry):  # noqa: ANN001, ANN202
        for op in ("ToyGain", "ToyNoise", "ToyShift"):
            registry.add(getattr(toy_plugin, op).id, f"toy_plugin:{op}", "toy")
        for cls in (LogGain, FlatGain, VolumeGain, OtherGain):
            registry.add(cls.id, f"{__name__}:{cls.__name__}", "toy")

    @hookimpl
    def c3_register_datasets(registry):  # noqa: ANN001, ANN202
        registry.add("toy.demo", "toy_plugin:make_dataset", "toy", **{"task": "multiclass", "demo": True, "default_neighbourhood": str(spec), **meta})

    module.c3_register_operators = c3_register_operators  # type: ignore[attr-defined]
    module.c3_register_datasets = c3_register_datasets  # type: ignore[attr-defined]
    return module


def _check(plugin: types.ModuleType, name: str) -> Check:
    return next(c for c in plugin_checks(plugin, internal=True) if str(c) == name)


GOOD = """
k = 6
[[members]]
op = "toy.gain"
severity = [1.0, 6.0]
[[members]]
op = "toy.noise"
levels = [0.1, 0.5]
[[members]]
steps = [{ op = "toy.shift", severity = [1.0, 4.0] }, { op = "toy.gain", levels = [3.0] }]
"""


def test_a_sound_default_neighbourhood_passes(tmp_path: Path) -> None:
    spec = tmp_path / "default.toml"
    spec.write_text(GOOD)
    _check(_plugin(spec), "toy.demo::default_neighbourhood_valid")()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[members]]\nop = "toy.gian"\nseverity = [1.0, 2.0]', r"members\[0\].steps\[0\] \(toy.gian\): unknown operator id 'toy.gian'"),
        ('[[members]]\nop = "toy.gain"\nseverity = [1.0, 9.0]', r"severity 9.0 is outside the admissible range \[0, 6\] dB"),
        ('[[members]]\nop = "toy.noise"\nlevels = [0.1, 0.8]', r"severity 0.8 is outside the admissible range"),
        ('k = 5000\n[[members]]\nop = "toy.gain"', r"k = 5000 counterfactuals per case; keep k in 1..1000"),
        ('k = 0\n[[members]]\nop = "toy.gain"', r"k must be a positive integer"),
        ('[[members]]\nop = "other.gain"', r"other.gain is a other operator in a toy neighbourhood"),
        ('[[members]]\nop = "toy.gain"\noptions = { knob = 1 }', r"options \{'knob': 1\} not taken"),
        (
            '[[members]]\nsteps = [{ op = "toy.gain" }, { op = "toy.log_gain" }]',
            r"members\[0\]: the steps of a composition must share one intensity domain: toy.gain \(display",
        ),
        ('[[members]]\nsteps = [{ op = "toy.flat_gain" }, { op = "toy.volume_gain" }]', r"no image rank every step supports"),
    ],
    ids=["misspelt_id", "severity_out_of_range", "level_out_of_range", "k_too_large", "k_zero", "other_modality",
         "bad_options", "composition_domains", "composition_rank"],
)
def test_a_broken_default_neighbourhood_fails_the_check(tmp_path: Path, toml: str, message: str) -> None:
    spec = tmp_path / "default.toml"
    spec.write_text(toml + "\n")
    with pytest.raises(AssertionError, match=message):
        _check(_plugin(spec), "toy.demo::default_neighbourhood_valid")()


def test_a_missing_neighbourhood_file_fails(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="cannot read default_neighbourhood"):
        _check(_plugin(tmp_path / "nope.toml"), "toy.demo::default_neighbourhood_valid")()


@pytest.mark.parametrize(
    ("meta", "message"),
    [({"defualt_model": "toy.model"}, r"unknown meta key 'defualt_model' for datasets"), ({"demo": "yes"}, r"meta demo='yes' should be bool")],
)
def test_undeclared_or_mistyped_meta_keys_fail(tmp_path: Path, meta: dict[str, Any], message: str) -> None:
    spec = tmp_path / "default.toml"
    spec.write_text(GOOD)
    with pytest.raises(AssertionError, match=message):
        _check(_plugin(spec, **meta), "toy.demo::meta_keys_declared")()


# -- editors handed over with test weights -------------------------------------------------------
@dataclass(frozen=True)
class BrightenParams:
    strength: float


class ModelBrighten(Editor[BrightenParams]):
    """Adds ``strength * boost`` times the model's scalar: a stand-in for an editor with a learned model."""

    id = "toy.model_brighten"
    modality = "toy"
    domain = Domain.DISPLAY
    severity = Severity("strength", "fraction", identity=0.0, extreme=1.0)
    params_type = BrightenParams
    summary = "brightens by a learned amount"

    def __init__(self, boost: float = 1.0) -> None:
        self.boost = float(boost)

    @classmethod
    def load_model(cls) -> torch.Tensor:
        raise RuntimeError("would train the full model")

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> BrightenParams:
        return BrightenParams(float(severity))

    def _apply(self, batch: Batch, params: Sequence[BrightenParams]) -> Batch:
        amount = torch.tensor([p.strength * self.boost for p in params], dtype=batch.image.dtype) * self.load_model()
        return batch.replace(image=batch.image + amount.view(-1, *[1] * (batch.image.ndim - 1)))


def _toy_batch() -> Batch:
    ds = toy_plugin.ToyDataset(n=2)
    return collate([ds[0], ds[1]])


def test_editor_checks_use_the_test_model_and_the_options() -> None:
    checks = editor_checks([ModelBrighten], batch=_toy_batch, model=lambda: torch.tensor(0.1), options={"boost": 0.5})
    assert {c.name for c in checks} >= {"declares_metadata", "replays_from_provenance", "batch_invariant"}
    for check in checks:
        check()


def test_without_test_weights_the_editor_loads_its_own_model() -> None:
    check = next(c for c in editor_checks([ModelBrighten], batch=_toy_batch()) if c.name == "keeps_shape_dtype_device")
    with pytest.raises(RuntimeError, match="would train the full model"):
        check()


def test_with_model_needs_a_model_loader() -> None:
    assert with_model(ModelBrighten, lambda: torch.tensor(2.0)).load_model() == 2.0
    with pytest.raises(TypeError, match="loads no model"):
        with_model(toy_plugin.ToyGain, lambda: None)  # type: ignore[arg-type]


def test_a_batch_of_another_rank_is_not_used() -> None:
    volume = _toy_batch().replace(image=torch.rand(2, 1, 4, 8, 8), mask=None, spacing=[(1.0, 1.0, 1.0)] * 2)
    check = next(c for c in editor_checks([with_model(ModelBrighten, lambda: torch.tensor(1.0))], batch=volume) if c.name == "deterministic_under_seed")
    check()  # ModelBrighten takes 2-D and 3-D: the 3-D batch is used for 3-D only


# -- the decorator and expected failures ---------------------------------------------------------
USER_TEST = '''
import sys

import torch
import toy_plugin
from c3_core.api import hookimpl
from c3_core.testing import parametrize_with_checks


class Leaky(toy_plugin.ToyShift):
    """Moves the image but forgets the mask."""

    def _apply(self, batch, params):
        return batch.replace(image=torch.stack([torch.roll(batch.image[i], p.dx, dims=-1) for i, p in enumerate(params)]))


@hookimpl
def c3_register_operators(registry):
    registry.add("toy.shift", "test_kit_user:Leaky", "forgets the mask")


@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy", task="multiclass", demo=True)


@parametrize_with_checks(sys.modules[__name__], expected_failed_checks={
    "toy.shift::masks_consistent": "forgets the mask",
    "toy.shift::declares_metadata": "declared, but it passes",
})
def test_conformance(check):
    check()
'''


def test_expected_failures_are_xfailed_and_an_unexpected_pass_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kit_user=USER_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rxX")
    outcomes = result.parseoutcomes()
    assert outcomes.get("xfailed") == 1 and outcomes.get("failed") == 1 and outcomes.get("passed", 0) >= 5, outcomes
    result.stdout.fnmatch_lines(["*XPASS(strict)* declared, but it passes", "XFAIL *toy.shift::masks_consistent* - forgets the mask"])


def test_expected_failures_must_name_a_check_and_give_a_reason() -> None:
    checks = [Check("a", "toy.x", lambda: None)]
    with pytest.raises(ValueError, match="names no check: toy.x::b"):
        parametrize_with_checks(checks, expected_failed_checks={"toy.x::b": "typo"})
    with pytest.raises(ValueError, match="needs a reason for: toy.x::a"):
        parametrize_with_checks(checks, expected_failed_checks={"toy.x::a": " "})
    with pytest.raises(TypeError, match="apply to a plugin module"):
        parametrize_with_checks(checks, internal=True)
