"""What c3-mri declares for experiments on ``mri.demo``: held-out shifts (the first is the one
``c3 experiment`` holds out), budgets for its small 3-D volumes and the in-domain split. No torch
import."""

from __future__ import annotations

from c3_core.experiment_spec import ExperimentSpec, HeldOutShift, ShiftStep

EXPERIMENT = ExperimentSpec(
    shifts=(
        HeldOutShift(
            "mri", "unseen site: protocol contrast + receive bias", ("mri.contrast", "mri.bias_field"),
            (ShiftStep("mri.contrast", 0.75), ShiftStep("mri.bias_field", 0.2)),
            "a site whose FLAIR protocol differs by 75 % of the admissible TR/TE/TI/flip range, with a "
            "strong coil bias (0.2 log-gain per Legendre term); training never sees a contrast or bias change",
        ),
        HeldOutShift(
            "mri", "fast protocol: thick slices + low SNR", ("mri.slice_profile", "mri.noise"),
            (ShiftStep("mri.slice_profile", 4.0), ShiftStep("mri.noise", 15.0)),
            "a fast clinical series with thick slices (4 mm slice-profile FWHM) and low SNR (15 against "
            "white matter); training never sees a slice-thickness or noise change",
        ),
    ),
    in_domain_split="val",
    members="c3_mri.members:demo_member",
    in_domain_note="mri.demo's test split is the held-out site C; its val split holds unseen cases of the "
    "training sites A and B",
    budgets={
        "quick": {"train_cases": 2, "test_cases": 2, "batch_size": 2},
        "default": {"epochs": 4, "train_cases": 24, "test_cases": 8, "batch_size": 2, "k_eval": 3},
        "powered": {"epochs": 4, "train_cases": 48, "test_cases": 60, "batch_size": 2, "k_eval": 2, "init": "demo"},
        "full": {"epochs": 150, "batch_size": 4},
    },
)
