"""Fundus camera physics: vignetting law, shot-noise statistics, white balance, lesion visibility."""

from __future__ import annotations

import numpy as np
import torch
from skimage import data as skdata

from c3_core.batch import Batch
from c3_core.seeding import generator_from_seed
from c3_fundus.colour import linear_to_srgb, srgb_to_linear, white_balance_gains
from c3_fundus.data.demo import FundusDemo
from c3_fundus.operators.camera_response import CameraResponse, CameraResponseParams
from c3_fundus.operators.illumination import Illumination
from c3_fundus.operators.optics import Defocus, Haze, HazeParams
from c3_fundus.operators.sensor import Sensor, SensorParams
from c3_fundus.operators.vignetting import Vignetting, VignettingParams


def _batch(image: torch.Tensor, mask: torch.Tensor | None = None) -> Batch:
    b = image.shape[0]
    return Batch(image, tuple(f"e{i}" for i in range(b)), "fundus", "srgb", ((1.0, 1.0),) * b, mask=mask)


def _retina(size: int = 256) -> torch.Tensor:
    img = torch.from_numpy(skdata.retina()).permute(2, 0, 1).float()[None] / 255.0
    return torch.nn.functional.interpolate(img, size=(size, size), mode="area")


def test_srgb_round_trip() -> None:
    x = torch.linspace(0, 1, 1001)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6)


def test_vignetting_profile_matches_cos4_law() -> None:
    flat = linear_to_srgb(torch.full((1, 3, 101, 101), 0.5))
    p = VignettingParams(edge_falloff=0.4, centre_row=0.5, centre_col=0.5, fov_radius_frac=0.9)
    out = srgb_to_linear(Vignetting().apply(_batch(flat), [p]).image)[0, 1]
    radius = 0.9 * 101 / 2
    f = radius / np.tan(np.arccos((1 - 0.4) ** 0.25))
    r = np.arange(0, 50)
    expected = 0.5 * np.cos(np.arctan(r / f)) ** 4
    measured = out[50, 50 + r].numpy()
    assert np.allclose(measured, expected, atol=2e-3)


def test_shot_noise_variance_proportional_to_signal() -> None:
    levels = torch.tensor([0.05, 0.1, 0.2, 0.4])
    lin = levels.view(4, 1, 1, 1).expand(4, 3, 128, 128).contiguous()
    op = Sensor(read_noise_e=0.0, prnu=0.0, dsnu=0.0, bayer=False)
    photons = 2000.0
    params = [SensorParams(photons, 0.0, 0.0, 0.0, False, 100 + i, 7) for i in range(4)]
    noisy = op._apply_linear(lin, _batch(linear_to_srgb(lin)), params)
    var = noisy.var(dim=(1, 2, 3))
    # Poisson: var(electrons) = mean electrons -> var in [0,1] units = x / N
    assert torch.allclose(var, levels / photons, rtol=0.05)
    ratios = var / levels
    assert float(ratios.max() / ratios.min()) < 1.1


def test_bayer_demosaic_keeps_flat_colour() -> None:
    lin = torch.tensor([0.3, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 32, 32).contiguous()
    params = [SensorParams(1e9, 0.0, 0.0, 0.0, True, 1, 2)]
    out = Sensor(read_noise_e=0, prnu=0, dsnu=0)._apply_linear(lin, _batch(linear_to_srgb(lin)), params)
    assert torch.allclose(out, lin, atol=1e-3)


def test_white_balance_round_trips() -> None:
    img = _retina(64)
    shift = CameraResponseParams(exposure_stops=0.0, mired_shift=40.0, tone_gamma=1.0)
    back = CameraResponseParams(exposure_stops=0.0, mired_shift=-40.0, tone_gamma=1.0)
    op = CameraResponse()
    scaled = srgb_to_linear(img) * white_balance_gains(torch.tensor([40.0])).view(1, 3, 1, 1)
    keep = (scaled < 0.99).all()  # no channel clipped, so the round trip is exact
    there = op.apply(_batch(img), [shift])
    again = op.apply(there, [back])
    if keep:
        assert torch.allclose(again.image, img, atol=2e-4)
    gains = white_balance_gains(torch.tensor([40.0, -40.0]))
    assert torch.allclose(gains[0] * gains[1], torch.ones(3), atol=1e-6)


def test_lesion_check_fires_on_strong_haze_not_on_mild() -> None:
    ds = FundusDemo("test")
    sample = next(ds[i] for i in range(len(ds)) if ds[i].mask.sum() > 20)
    batch = _batch(sample.image[None], sample.mask[None])
    op = Haze()
    mild = op.apply(batch, [HazeParams(0.1)])
    strong = op.apply(batch, [HazeParams(0.8)])
    assert op.check(batch, mild, [HazeParams(0.1)]) == [None]
    reason = op.check(batch, strong, [HazeParams(0.8)])[0]
    assert reason is not None and reason.startswith("lesion visibility") and "fundus.haze" in reason


def test_lesion_check_on_real_microaneurysm_crop() -> None:
    grey_np = skdata.microaneurysms()  # a real retina crop (CC0) that ships with scikit-image
    grey = torch.from_numpy(np.asarray(grey_np, dtype=np.float32))
    grey = grey / grey.max()
    if grey.ndim == 3:
        grey = grey[..., 1]
    img = torch.stack([grey * 0.9, grey, grey * 0.5])[None]
    # microaneurysms: the darkest small blobs
    mask = (grey < torch.quantile(grey.flatten(), 0.01)).float()[None, None]
    batch = _batch(img.clamp(0, 1), mask)
    op = Haze()
    assert op.check(batch, op.apply(batch, [HazeParams(0.05)]), [HazeParams(0.05)]) == [None]
    assert op.check(batch, op.apply(batch, [HazeParams(0.8)]), [HazeParams(0.8)])[0] is not None


def test_operators_run_on_real_retina_photograph() -> None:
    batch = _batch(_retina(128))
    g = generator_from_seed(0)
    for op in (Illumination(), Vignetting(), Sensor(), CameraResponse(), Defocus(), Haze()):
        out = op(batch, g, op.severity.levels[-1])
        assert out.image.shape == batch.image.shape and torch.isfinite(out.image).all()
        assert 0.0 <= float(out.image.min()) and float(out.image.max()) <= 1.0
        assert not torch.equal(out.image, batch.image), op.id


def test_defocus_preserves_mean_and_lowers_sharpness() -> None:
    img = _retina(128)
    lin = srgb_to_linear(img)
    out = Defocus()._apply_linear(lin, _batch(img), [Defocus().params_type(2.0)])
    assert torch.allclose(out.mean(), lin.mean(), rtol=2e-3)
    grad = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean()  # noqa: E731
    assert grad(out) < 0.8 * grad(lin)
