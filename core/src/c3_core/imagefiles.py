"""Image files for ``c3 generate``: 16-bit PNG for 2-D, NIfTI (or .npy) for 3-D, byte-deterministic.

* 2-D images with 1 or 3 channels become **16-bit PNG** (greyscale or RGB), written by
  :func:`png16_bytes` straight from the PNG specification (no imaging library, fixed zlib level,
  no timestamps, so the same pixels always give the same bytes). Values are quantised linearly:
  ``value = offset + scale * stored``. Domains whose declared range is exactly [0, 1]
  (:attr:`Domain.unit_range <c3_core.domains.Domain.unit_range>`: sRGB, linear RGB, display, a
  plugin's B-mode) use ``offset 0, scale 1/65535``; every other domain (counts, log attenuation,
  HU, magnitude, an echo envelope) uses the image's own min..max, so the error is at most ``scale / 2``.
  ``offset`` and ``scale`` go into the file's provenance JSON.
* 3-D images become **NIfTI-1** (``.nii.gz``, float32, voxel size in the header, gzip without a
  timestamp) when nibabel is installed, else ``.npy`` (float32) — both exact.
* Anything else (2-D with 2 or 4+ channels) becomes ``.npy`` (float32, exact).
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from c3_core.domains import Domain

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
U16_MAX = 65535


@dataclass(frozen=True)
class EncodedImage:
    """File bytes, the file suffix and how stored values map back to the intensity domain."""

    data: bytes
    suffix: str
    encoding: dict[str, Any]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png16_bytes(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of ``pixels`` (uint16, ``(H, W)`` greyscale or ``(H, W, 3)`` RGB)."""
    if pixels.dtype != np.uint16:
        raise ValueError(f"png16_bytes needs uint16 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        colour, channels = 0, 1
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        colour, channels = 2, 3
    else:
        raise ValueError(f"png16_bytes takes (H, W) or (H, W, 3) pixels, got shape {pixels.shape}")
    h, w = pixels.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("png16_bytes: empty image")
    rows = np.ascontiguousarray(pixels.astype(">u2")).view(np.uint8).reshape(h, w * channels * 2)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], 1).tobytes()  # filter type 0 per row
    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def quantise_u16(image: np.ndarray, domain: Domain) -> tuple[np.ndarray, float, float]:
    """``(stored uint16, offset, scale)`` with ``value ≈ offset + scale * stored`` (see module doc)."""
    x = image.astype(np.float64)
    if domain.unit_range:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = float(x.min()), float(x.max())
    scale = (hi - lo) / U16_MAX if hi > lo else 1.0
    stored = np.clip(np.rint((x - lo) / scale), 0, U16_MAX).astype(np.uint16)
    return stored, lo, scale


def nifti_bytes(volume: np.ndarray, spacing: Sequence[float]) -> bytes:
    """A gzip'd NIfTI-1 image (float32) of ``volume (C, D, H, W)`` with voxel size ``spacing`` (mm).

    One channel is stored 3-D; several as 4-D with the channel last. The gzip header carries no
    timestamp, so equal inputs give equal bytes.
    """
    import nibabel as nib

    data = volume[0] if volume.shape[0] == 1 else np.moveaxis(volume, 0, -1)
    affine = np.diag([*map(float, spacing), 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(data.astype(np.float32)), affine)
    img.header.set_xyzt_units("mm")
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as float32 ``.npy`` bytes."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array.astype(np.float32)), allow_pickle=False)
    return buf.getvalue()


def encode_image(image: Tensor, domain: Domain, spacing: Sequence[float]) -> EncodedImage:
    """Encode one case ``image (C, *spatial)`` as described in the module docstring."""
    arr = image.detach().cpu().float().numpy()
    if not np.isfinite(arr).all():
        raise ValueError("encode_image: the image holds NaN or Inf values")
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        pixels = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
        stored, offset, scale = quantise_u16(pixels, domain)
        enc = {"format": "png16", "offset": offset, "scale": scale, "value": "offset + scale * stored",
               "channels": "grey" if arr.shape[0] == 1 else "rgb"}
        return EncodedImage(png16_bytes(stored), ".png", enc)
    if arr.ndim == 4:
        try:
            import nibabel  # noqa: F401
        except ImportError:
            pass
        else:
            return EncodedImage(nifti_bytes(arr, spacing), ".nii.gz", {"format": "nifti1", "dtype": "float32", "axes": "D, H, W[, C]"})
    return EncodedImage(npy_bytes(arr), ".npy", {"format": "npy", "dtype": "float32", "axes": "C, *spatial"})
