"""Converters between the envelope domain and B-mode display (log compression).

A scanner displays ``20 log10(A / A_ref)`` dB mapped linearly over a dynamic range ``DR`` dB onto
[0, 1]: 1 at the reference amplitude, 0 at ``DR`` dB below it (and anything weaker). The
reference amplitude is fixed (not the image maximum), so gain changes stay visible, as they do on
a real scanner.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_DYNAMIC_RANGE_DB = 60.0
DEFAULT_REFERENCE = 1.0


def envelope_to_bmode(
    envelope: Tensor, dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB, reference: float = DEFAULT_REFERENCE
) -> Tensor:
    """Log-compress envelope amplitude (>= 0) to B-mode grey levels in [0, 1]."""
    if dynamic_range_db <= 0:
        raise ValueError(f"dynamic range must be > 0 dB, got {dynamic_range_db}")
    floor = reference * 10.0 ** (-dynamic_range_db / 20.0)
    db = 20.0 * torch.log10(envelope.clamp_min(floor * 1e-3) / reference)
    return (1.0 + db / dynamic_range_db).clamp(0.0, 1.0)


def envelope_display(envelope: Tensor) -> Tensor:
    """Envelope amplitude -> dB (``20 log10``, floored at 1e-12) for viewing; the viewer windows it."""
    return 20 * torch.log10(envelope.clamp_min(1e-12))


def bmode_to_envelope(
    bmode: Tensor, dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB, reference: float = DEFAULT_REFERENCE
) -> Tensor:
    """Invert :func:`envelope_to_bmode` for grey levels in [0, 1] (0 maps to the floor, DR dB down)."""
    if dynamic_range_db <= 0:
        raise ValueError(f"dynamic range must be > 0 dB, got {dynamic_range_db}")
    return reference * 10.0 ** ((bmode.clamp(0.0, 1.0) - 1.0) * dynamic_range_db / 20.0)
