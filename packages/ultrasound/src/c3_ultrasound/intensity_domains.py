"""The ultrasound intensity domains, declared for c3-core (no torch: the plugin hook imports this).

``ENVELOPE`` is what the operators, the demo cohort and the model take; ``B_MODE`` is the
log-compressed grey level a scanner shows (:func:`c3_ultrasound.domains.envelope_to_bmode`).
"""

from __future__ import annotations

from c3_core.api import Domain

ENVELOPE = Domain(
    "envelope",
    "ultrasound echo envelope amplitude, linear, before log compression",
    low=0.0,
    display="c3_ultrasound.domains:envelope_display",
    display_span=60.0,  # dB: a scanner's usual displayed dynamic range
)
B_MODE = Domain("b_mode", "log-compressed ultrasound grey level (B-mode display)", low=0.0, high=1.0)
