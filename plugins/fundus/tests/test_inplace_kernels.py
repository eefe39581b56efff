"""The in-place and gathered colour kernels of the hot path agree with the reference forms."""

from __future__ import annotations

import torch

from c3_core.seeding import generator_from_seed
from c3_fundus.colour import linear_to_srgb, srgb_to_linear
from c3_fundus.functional.field_of_view import DARK_TRANSMISSION, aperture_in_srgb_
from c3_fundus.functional.geometry import circular_aperture, image_centre
from c3_fundus.functional.srgb import (
    linear_to_srgb_,
    linear_to_srgb_fast,
    power_law,
    power_law_,
    srgb_to_linear_,
    srgb_to_linear_fast,
)
from c3_fundus.operators.field_of_view import FieldOfView
from c3_fundus.operators.sensor import Sensor


def _values() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 33, 35, generator=g) * 1.2 - 0.1  # out of range too: the kernels clip
    x[0, 0, 0, :8] = torch.tensor([0.0, 0.0031308, 0.04045, 1.0, 0.04, 0.041, 0.003, 0.0032])  # the knees
    return x


def test_in_place_forms_are_bit_identical_to_the_fast_forms() -> None:
    x = _values()
    assert torch.equal(srgb_to_linear_(x.clone()), srgb_to_linear_fast(x))
    assert torch.equal(linear_to_srgb_(x.clone()), linear_to_srgb_fast(x))
    e = torch.full((2, 1, 1, 1), 0.8)
    assert torch.equal(power_law_(x.clone(), e), power_law(x, e))


def test_in_place_forms_fall_back_when_autograd_records() -> None:
    x = _values().clamp(0.01, 0.99).requires_grad_()
    y = linear_to_srgb_(srgb_to_linear_(x))
    y.sum().backward()
    assert torch.allclose(y, x, atol=1e-6) and x.grad is not None and bool(torch.isfinite(x.grad).all())


def _aperture(b: int, h: int, w: int, frac: float) -> torch.Tensor:
    return circular_aperture((h, w), image_centre((h, w), b, "cpu"), torch.full((b,), frac * min(h, w) / 2), "cpu")


def test_aperture_in_srgb_matches_the_round_trip() -> None:
    x = torch.rand(2, 3, 96, 100, generator=torch.Generator().manual_seed(1))
    x[:, :, 40:44, :] = torch.linspace(0.0, 0.1, 100)  # dark values around the sRGB knee
    a = _aperture(2, 96, 100, 0.4)
    assert bool(((a > 0) & (a < 1)).any()) and bool((a == 1).any()) and bool((a == 0).any())
    ref = linear_to_srgb(srgb_to_linear(x) * a)
    out = aperture_in_srgb_(x.clone(), a)
    # float32 rounding of the round trip, and at most 12.92 · 2^-24 where the sigmoid's tail is cut
    assert torch.allclose(out, ref, rtol=0, atol=8e-7)
    inside = (a == 1).expand_as(x)
    assert torch.equal(out[inside], x[inside])  # an open aperture passes the values as they are
    assert bool((out[(a < DARK_TRANSMISSION).expand_as(x)] == 0).all())
    edge = ((a >= DARK_TRANSMISSION) & (a < 1)).expand_as(x)
    assert torch.allclose(out[edge], ref[edge], rtol=0, atol=5e-7)


def test_aperture_in_srgb_is_batch_invariant_and_deterministic() -> None:
    x = _values().clamp(0.0, 1.0)
    a = _aperture(2, 33, 35, 0.6)
    whole = aperture_in_srgb_(x.clone(), a)
    assert torch.equal(whole, aperture_in_srgb_(x.clone(), a))
    for i in range(2):
        assert torch.equal(whole[i : i + 1], aperture_in_srgb_(x[i : i + 1].clone(), a[i : i + 1]))


def test_field_of_view_image_agrees_with_the_previous_round_trip(demo_lesion_batch) -> None:  # noqa: ANN001
    """Version 2 skips the round trip where the aperture is open and keeps no light below a transmission
    of 2^-24: within float32 rounding of version 1 (8e-7 of the sRGB range)."""
    from c3_fundus.functional.field_of_view import resample, zoom_grid
    from c3_fundus.operators._base import per_sample

    b = demo_lesion_batch
    op = FieldOfView()
    params = [op.sample_params(b.case_info(i), generator_from_seed(i), op.severity.extreme) for i in range(b.size)]
    out = op.apply(b, params)
    h, w = b.image.shape[-2:]
    zoom = per_sample(params, "zoom", "cpu")
    shift = torch.stack([per_sample(params, "shift_row", "cpu"), per_sample(params, "shift_col", "cpu")], 1)
    radius = per_sample(params, "aperture_radius_frac", "cpu") * min(h, w) / 2
    aperture = circular_aperture((h, w), image_centre((h, w), b.size, "cpu"), radius, "cpu")
    previous = linear_to_srgb(srgb_to_linear(resample(b.image, zoom_grid((h, w), zoom, shift))) * aperture)
    assert torch.allclose(out.image, previous, rtol=0, atol=8e-7)


def test_sensor_decodes_only_the_raw_plane_bit_identically(demo_lesion_batch) -> None:  # noqa: ANN001
    """The batched path decodes the raw CFA plane alone; the general path decodes all three channels."""
    b = demo_lesion_batch
    op = Sensor()
    params = [op.sample_params(b.case_info(i), generator_from_seed(i), 1500.0) for i in range(b.size)]
    general = linear_to_srgb_fast(op._apply_linear(srgb_to_linear_fast(b.image), b, params))
    assert torch.equal(op.apply(b, params).image, general)
