"""``us.gain``: an overall receive-gain change (amplitude times ``10 ** (dB / 20)``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.api import Batch, CaseInfo, Draws, Severity, SeveritySource, random_sign
from c3_ultrasound.functional.gain import apply_gain_db
from c3_ultrasound.operators._base import UltrasoundOperator


@dataclass(frozen=True)
class GainParams:
    """``gain_db``: receive gain change in dB of amplitude (positive = brighter)."""

    gain_db: float


class Gain(UltrasoundOperator[GainParams]):
    """Overall gain change; severity is ``|gain_db|``, the sign is drawn per case."""

    id = "us.gain"
    version = "2"
    severity = Severity(
        "gain_change", "dB", 0.0, 9.0, (3.0, 6.0, 9.0),
        source=SeveritySource(
            quantity="overall receive gain change in dB of amplitude",
            derivation=(
                "Overall gain is a user control set by eye. ±9 dB is an amplitude factor of 2.8 either way, a "
                "grey-level shift of 9/60 = 15 % of a typical 60 dB displayed dynamic range"
            ),
            extreme_rationale="two sonographers' gain settings for the same view differ this much",
        ),
    )
    params_type = GainParams
    summary = "overall receive gain change in dB"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> GainParams:
        return GainParams(random_sign(generator) * severity)

    def _apply(self, batch: Batch, params: Sequence[GainParams]) -> Batch:
        gain_db = torch.tensor([p.gain_db for p in params], dtype=torch.float64, device=batch.device)
        return batch.replace(image=apply_gain_db(batch.image, gain_db))
