"""A third-party modality ``echo`` with its own intensity domain and experiment declarations.

Built on the toy plugin's operators and cases, re-declared for the ``toy_echo`` domain, so core
tests can show that a plugin core knows nothing about registers a domain, passes the conformance
kit and runs in ``c3 experiment`` with its declared shifts, budget and in-domain split.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import toy_plugin

from c3_core.batch import Sample
from c3_core.domains import Domain
from c3_core.experiment_spec import ExperimentSpec, HeldOutShift, ShiftStep
from c3_core.model import ModelBundle
from c3_core.plugins.markers import hookimpl

ECHO = Domain("toy_echo", "toy echo amplitude, linear", low=0.0, display="c3_core.domains:counts_display", display_span=3.0)
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}


class EchoGain(toy_plugin.ToyGain):
    id = "echo.gain"
    modality = "echo"
    domain = ECHO


class EchoNoise(toy_plugin.ToyNoise):
    id = "echo.noise"
    modality = "echo"
    domain = ECHO


class EchoShift(toy_plugin.ToyShift):
    id = "echo.shift"
    modality = "echo"
    domain = ECHO


class EchoCases(toy_plugin.ToyDataset):
    def __getitem__(self, i: int) -> Sample:
        s = super().__getitem__(i)
        return dataclasses.replace(s, exam_id=f"echo-{self.seed}-{i:03d}", modality="echo", domain=ECHO)


def make_dataset(*, source=None, split: str = "test", **options) -> EchoCases:  # noqa: ANN001
    if split not in SPLIT_SEEDS:
        raise ValueError(f"echo.demo: unknown split {split!r}")
    return EchoCases(seed=SPLIT_SEEDS[split], **options)


def make_model(*, weights=None, device: str = "cpu", **options) -> ModelBundle:  # noqa: ANN001
    bundle = toy_plugin.make_model(weights=weights, device=device)
    return ModelBundle(bundle.network, "multiclass", bundle.class_names, ECHO, name="echo.model")


EXPERIMENT = ExperimentSpec(
    shifts=(
        HeldOutShift("echo", "louder probe", ("echo.gain",), (ShiftStep("echo.gain", 6.0),), "a 6 dB gain change"),
        HeldOutShift("echo", "noisy probe", ("echo.noise",), (ShiftStep("echo.noise", 0.2),), "noise of 0.2"),
    ),
    in_domain_split="val",
    in_domain_note="test holds another site",
    budgets={"quick": {"train_cases": 8, "test_cases": 6}},
)


@hookimpl
def c3_register_domains(registry):  # noqa: ANN001
    registry.add(ECHO)


@hookimpl
def c3_register_operators(registry):  # noqa: ANN001
    registry.add("echo.gain", "toy_echo_plugin:EchoGain", "global gain")
    registry.add("echo.noise", "toy_echo_plugin:EchoNoise", "Gaussian noise")
    registry.add("echo.shift", "toy_echo_plugin:EchoShift", "translation")


@hookimpl
def c3_register_datasets(registry):  # noqa: ANN001
    registry.add("echo.demo", "toy_echo_plugin:make_dataset", "echo demo", task="multiclass", demo=True,
                 default_model="echo.model", default_neighbourhood=str(Path(__file__).with_name("toy_echo.toml")),
                 experiment="toy_echo_plugin:EXPERIMENT")


@hookimpl
def c3_register_models(registry):  # noqa: ANN001
    registry.add("echo.model", "toy_echo_plugin:make_model", "echo model", task="multiclass", spatial_dims=2)
