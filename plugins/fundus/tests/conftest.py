"""Shared helpers: batches from the demo cohort and from scikit-image's real fundus images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from c3_core.batch import Batch
from c3_fundus.data.demo import FundusDemo


def _make_batch(image: torch.Tensor, mask: torch.Tensor | None = None, spacing: float = 0.1, extras: dict | None = None) -> Batch:
    b = image.shape[0]
    return Batch(image, tuple(f"fundus-test-{i}" for i in range(b)), "fundus", "srgb", ((spacing, spacing),) * b, mask=mask, extras=extras or {})


@pytest.fixture(scope="session")
def make_batch():  # noqa: ANN201
    """``make_batch(image, mask=None, spacing=0.1, extras=None)`` -> a fundus sRGB Batch."""
    return _make_batch


@pytest.fixture(scope="session")
def retina() -> torch.Tensor:
    """scikit-image's real colour fundus photograph (CC0), sRGB (1, 3, 256, 256)."""
    img = torch.from_numpy(np.array(skdata.retina())).permute(2, 0, 1).float()[None] / 255.0
    return torch.nn.functional.interpolate(img, size=(256, 256), mode="area")


@pytest.fixture(scope="session")
def microaneurysm_batch() -> Batch:
    """scikit-image's real retina crop with microaneurysms (CC0) and a mask of its dark dots.

    The crop is greyscale (green-channel-like); it is tinted to fundus colours in linear light.
    Microaneurysms are the small dark blobs: black top-hat (disc radius 4 px) above its 99.3rd
    percentile, kept only where the blob is small.
    """
    from skimage.morphology import black_tophat, disk

    grey = np.asarray(skdata.microaneurysms(), dtype=np.float32) / 255.0
    hat = black_tophat(grey, disk(4))
    mask = hat > np.quantile(hat, 0.993)
    g = torch.from_numpy(grey / grey.max())
    lin = g**2.2
    rgb_lin = torch.stack([lin * 1.0, lin * 0.45, lin * 0.15]).clamp(0, 1)
    from c3_fundus.colour import linear_to_srgb

    image = linear_to_srgb(rgb_lin)[None]
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    return _make_batch(image, torch.cat([m, torch.zeros_like(m), torch.zeros_like(m)], 1), spacing=0.01)


@pytest.fixture(scope="session")
def demo_lesion_batch() -> Batch:
    """Four demo test cases with microaneurysms (true grade >= 2), with masks and FOV."""
    ds = FundusDemo("test")
    picked = [ds[i] for i in range(len(ds)) if ds.true_grade(i) >= 2][:4]
    from c3_core.batch import collate

    return collate(picked)
