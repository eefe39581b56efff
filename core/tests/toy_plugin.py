"""A tiny in-process plugin used by c3-core's own tests (modality ``toy``)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from c3_core.batch import Batch, CaseInfo, Sample
from c3_core.domains import IntensityDomain
from c3_core.model import ModelBundle
from c3_core.operator import Operator, Severity, SeveritySource
from c3_core.plugins.markers import hookimpl
from c3_core.seeding import draw_seed, generator_from_seed, uniform


@dataclass(frozen=True)
class GainParams:
    gain_db: float


class ToyGain(Operator[GainParams]):
    id = "toy.gain"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    severity = Severity(
        "gain_db", "dB", identity=0.0, extreme=6.0, levels=(1.0, 3.0, 6.0),
        source=SeveritySource(
            "global amplitude gain (toy)", derivation="test fixture: 6 dB = amplitude x2 (20 log10 2), an arbitrary toy bound",
            extreme_rationale="toy modality for core tests; no acquisition behind it",
        ),
    )
    params_type = GainParams
    summary = "global gain change"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> GainParams:
        sign = 1.0 if uniform(generator, 0, 1) < 0.5 else -1.0
        return GainParams(gain_db=sign * severity)

    def _apply(self, batch: Batch, params: Sequence[GainParams]) -> Batch:
        g = torch.tensor([10 ** (p.gain_db / 20) for p in params], dtype=batch.image.dtype, device=batch.device)
        return batch.replace(image=batch.image * g.view(-1, *[1] * (batch.image.ndim - 1)))


@dataclass(frozen=True)
class NoiseParams:
    sigma: float
    seed: int


class ToyNoise(Operator[NoiseParams]):
    id = "toy.noise"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    severity = Severity(
        "sigma", "display units", identity=0.0, extreme=0.5,
        source=SeveritySource(
            "additive noise std (toy)", derivation="test fixture: half the display range, an arbitrary toy bound",
            extreme_rationale="toy modality for core tests; no acquisition behind it",
        ),
    )
    params_type = NoiseParams
    summary = "additive Gaussian noise"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> NoiseParams:
        return NoiseParams(sigma=severity, seed=draw_seed(generator))

    def _apply(self, batch: Batch, params: Sequence[NoiseParams]) -> Batch:
        noise = torch.stack(
            [
                torch.randn(batch.image.shape[1:], generator=generator_from_seed(p.seed, batch.device), device=batch.device)
                * p.sigma
                for p in params
            ]
        )
        return batch.replace(image=batch.image + noise)


@dataclass(frozen=True)
class ShiftParams:
    dx: int


class ToyShift(Operator[ShiftParams]):
    id = "toy.shift"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    spatial = True
    severity = Severity(
        "shift", "px", identity=0.0, extreme=4.0,
        source=SeveritySource(
            "translation (toy)", derivation="test fixture: a quarter of the 16 px toy image, an arbitrary toy bound",
            extreme_rationale="toy modality for core tests; no acquisition behind it",
        ),
    )
    params_type = ShiftParams
    summary = "integer translation along the last axis"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> ShiftParams:
        return ShiftParams(dx=int(round(severity)))

    def _apply(self, batch: Batch, params: Sequence[ShiftParams]) -> Batch:
        img = torch.stack([torch.roll(batch.image[i], p.dx, dims=-1) for i, p in enumerate(params)])
        mask = None if batch.mask is None else torch.stack([torch.roll(batch.mask[i], p.dx, dims=-1) for i, p in enumerate(params)])
        return batch.replace(image=img, mask=mask)


class ToyDataset(Dataset):
    """Deterministic toy cases. Test knobs from the environment (read at construction):
    TOY_N cases, TOY_DELAY seconds per read (to kill a run part-way), TOY_FAIL indices that raise."""

    def __init__(self, n: int = 12, size: int = 16, seed: int = 0) -> None:
        self.n = int(os.environ.get("TOY_N", n))
        self.size, self.seed = size, seed
        self.delay = float(os.environ.get("TOY_DELAY", "0"))
        self.fail = {int(v) for v in os.environ.get("TOY_FAIL", "").split(",") if v}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if self.delay:
            time.sleep(self.delay)
        if i in self.fail:
            raise OSError(f"toy case {i}: unreadable file")
        g = generator_from_seed(self.seed * 1000 + i)
        label = i % 2
        img = torch.rand((1, self.size, self.size), generator=g) * 0.2 + 0.4
        mask = torch.zeros((1, self.size, self.size))
        if label:
            img[:, 4:10, 4:10] += 0.3
            mask[:, 4:10, 4:10] = 1
        return Sample(img, f"toy-{i:03d}", "toy", "display", (1.0, 1.0), torch.tensor(label), mask)


def make_dataset(*, source=None, split: str = "test", **options) -> ToyDataset:  # noqa: ANN001
    return ToyDataset(seed=0 if split == "test" else 1, **options)


class ToyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, :, 4:10, 4:10].mean(dim=(1, 2, 3), keepdim=False).unsqueeze(1)
        return self.linear(centre)


def make_model(*, weights=None, device: str = "cpu", **options) -> ModelBundle:  # noqa: ANN001
    net = ToyNet()
    with torch.no_grad():
        net.linear.weight.copy_(torch.tensor([[-20.0], [20.0]]))
        net.linear.bias.copy_(torch.tensor([11.0, -11.0]))
    return ModelBundle(net.to(device), "multiclass", ("absent", "present"), IntensityDomain.DISPLAY, name="toy.model")


class ToyDropoutNet(torch.nn.Module):
    """A randomly initialised net with dropout: what makes training depend on the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(1, 16)
        self.drop = torch.nn.Dropout(0.5)
        self.out = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, :, 4:10, 4:10].mean(dim=(1, 2, 3), keepdim=False).unsqueeze(1)
        return self.out(self.drop(torch.relu(self.hidden(centre))))


def make_dropout_model(*, weights=None, device: str = "cpu", **options) -> ModelBundle:  # noqa: ANN001
    return ModelBundle(ToyDropoutNet().to(device), "multiclass", ("absent", "present"), IntensityDomain.DISPLAY,
                       name="toy.dropout_model")


@hookimpl
def c3_register_operators(registry):  # noqa: ANN001
    registry.add("toy.gain", "toy_plugin:ToyGain", "global gain")
    registry.add("toy.noise", "toy_plugin:ToyNoise", "Gaussian noise")
    registry.add("toy.shift", "toy_plugin:ToyShift", "translation")


@hookimpl
def c3_register_datasets(registry):  # noqa: ANN001
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True, default_model="toy.model")


@hookimpl
def c3_register_models(registry):  # noqa: ANN001
    registry.add("toy.model", "toy_plugin:make_model", "toy model", task="multiclass", spatial_dims=2)
