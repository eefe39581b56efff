"""Sensor: photon shot noise, read noise, PRNU/DSNU fixed pattern, ADC, Bayer mosaic + demosaic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, draw_seed, generator_from_seed
from c3_fundus.functional.sensor import (
    adc,
    bilinear_demosaic,
    demosaic_raw,
    electrons,
    expose_raw,
    fixed_pattern,
    mosaic,
    raw_mosaic,
)
from c3_fundus.functional.srgb import linear_to_srgb_, srgb_to_linear_
from c3_fundus.operators._base import MIN_VISIBILITY, FundusOperator


def _one_bayer_exposure(params: Sequence[SensorParams]) -> bool:
    """Whether every case has a Bayer sensor with the same ADC depth (then one batched exposure)."""
    return all(p.bayer for p in params) and len({p.adc_bits for p in params}) == 1


@dataclass(frozen=True)
class SensorParams:
    """One exposure of the sensor; electrons and linear [0, 1] units as named."""

    full_well_e: float  # mean photo-electrons collected at linear value 1.0 (full scale)
    read_noise_e: float  # read-noise standard deviation, electrons
    prnu: float  # photo-response non-uniformity: relative std of the per-pixel gain
    dsnu: float  # dark-signal non-uniformity: std of the per-pixel offset, linear [0, 1] units
    adc_bits: int  # ADC bit depth (0 = no quantisation)
    bayer: bool  # sample through an RGGB colour-filter array and demosaic bilinearly
    noise_seed: int  # temporal noise realisation
    pattern_seed: int  # fixed-pattern realisation


class Sensor(FundusOperator[SensorParams]):
    """Camera sensor noise in linear light.

    electrons = Poisson(x · gain_map · full_well + offset · full_well) + N(0, read²), then an ADC
    with gain full_well / (2^bits − 1) e⁻/DN. With ``bayer``, x is the raw RGGB plane (each
    pixel its colour-filter channel; the only values a Bayer sensor measures) and the three
    channels are restored by bilinear demosaicing.
    Severity: full-well electrons at full scale, 50 000 (clean) → 400 (very noisy).
    """

    id = "fundus.sensor"
    version = "4"  # 4: photon draws by c3_core.functional.photon (exact Poisson below 20 e-), one batched exposure, raw-plane demosaic; 3: raw CFA plane only
    severity = Severity(
        "full_well", "photo-electrons at full scale", 50000.0, 400.0, (8000.0, 2000.0, 800.0, 400.0),
        source=SeveritySource(
            quantity="photo-electrons collected at full scale (linear value 1), read noise 4 e-, 10-bit ADC",
            derivation=(
                "Shot-noise SNR at full scale is sqrt(N): 50 000 e- (a large-pixel camera at base ISO) gives 224, "
                "400 e- gives 20 at full scale and about 10 at a quarter of it. 400 e- is a 50 000 e- sensor "
                "exposed 7 stops under, or a small-pixel sensor of a few thousand e- exposed 3 stops under, as a "
                "dim flash through a small pupil gives"
            ),
            extreme_rationale=(
                "visibly grainy but gradable non-mydriatic photographs; the lesion-visibility check rejects draws "
                "where microaneurysms drown in noise"
            ),
        ),
    )
    params_type = SensorParams
    summary = "Poisson shot and read noise, PRNU/DSNU, ADC, Bayer mosaic and bilinear demosaic"

    def __init__(
        self,
        read_noise_e: float = 4.0,
        prnu: float = 0.01,
        dsnu: float = 0.002,
        adc_bits: int = 10,
        bayer: bool = True,
        min_visibility: float = MIN_VISIBILITY,
    ) -> None:
        super().__init__(min_visibility)
        if read_noise_e < 0 or prnu < 0 or dsnu < 0:
            raise ValueError(f"{self.id}: noise parameters must be >= 0 (read_noise_e={read_noise_e}, prnu={prnu}, dsnu={dsnu})")
        if not 0 <= int(adc_bits) <= 16:
            raise ValueError(f"{self.id}: adc_bits must be in 0..16 (0 = off), got {adc_bits}")
        self.read_noise_e, self.prnu, self.dsnu = float(read_noise_e), float(prnu), float(dsnu)
        self.adc_bits, self.bayer = int(adc_bits), bool(bayer)

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> SensorParams:
        return SensorParams(
            severity, self.read_noise_e, self.prnu, self.dsnu, self.adc_bits, self.bayer,
            draw_seed(generator), draw_seed(generator),
        )

    def _apply(self, batch: Batch, params: Sequence[SensorParams]) -> Batch:
        if _one_bayer_exposure(params):  # decode only the raw CFA plane: a third of the values
            raw = self._expose(srgb_to_linear_(raw_mosaic(batch.image)), params)
            return batch.replace(image=linear_to_srgb_(demosaic_raw(raw)).to(batch.image.dtype))
        return super()._apply(batch, params)

    @staticmethod
    def _expose(raw: Tensor, params: Sequence[SensorParams]) -> Tensor:
        """One batched exposure of the raw CFA planes (B, 1, H, W), linear light in and out."""
        dev = raw.device
        return expose_raw(
            raw, [p.full_well_e for p in params], [p.read_noise_e for p in params], [p.prnu for p in params],
            [p.dsnu for p in params], params[0].adc_bits,
            [generator_from_seed(p.noise_seed, dev) for p in params], [generator_from_seed(p.pattern_seed, dev) for p in params],
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[SensorParams]) -> Tensor:
        if _one_bayer_exposure(params):  # the usual case: one batched exposure
            # a Bayer sensor has one photosite per pixel: expose only the raw CFA plane
            return demosaic_raw(self._expose(raw_mosaic(linear), params))
        out = []
        for i, p in enumerate(params):  # per-sample noise realisations; the maths is whole-image
            # a Bayer sensor has one photosite per pixel: expose only the raw CFA plane (1, H, W)
            x = raw_mosaic(linear[i]) if p.bayer else linear[i]
            gain, offset = fixed_pattern(tuple(x.shape), p.prnu, p.dsnu, generator_from_seed(p.pattern_seed, x.device), x.device)
            fw = torch.tensor(p.full_well_e, device=x.device, dtype=x.dtype)
            e = electrons(x * gain + offset, fw, torch.tensor(p.read_noise_e, device=x.device, dtype=x.dtype), generator_from_seed(p.noise_seed, x.device))
            y = adc(e, fw, p.adc_bits) if p.adc_bits > 0 else e / fw
            out.append(y.expand_as(linear[i]) if p.bayer else y)  # the raw plane in each channel, masked below
        y = torch.stack(out)
        use = [p.bayer for p in params]
        if all(use):
            return bilinear_demosaic(mosaic(y))
        if any(use):
            return torch.where(torch.tensor(use, device=y.device).view(-1, 1, 1, 1), bilinear_demosaic(mosaic(y)), y)
        return y
