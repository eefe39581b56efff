"""Intensity domains: what the numbers in an image tensor mean.

Every operator states the domain it expects and returns; no operator silently assumes [0, 1].
Converters between domains live in the modality plugins, which know the physics.
"""

from __future__ import annotations

from enum import Enum


class IntensityDomain(str, Enum):
    """The physical meaning of image values."""

    COUNTS = "counts"  #: detected photon counts per pixel (>= 0)
    LOG_ATTENUATION = "log_attenuation"  #: radiograph line integral of mu, -ln(I / I0) (>= 0)
    HU = "hu"  #: CT Hounsfield units (water 0, air -1000)
    MAGNITUDE = "magnitude"  #: MRI magnitude signal, arbitrary but linear units (>= 0)
    LINEAR_RGB = "linear_rgb"  #: camera linear light, 3 channels, relative radiance in [0, 1]
    SRGB = "srgb"  #: sRGB-encoded colour in [0, 1]
    DISPLAY = "display"  #: display grey levels in [0, 1] after a LUT / window
    ENVELOPE = "envelope"  #: ultrasound echo envelope amplitude (>= 0), before log compression
    B_MODE = "b_mode"  #: log-compressed ultrasound in [0, 1]


def parse_domain(value: str | IntensityDomain) -> IntensityDomain:
    """Return the :class:`IntensityDomain` for ``value`` or raise a ValueError listing the valid names."""
    if isinstance(value, IntensityDomain):
        return value
    try:
        return IntensityDomain(value)
    except ValueError:
        names = ", ".join(d.value for d in IntensityDomain)
        raise ValueError(f"unknown intensity domain {value!r}; expected one of: {names}") from None
