"""Pure tensor kernels of the fundus camera model: (B, 3, H, W), no state, no randomness of their own.

Units: pixel distances in px unless a name says otherwise; light in linear relative radiance
unless a docstring says sRGB or 0..255 code values.
"""
