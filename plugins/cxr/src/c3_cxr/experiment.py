"""What c3-cxr declares for experiments on ``cxr.demo``: held-out shifts (the first is the one
``c3 experiment`` holds out), budgets and the in-domain split. No torch import."""

from __future__ import annotations

from c3_core.experiment_spec import ExperimentSpec, HeldOutShift, ShiftStep

EXPERIMENT = ExperimentSpec(
    shifts=(
        HeldOutShift(
            "cxr", "unseen vendor: tone curve + low dose", ("cxr.tone", "cxr.dose"),
            (ShiftStep("cxr.tone", 0.75), ShiftStep("cxr.dose", 0.12)),
            "another vendor's look-up table (75 % of the vendor range) on a 12 %-dose exposure; "
            "training never sees a tone or dose change",
        ),
        HeldOutShift(
            "cxr", "bedside AP: no anti-scatter grid + positioning", ("cxr.scatter", "cxr.geometry"),
            (ShiftStep("cxr.scatter", 0.5), ShiftStep("cxr.geometry", 0.75)),
            "a bedside AP exam without an anti-scatter grid (mean scatter-to-primary ratio 0.5) and the tilt, "
            "off-centring and magnification of a supine patient (75 % of the positioning range); training never "
            "sees scatter or a positioning change",
        ),
    ),
    members="c3_cxr.members:demo_member",
)
