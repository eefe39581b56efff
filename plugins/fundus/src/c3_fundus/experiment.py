"""What c3-fundus declares for experiments on ``fundus.demo``: held-out shifts (the first is the
one ``c3 experiment`` holds out), budgets and the in-domain split. No torch import."""

from __future__ import annotations

from c3_core.experiment_spec import ExperimentSpec, HeldOutShift, ShiftStep

EXPERIMENT = ExperimentSpec(
    shifts=(
        HeldOutShift(
            "fundus", "unseen camera: response + sensor", ("fundus.camera_response", "fundus.sensor"),
            (ShiftStep("fundus.camera_response", 0.8), ShiftStep("fundus.sensor", 1500.0)),
            "a camera with a different exposure / white balance / tone curve (80 % of the camera-to-camera "
            "range) and a small-pixel sensor (1500 e- full well); training never sees either",
        ),
        HeldOutShift(
            "fundus", "handheld camera: optics + vignetting", ("fundus.optics", "fundus.vignetting"),
            (ShiftStep("fundus.optics", 0.75), ShiftStep("fundus.vignetting", 0.45)),
            "a handheld non-mydriatic camera: defocus, haze and flare at 75 % of the admissible optics range "
            "and a periphery losing 45 % of the on-axis light; training never sees an optics or vignetting change",
        ),
    ),
    budgets={"default": {"train_cases": 96}},
    members="c3_fundus.members:demo_member",
)
