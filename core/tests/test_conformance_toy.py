"""The conformance kit passes a correct plugin and catches a broken operator."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
import toy_plugin

from c3_core.batch import Batch
from c3_core.testing import parametrize_with_checks, plugin_checks


@parametrize_with_checks(toy_plugin, internal=True)  # core's own test plugin imports core's modules
def test_toy_plugin_conforms(check) -> None:  # noqa: ANN001
    check()


class LeakyShift(toy_plugin.ToyShift):
    """Moves the image but forgets the mask: the kit must notice."""

    def _apply(self, batch: Batch, params: Sequence[toy_plugin.ShiftParams]) -> Batch:
        img = torch.stack([torch.roll(batch.image[i], p.dx, dims=-1) for i, p in enumerate(params)])
        return batch.replace(image=img)


class Nondeterministic(toy_plugin.ToyNoise):
    def _apply(self, batch: Batch, params: Sequence[toy_plugin.NoiseParams]) -> Batch:
        return batch.replace(image=batch.image + torch.randn_like(batch.image))


def test_kit_catches_mask_that_does_not_move(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toy_plugin, "ToyShift", LeakyShift)
    check = next(c for c in plugin_checks(toy_plugin) if str(c) == "toy.shift::masks_consistent")
    with pytest.raises(AssertionError, match="mask does not move with the image"):
        check()


def test_kit_catches_hidden_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toy_plugin, "ToyNoise", Nondeterministic)
    check = next(c for c in plugin_checks(toy_plugin) if str(c) == "toy.noise::deterministic_under_seed")
    with pytest.raises(AssertionError, match="same params gave different bytes"):
        check()


class GlobalDraws(toy_plugin.ToyGain):
    """Declares stream sampling but draws from torch's global generator: the kit must notice."""

    stream_sampling = True

    def _sample(self, info, generator, severity):  # noqa: ANN001, ANN202
        return toy_plugin.GainParams(float(torch.rand(())) * severity)


class StreamGain(toy_plugin.ToyGain):
    stream_sampling = True  # its _sample draws through c3_core.seeding.uniform only


def test_kit_checks_operators_that_sample_from_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toy_plugin, "ToyGain", StreamGain)
    next(c for c in plugin_checks(toy_plugin) if str(c) == "toy.gain::samples_from_streams")()
    monkeypatch.setattr(toy_plugin, "ToyGain", GlobalDraws)
    check = next(c for c in plugin_checks(toy_plugin) if str(c) == "toy.gain::samples_from_streams")
    with pytest.raises(AssertionError, match="global generator"):
        check()
