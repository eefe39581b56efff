"""Small CT test batches from data that installed packages ship (for tests and the conformance kit).

* pydicom's ``CT_small.dcm`` (128 × 128, 0.66 mm pixels, 5 mm slice), converted to HU with its
  rescale slope/intercept;
* scikit-image's Shepp–Logan phantom, its grey levels mapped piecewise-linearly to HU
  (0 → −1000 air, 0.2 → 0 brain, 1 → +1000 skull) at 1.5 mm pixels.

3-D batches are made by stacking a slice under a smooth ellipsoidal taper along z, so that
partial-volume averaging has something to average.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.batch import Batch, Sample, collate

SHEPP_LOGAN_PIXEL_MM = 1.5


def ct_small_hu() -> tuple[Tensor, tuple[float, float], float]:
    """(HU slice (H, W), pixel spacing mm, slice thickness mm) of pydicom's CT_small.dcm."""
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    if path is None:
        raise FileNotFoundError("pydicom's bundled test file CT_small.dcm is not installed")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    sy, sx = (float(v) for v in ds.PixelSpacing)
    return torch.from_numpy(hu), (sy, sx), float(ds.SliceThickness)


def shepp_logan_hu(size: int = 128) -> Tensor:
    """scikit-image's Shepp–Logan phantom resampled to ``size`` and mapped to HU."""
    from skimage.data import shepp_logan_phantom

    grey = F.interpolate(torch.from_numpy(shepp_logan_phantom()).float()[None, None], size=(size, size), mode="area")[0, 0]
    return torch.where(grey < 0.2, -1000.0 + grey * 5000.0, (grey - 0.2) * 1250.0)


def _resize(image: Tensor, size: int) -> Tensor:
    return F.interpolate(image[None, None], size=(size, size), mode="area")[0, 0]


def stack_under_taper(hu: Tensor, depth: int) -> Tensor:
    """A volume ``(..., depth, H, W)`` in HU from slices ``(..., H, W)``: the slice repeated along z
    under a smooth ellipsoidal taper (tissue fades towards air at both ends of the stack)."""
    z = torch.linspace(-1, 1, depth, dtype=hu.dtype, device=hu.device).view(-1, 1, 1)
    taper = (1 - 0.6 * z**2).clamp_min(0)
    return -1000.0 + (hu.unsqueeze(-3) + 1000.0) * taper


def ct_batch(spatial_dims: int = 2, size: int = 48, depth: int = 4) -> Batch:
    """Two cases (CT_small, Shepp–Logan) in HU, ``(2, 1, size, size)`` or ``(2, 1, depth, size, size)``."""
    hu, (sy, sx), thickness = ct_small_hu()
    scale = hu.shape[-1] / size
    slices = [(_resize(hu, size), (sy * scale, sx * scale), thickness), (shepp_logan_hu(size), (SHEPP_LOGAN_PIXEL_MM * 128 / size,) * 2, 2.5)]
    samples = []
    for k, (img, (py, px), dz) in enumerate(slices):
        if spatial_dims == 3:
            image, spacing = stack_under_taper(img, depth)[None], (dz, py, px)
        elif spatial_dims == 2:
            image, spacing = img[None], (py, px)
        else:
            raise ValueError(f"ct_batch: spatial_dims must be 2 or 3, got {spatial_dims}")
        samples.append(Sample(image.float().contiguous(), f"ct-example-{k}", "ct", "hu", spacing))
    return collate(samples)
