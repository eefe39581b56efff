"""What c3-ultrasound declares for experiments on ``us.demo``: held-out shifts (the first is the
one ``c3 experiment`` holds out); the budgets are c3-core's defaults and the in-domain split is
``test``. No torch import."""

from __future__ import annotations

from c3_core.api import ExperimentSpec, HeldOutShift, ShiftStep

EXPERIMENT = ExperimentSpec(
    shifts=(
        HeldOutShift(
            "us", "another sonographer: TGC slope + receive gain", ("us.attenuation_tgc", "us.gain"),
            (ShiftStep("us.attenuation_tgc", 2.25), ShiftStep("us.gain", 6.0)),
            "the same preset on other tissue with the depth-gain sliders left as they were (2.25 dB/cm net "
            "TGC slope error) and a 6 dB receive-gain change; training never sees a TGC or gain change",
        ),
        HeldOutShift(
            "us", "sparse-scattering tissue: non-Rayleigh speckle", ("us.speckle",),
            (ShiftStep("us.speckle", 0.6),),
            "tissue with few effective scatterers per resolution cell: K-distributed speckle of contrast 0.6 "
            "(fully developed speckle is 0.52); training never sees a speckle change",
        ),
    ),
)
