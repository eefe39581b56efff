"""Sensor noise and colour-filter array: shot, read, PRNU/DSNU, Bayer mosaic + demosaic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import draw_seed, generator_from_seed
from c3_fundus.functional.sensor import bilinear_demosaic, fixed_pattern, mosaic, shot_and_read_noise
from c3_fundus.operators._base import MIN_VISIBILITY, FundusOperator


@dataclass(frozen=True)
class SensorParams:
    photons_at_white: float  # mean photo-electrons collected at linear value 1.0
    read_noise_e: float  # read-noise std in electrons
    prnu: float  # photo-response non-uniformity, relative std of per-pixel gain
    dsnu: float  # dark-signal non-uniformity, std of per-pixel offset in [0, 1] units
    bayer: bool  # mosaic through an RGGB CFA and demosaic bilinearly
    noise_seed: int
    pattern_seed: int


class Sensor(FundusOperator[SensorParams]):
    id = "fundus.sensor"
    version = "1"
    severity = Severity("photons_at_white", "photo-electrons at full scale", 50000.0, 400.0, (8000.0, 2000.0, 800.0, 400.0))
    params_type = SensorParams
    summary = "shot and read noise, PRNU/DSNU, Bayer mosaic and demosaic"

    def __init__(self, read_noise_e: float = 4.0, prnu: float = 0.01, dsnu: float = 0.002, bayer: bool = True, min_visibility: float = MIN_VISIBILITY) -> None:
        super().__init__(min_visibility)
        if read_noise_e < 0 or prnu < 0 or dsnu < 0:
            raise ValueError(f"{self.id}: noise parameters must be >= 0")
        self.read_noise_e, self.prnu, self.dsnu, self.bayer = float(read_noise_e), float(prnu), float(dsnu), bool(bayer)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> SensorParams:
        return SensorParams(severity, self.read_noise_e, self.prnu, self.dsnu, self.bayer, draw_seed(generator), draw_seed(generator))

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[SensorParams]) -> Tensor:
        out = []
        for i, p in enumerate(params):
            x = linear[i]
            gain, offset = fixed_pattern(tuple(x.shape), p.prnu, p.dsnu, generator_from_seed(p.pattern_seed, x.device), x.device)
            signal = x * gain + offset
            noisy = shot_and_read_noise(signal, torch.tensor(p.photons_at_white, device=x.device), torch.tensor(p.read_noise_e, device=x.device), generator_from_seed(p.noise_seed, x.device))
            out.append(noisy)
        y = torch.stack(out)
        if any(p.bayer for p in params):
            demosaiced = bilinear_demosaic(mosaic(y))
            use = torch.tensor([p.bayer for p in params], device=y.device).view(-1, 1, 1, 1)
            y = torch.where(use, demosaiced, y)
        return y
