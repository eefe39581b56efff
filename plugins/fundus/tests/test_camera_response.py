"""Camera response: white balance round-trips, exposure is a linear-light gain, gamma on linear light."""

from __future__ import annotations

import torch

from c3_fundus.colour import linear_to_srgb, srgb_to_linear, white_balance_gains
from c3_fundus.operators.camera_response import CameraResponse, CameraResponseParams


def test_white_balance_round_trips(retina, make_batch) -> None:  # noqa: ANN001
    img = torch.nn.functional.interpolate(retina, size=(64, 64), mode="area") * 0.8  # no channel clips
    op = CameraResponse()
    there = op.apply(make_batch(img), [CameraResponseParams(0.0, 40.0, 1.0)])
    assert not torch.allclose(there.image, img, atol=1e-3)
    back = op.apply(there, [CameraResponseParams(0.0, -40.0, 1.0)])
    assert torch.allclose(back.image, img, atol=2e-4)
    gains = white_balance_gains(torch.tensor([40.0, -40.0]))
    assert torch.allclose(gains[0] * gains[1], torch.ones(3), atol=1e-6)
    assert gains[0, 0] > 1 > gains[0, 2]  # warmer light: more red, less blue


def test_exposure_is_a_linear_light_gain(make_batch) -> None:  # noqa: ANN001
    lin = torch.full((1, 3, 8, 8), 0.1)
    out = CameraResponse().apply(make_batch(linear_to_srgb(lin)), [CameraResponseParams(1.0, 0.0, 1.0)])
    assert torch.allclose(srgb_to_linear(out.image), torch.full_like(lin, 0.2), atol=1e-5)


def test_tone_gamma_acts_on_linear_light(make_batch) -> None:  # noqa: ANN001
    lin = torch.full((1, 3, 4, 4), 0.25)
    out = CameraResponse().apply(make_batch(linear_to_srgb(lin)), [CameraResponseParams(0.0, 0.0, 0.5)])
    assert torch.allclose(srgb_to_linear(out.image), torch.full_like(lin, 0.5), atol=1e-5)


def test_identity_at_zero_severity(retina, make_batch) -> None:  # noqa: ANN001
    op = CameraResponse()
    p = op.sample_params(make_batch(retina).case_info(0), torch.Generator().manual_seed(0), 0.0)
    assert p == CameraResponseParams(0.0, 0.0, 1.0)
    assert torch.allclose(op.apply(make_batch(retina), [p]).image, retina, atol=1e-5)
