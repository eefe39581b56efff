"""Generic image corruptions in display space (ImageNet-C / MedMNIST-C style), as functional kernels.

These are *not* acquisition physics: they are the yardstick the failure-prediction study compares
the physics neighbourhood against. Every kernel works on a display image ``u`` in [0, 1]
(``(B, C, *spatial)``, float), the way a viewer shows it, and returns one of the same shape,
clamped to [0, 1]:

* :func:`display_window` maps an image to [0, 1] by its own 0.5-99.5 percentiles (the viewer's
  default window) and :func:`from_display_window` maps it back, so the corruptions can be applied
  to any intensity domain;
* :func:`gaussian_noise` adds N(0, sigma^2) per pixel (sigma in display units);
* :func:`gaussian_blur` blurs every spatial axis with a Gaussian of ``sigma`` pixels;
* :func:`contrast` scales the distance to each image's mean by ``factor`` (< 1 lowers contrast);
* :func:`jpeg` round-trips 2-D grey or RGB images through a JPEG codec at ``quality`` (1-100),
  slice by slice along the first spatial axis for 3-D volumes (OpenCV, the ``interventions``
  extra).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOW_PERCENTILE = 0.005
HIGH_PERCENTILE = 0.995


def display_window(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(u, lo, hi)``: ``x`` mapped linearly to [0, 1] by each image's 0.5 and 99.5 percentiles.

    ``lo`` and ``hi`` have shape ``(B, 1, ..., 1)``; a flat image gets a window of width 1.
    """
    flat = x.detach().flatten(1).float()
    q = torch.quantile(flat, torch.tensor([LOW_PERCENTILE, HIGH_PERCENTILE], dtype=flat.dtype), dim=1)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    lo, hi = q[0].view(shape).to(x.dtype), q[1].view(shape).to(x.dtype)
    hi = torch.where(hi > lo, hi, lo + 1)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0), lo, hi


def from_display_window(u: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """The inverse of :func:`display_window` (inside the window)."""
    return lo + u * (hi - lo)


def gaussian_noise(u: Tensor, sigma: float | Tensor, generator: torch.Generator) -> Tensor:
    """``u`` plus zero-mean Gaussian noise of standard deviation ``sigma`` (display units, >= 0)."""
    s = torch.as_tensor(sigma, dtype=u.dtype).reshape(-1, *([1] * (u.ndim - 1))) if torch.is_tensor(sigma) else sigma
    noise = torch.randn(u.shape, generator=generator, dtype=u.dtype, device=u.device)
    return (u + s * noise).clamp(0.0, 1.0)


def _kernel_1d(sigma: float, dtype: torch.dtype) -> Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(u: Tensor, sigma: float) -> Tensor:
    """``u`` blurred separably along every spatial axis by a Gaussian of ``sigma`` pixels (reflect padding)."""
    if sigma <= 0:
        return u.clone()
    k = _kernel_1d(float(sigma), u.dtype).to(u.device)
    d = u.ndim - 2
    b, c = u.shape[:2]
    out = u.reshape(b * c, 1, *u.shape[2:])
    conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
    pad = k.numel() // 2
    for axis in range(d):
        shape = [1, 1] + [1] * d
        shape[2 + axis] = k.numel()
        pads = [0, 0] * d
        pads[2 * (d - 1 - axis)] = pads[2 * (d - 1 - axis) + 1] = pad
        mode = "reflect" if min(u.shape[2:]) > pad else "replicate"
        out = conv(F.pad(out, pads, mode=mode), k.view(shape))
    return out.reshape(u.shape).clamp(0.0, 1.0)


def contrast(u: Tensor, factor: float | Tensor) -> Tensor:
    """Each image's distance to its own mean scaled by ``factor`` (> 0; 1 = unchanged)."""
    f = torch.as_tensor(factor, dtype=u.dtype).reshape(-1, *([1] * (u.ndim - 1))) if torch.is_tensor(factor) else factor
    mean = u.mean(dim=tuple(range(1, u.ndim)), keepdim=True)
    return (mean + f * (u - mean)).clamp(0.0, 1.0)


def _jpeg_2d(img: Tensor, quality: int) -> Tensor:
    import cv2
    import numpy as np

    arr = (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    hwc = np.ascontiguousarray(arr.transpose(1, 2, 0) if arr.shape[0] == 3 else arr[0])
    ok, buf = cv2.imencode(".jpg", hwc, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("jpeg: OpenCV could not encode the image")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    out = torch.from_numpy(dec.transpose(2, 0, 1).copy() if dec.ndim == 3 else dec[None].copy())
    return out.to(img.dtype) / 255.0


def jpeg(u: Tensor, quality: int) -> Tensor:
    """``u`` encoded and decoded as 8-bit JPEG at ``quality`` (1-100; lower = stronger artefacts).

    Images with 1 or 3 channels; 3-D volumes are compressed slice by slice (first spatial axis).
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg: quality must be in 1..100, got {quality}")
    if u.shape[1] not in (1, 3):
        raise ValueError(f"jpeg: needs 1 or 3 channels, got {u.shape[1]}")
    out = torch.empty_like(u)
    for i in range(u.shape[0]):
        if u.ndim == 4:
            out[i] = _jpeg_2d(u[i], quality).to(u.device)
        elif u.ndim == 5:
            for z in range(u.shape[2]):
                out[i, :, z] = _jpeg_2d(u[i, :, z], quality).to(u.device)
        else:
            raise ValueError(f"jpeg: needs a 2-D or 3-D image batch, got shape {tuple(u.shape)}")
    return out
