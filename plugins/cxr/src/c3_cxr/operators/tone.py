"""Vendor look-up table / window: a monotone power-law remapping of the line integral."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, uniform
from c3_cxr.operators._base import RadiographOperator

MU_SCALE = 4.0  # the reference window's upper end (line-integral units)
FLOOR = 1e-28  # μ / MU_SCALE below this counts as this (μ is a line integral: 4e-28 is 0)


@dataclass(frozen=True)
class ToneParams:
    gamma: float  # exponent of the LUT on μ / MU_SCALE
    gain: float  # window-width change (multiplies the remapped values)


class Tone(RadiographOperator[ToneParams]):
    """μ' = gain · MU_SCALE · (μ / MU_SCALE)^γ with γ = 2^(±0.4 s) and gain = 2^(±0.15 s)."""

    id = "cxr.tone"
    version = "2"  # 2: one exp(γ ln μ + k), scales in k, μ clamped at 4e-28 (the same map, float rounding)
    severity = Severity(
        "lut_change", "fraction of the vendor range", 0.0, 1.0, (0.25, 0.5, 0.75, 1.0),
        source=SeveritySource(
            quantity="look-up-table exponent gamma = 2^(±0.4 s) and window-width gain 2^(±0.15 s) on the line integral",
            reference=(
                "Prokop M et al., Principles of image processing in digital chest radiography, J Thorac Imaging "
                "2003;18(3):148-164, doi:10.1097/00005382-200307000-00004 (look-up-table operations give signal "
                "normalisation and an arbitrary choice of gradation)"
            ),
            derivation=(
                "Every digital chest radiograph is rendered through a vendor- and preset-specific monotone LUT and "
                "window. At s = 1 the gamma is 0.76-1.32 and the width gain 0.90-1.11: a monotone remapping that "
                "keeps the order of all attenuation values, as switching between presets does"
            ),
            extreme_rationale="a different vendor's gradation preset for the same exposure; the map stays monotone",
        ),
    )
    params_type = ToneParams
    summary = "vendor look-up table / window change"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> ToneParams:
        return ToneParams(2.0 ** (0.4 * severity * uniform(generator, -1, 1)), 2.0 ** (0.15 * severity * uniform(generator, -1, 1)))

    def _apply(self, batch: Batch, params: Sequence[ToneParams]) -> Batch:
        dev, dt = batch.device, batch.image.dtype
        # gain · MU_SCALE · (μ / MU_SCALE)^γ = exp(γ · ln μ + k), k = ln(gain · MU_SCALE) − γ · ln MU_SCALE
        # per case: pow is several times slower on CPU, and with both scale factors in k the map is
        # five passes on one fresh buffer (clamp, log, multiply, add, exp). μ is clamped at MU_SCALE ·
        # FLOOR, so μ = 0 gives FLOOR^γ · gain · MU_SCALE (below 3e-21) and exp never underflows: on the
        # CPU an argument whose result is subnormal takes a scalar path ~90x slower than the vector one
        shifts = [math.log(p.gain * MU_SCALE) - p.gamma * math.log(MU_SCALE) for p in params]
        x = batch.image.clamp_min(MU_SCALE * FLOOR)
        grad = torch.is_grad_enabled() and batch.image.requires_grad
        if len({(p.gamma, p.gain) for p in params}) == 1 and not grad:  # one map for the batch: scalars
            return batch.replace(image=x.log_().mul_(params[0].gamma).add_(shifts[0]).exp_())
        gamma, k = torch.tensor([[p.gamma for p in params], shifts], device=dev, dtype=dt).view(2, -1, 1, 1, 1)
        if grad:  # autograd: out of place
            return batch.replace(image=torch.exp(torch.log(x) * gamma + k))
        return batch.replace(image=x.log_().mul_(gamma).add_(k).exp_())
