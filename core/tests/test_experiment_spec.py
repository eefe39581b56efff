"""Plugins own their experiments: ExperimentSpec validation, the kit's check of a declaration, and a
third-party modality with its own intensity domain run end to end by `c3 experiment`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
import toy_echo_plugin
from fake_dists import write_dist

from c3_core.experiment_spec import ExperimentSpec, HeldOutShift, ShiftStep, load_experiment_spec
from c3_core.plugins.host import PluginHost
from c3_core.plugins.markers import hookimpl
from c3_core.testing import check_experiment_spec, plugin_checks

GAIN = HeldOutShift("echo", "louder", ("echo.gain",), (ShiftStep("echo.gain", 6.0),), "gain")
NOISE = HeldOutShift("echo", "noisier", ("echo.noise",), (ShiftStep("echo.noise", 0.2),), "noise")
ONE_SHIFT = ExperimentSpec((GAIN,))
MISSPELT = ExperimentSpec((GAIN, HeldOutShift("echo", "typo", ("echo.gian",), (ShiftStep("echo.gian", 1.0),), "typo")))
TOO_SEVERE = ExperimentSpec((GAIN, HeldOutShift("echo", "deafening", ("echo.gain",), (ShiftStep("echo.gain", 9.0),), "x")))
FOREIGN = ExperimentSpec((HeldOutShift("toy", "toy gain", ("toy.gain",), (ShiftStep("toy.gain", 3.0),), "x"),
                          HeldOutShift("toy", "toy noise", ("toy.noise",), (ShiftStep("toy.noise", 0.1),), "x")))
BAD_SPLIT = ExperimentSpec((GAIN, NOISE), in_domain_split="nosuch")
NOT_A_SPEC = {"shifts": []}


def test_an_experiment_spec_validates_what_it_declares() -> None:
    with pytest.raises(ValueError, match="not in its family"):
        HeldOutShift("echo", "x", ("echo.gain",), (ShiftStep("echo.noise", 0.1),), "x")
    with pytest.raises(ValueError, match="needs a family"):
        HeldOutShift("echo", "x", (), (), "x")
    with pytest.raises(ValueError, match="at least one held-out shift"):
        ExperimentSpec(())
    with pytest.raises(ValueError, match="one modality"):
        ExperimentSpec((GAIN, FOREIGN.shifts[0]))
    with pytest.raises(ValueError, match="distinct"):
        ExperimentSpec((GAIN, GAIN))
    with pytest.raises(ValueError, match="number or string"):
        ExperimentSpec((GAIN,), budgets={"quick": {"epochs": [1]}})
    spec = toy_echo_plugin.EXPERIMENT
    assert spec.primary is spec.shifts[0] and spec.modality == "echo"
    assert spec.budget_fields("quick") == {"train_cases": 8, "test_cases": 6} and spec.budget_fields("full") == {}
    assert load_experiment_spec("toy_echo_plugin:EXPERIMENT") is spec
    with pytest.raises(ValueError, match="not a c3_core.experiment_spec.ExperimentSpec"):
        load_experiment_spec(f"{__name__}:NOT_A_SPEC")
    with pytest.raises(ValueError, match="package.module:ATTR"):
        load_experiment_spec("no_colon")


def _echo_host(experiment: str) -> tuple[PluginHost, object]:
    """The echo plugin with its demo dataset's ``experiment`` pointing at ``experiment``."""
    module = ModuleType("echo_variant")
    for name in ("c3_register_domains", "c3_register_operators", "c3_register_models"):
        setattr(module, name, getattr(toy_echo_plugin, name))

    @hookimpl
    def c3_register_datasets(registry):  # noqa: ANN001
        registry.add("echo.demo", "toy_echo_plugin:make_dataset", "echo demo", task="multiclass", demo=True,
                     default_model="echo.model", experiment=experiment)

    module.c3_register_datasets = c3_register_datasets  # type: ignore[attr-defined]
    host = PluginHost(autoload=False, modules={"echo": module}).load()
    return host, host.demo_dataset("echo")


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("ONE_SHIFT", "declare at least 2 held-out shifts, got 1"),
        ("MISSPELT", "family member 'echo.gian' is not a registered echo operator (known: echo.gain, echo.noise, echo.shift)"),
        ("TOO_SEVERE", "severity 9.0 is outside the admissible range [0, 6] dB"),
        ("FOREIGN", "declares toy shifts, not echo"),
        ("BAD_SPLIT", "in_domain_split 'nosuch' fails"),
        ("NOT_A_SPEC", "cannot be loaded"),
    ],
)
def test_the_kit_refuses_a_declaration_that_does_not_fit_the_plugin(attr: str, message: str) -> None:
    host, dataset = _echo_host(f"{__name__}:{attr}")
    with pytest.raises(AssertionError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_experiment_spec(host, dataset)  # type: ignore[arg-type]


def test_a_plugin_with_its_own_domain_passes_the_kit() -> None:
    checks = plugin_checks(toy_echo_plugin, internal=True)
    names = {str(c) for c in checks}
    assert "echo.demo::experiment_declaration_valid" in names and "echo.gain::domain_registered" in names
    for check in checks:
        check()


@pytest.fixture()
def echo_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    hooks = "c3_register_domains, c3_register_operators, c3_register_datasets, c3_register_models"
    write_dist(root, "c3-echo", "c3_echo_entry", f"from toy_echo_plugin import {hooks}  # noqa: F401\n")
    monkeypatch.syspath_prepend(str(root))
    for var in ("C3_DISABLE_PLUGIN_AUTOLOAD", "TOY_DELAY", "TOY_FAIL", "TOY_N"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("C3_PLUGINS", "c3-echo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def test_a_third_party_modality_runs_its_declared_experiment(echo_site: Path) -> None:
    from c3_core.experiments.paper import experiment_command

    lines: list[str] = []
    code = experiment_command(
        modalities=["echo"], seeds=1, full=False, out=str(echo_site / "out"), results=str(echo_site / "results.md"),
        device=None, quick=True, rows=["standard", "c3"], echo=lines.append,
    )
    assert code == 0, lines
    text = (echo_site / "results.md").read_text()
    assert "Held-out shift (louder probe): `echo.gain` @ 6. a 6 dB gain change." in text
    assert "split `val`" in text
    stored = json.loads((echo_site / "out" / "experiment.json").read_text())["modalities"][0]
    assert stored["budget"]["train_cases"] == 8 and stored["budget"]["test_cases"] == 6  # the declared quick budget
    assert stored["context"]["n_train"] == 8 and stored["context"]["n_test"] == 6
    assert stored["context"]["shift"]["derived"] is False
    train = stored["context"]["train_neighbourhood"]
    assert [m["steps"][0]["op"] for m in train["members"]] == ["echo.noise", "echo.shift"]  # the family is held out
