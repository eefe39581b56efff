"""``us.attenuation_tgc``: depth attenuation compensated by a mis-set time-gain compensation.

Tissue attenuates the echo by ``2 * alpha * f * z`` dB (round trip; alpha in dB/cm/MHz, f in MHz,
z in cm). The scanner's TGC adds ``slope * z`` dB; when the slope is mis-set by ``e`` dB/cm the
image keeps a net depth gain error of ``e * z`` dB: deep tissue looks brighter (``e > 0``) or
darker (``e < 0``). Severity is ``|e|``; its sign is drawn per case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.api import Batch, CaseInfo, Draws, Severity, SeveritySource, random_sign, uniform
from c3_ultrasound.functional.gain import apply_depth_gain_db, pixel_depth_cm, tgc_residual_db
from c3_ultrasound.operators._base import UltrasoundOperator, row_pitch_mm


@dataclass(frozen=True)
class AttenuationTGCParams:
    """``attenuation_db_cm_mhz``: tissue attenuation coefficient alpha (dB/cm/MHz).
    ``frequency_mhz``: transmit centre frequency f (MHz).
    ``tgc_slope_error_db_cm``: TGC slope minus the round-trip attenuation slope 2 alpha f (dB/cm).
    """

    attenuation_db_cm_mhz: float
    frequency_mhz: float
    tgc_slope_error_db_cm: float

    @property
    def tgc_slope_db_cm(self) -> float:
        """The TGC slope the scanner applied (dB/cm)."""
        return 2.0 * self.attenuation_db_cm_mhz * self.frequency_mhz + self.tgc_slope_error_db_cm


class AttenuationTGC(UltrasoundOperator[AttenuationTGCParams]):
    """Net depth-dependent gain error left by an imperfect TGC."""

    id = "us.attenuation_tgc"
    version = "2"
    severity = Severity(
        "tgc_slope_error", "dB/cm", 0.0, 3.0, (0.75, 1.5, 2.25, 3.0),
        source=SeveritySource(
            quantity="TGC slope minus the round-trip attenuation slope 2 alpha f (net depth-gain error)",
            reference=(
                "tissue attenuation table, Diagnostics 2023;13(5):855, doi:10.3390/diagnostics13050855 (dB/cm at 1 MHz: "
                "liver 0.50, heart 0.52, fat 0.63, breast 0.75, muscle 0.96-1.40, kidney 1.00)"
            ),
            derivation=(
                "The round-trip slope is 2 alpha f: liver at 3.5 MHz 3.5 dB/cm, muscle (perpendicular) 6.7 dB/cm. A TGC "
                "set for one tissue and used on another is off by about 3 dB/cm; over the 2.9 cm depth of the "
                "demo images that is a 9 dB error at the bottom"
            ),
            extreme_rationale=(
                "the same preset used on liver and on muscle-rich or fatty tissue, before the sonographer "
                "readjusts the sliders"
            ),
        ),
    )
    params_type = AttenuationTGCParams
    summary = "round-trip depth attenuation with a mis-set TGC slope (net depth gain error)"

    def __init__(self, attenuation_db_cm_mhz: tuple[float, float] = (0.4, 0.8), frequency_mhz: tuple[float, float] = (3.0, 7.5)) -> None:
        """Ranges the tissue attenuation (dB/cm/MHz) and transmit frequency (MHz) are drawn from."""
        for name, rng in (("attenuation_db_cm_mhz", attenuation_db_cm_mhz), ("frequency_mhz", frequency_mhz)):
            if len(rng) != 2 or not 0 < rng[0] <= rng[1]:
                raise ValueError(f"{self.id}: {name} must be a positive range [low, high], got {rng}")
        self.attenuation_db_cm_mhz = (float(attenuation_db_cm_mhz[0]), float(attenuation_db_cm_mhz[1]))
        self.frequency_mhz = (float(frequency_mhz[0]), float(frequency_mhz[1]))

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> AttenuationTGCParams:
        alpha = uniform(generator, *self.attenuation_db_cm_mhz)
        freq = uniform(generator, *self.frequency_mhz)
        return AttenuationTGCParams(alpha, freq, random_sign(generator) * severity)

    def _apply(self, batch: Batch, params: Sequence[AttenuationTGCParams]) -> Batch:
        dev = batch.device
        alpha = torch.tensor([p.attenuation_db_cm_mhz for p in params], dtype=torch.float64, device=dev)
        freq = torch.tensor([p.frequency_mhz for p in params], dtype=torch.float64, device=dev)
        slope = torch.tensor([p.tgc_slope_db_cm for p in params], dtype=torch.float64, device=dev)
        depth = pixel_depth_cm(int(batch.image.shape[2]), row_pitch_mm(batch))
        gain_db = tgc_residual_db(depth, alpha, freq, slope)
        return batch.replace(image=apply_depth_gain_db(batch.image, gain_db))
