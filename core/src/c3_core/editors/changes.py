"""Moved to :mod:`c3_core.truth` (the contract layer: ``apply_plans`` and scoring need it);
these names stay importable from here."""

from c3_core.truth import (  # noqa: F401
    UNKNOWN_CLASS,
    label_known,
    mask_known,
    plan_changes,
    set_unknown,
    truth_change,
    truth_field,
    truth_record,
    unknown_like,
)
