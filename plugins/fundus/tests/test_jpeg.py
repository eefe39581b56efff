"""JPEG in torch against Pillow (libjpeg) at the same quality.

Stated agreement (8-bit code values, 256×256 crop of skimage's retina, qualities 95-10, 4:4:4 and
4:2:0): mean |ours − Pillow| < 1.0 level, 93 % of values within 2 levels, and the RMSE of each
against the original within 5 % of each other. Differences come from libjpeg's integer DCT and
its rounding of chroma subsampling; the quantisation tables are identical.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from c3_fundus.functional.jpeg import jpeg_round_trip, quantisation_tables
from c3_fundus.operators.jpeg import Jpeg, JpegParams


def _pillow(arr: np.ndarray, quality: int, subsampling: int) -> tuple[np.ndarray, dict]:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64), dict(im.quantization)


@pytest.fixture(scope="module")
def retina_u8(retina) -> np.ndarray:  # noqa: ANN001
    return (retina[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("quality", [95, 75, 50, 30, 10])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_agrees_with_pillow(retina_u8: np.ndarray, quality: int, subsampling: int) -> None:
    pil, tables = _pillow(retina_u8, quality, subsampling)
    x = torch.from_numpy(retina_u8.copy()).permute(2, 0, 1).float()[None] / 255
    ours = jpeg_round_trip(x, torch.tensor([float(quality)]), chroma_subsampling=subsampling == 2)
    ours = ours[0].permute(1, 2, 0).numpy() * 255
    diff = np.abs(ours - pil)
    assert diff.mean() < 1.0
    assert (diff <= 2).mean() > 0.93
    rmse_pil = np.sqrt(((pil - retina_u8) ** 2).mean())
    rmse_ours = np.sqrt(((ours - retina_u8) ** 2).mean())
    assert abs(rmse_ours - rmse_pil) / rmse_pil < 0.05
    # the quantisation tables are libjpeg's exactly (Pillow reports them in natural order)
    ours_tables = quantisation_tables(torch.tensor([float(quality)]))[0]
    for k in (0, 1):
        assert ours_tables[k].flatten().tolist() == list(tables[k])


def test_batched_per_sample_quality_and_odd_sizes() -> None:
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(0))
    both = jpeg_round_trip(x.expand(2, 3, 37, 45), torch.tensor([90.0, 20.0]))
    assert both.shape == (2, 3, 37, 45)
    assert torch.equal(both[1], jpeg_round_trip(x, torch.tensor([20.0]))[0])
    assert (both[1] - x).abs().mean() > (both[0] - x).abs().mean()


def test_gradient_flows_through_rounding() -> None:
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    jpeg_round_trip(x, torch.tensor([50.0])).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_quality_100_is_nearly_lossless(retina, make_batch) -> None:  # noqa: ANN001
    out = Jpeg(chroma_subsampling=False).apply(make_batch(retina), [JpegParams(100.0)])
    assert (out.image - retina).abs().mean() * 255 < 1.0
