"""Field of view: magnification and aperture; lesion masks and the FOV mask move with the image."""

from __future__ import annotations

import torch

from c3_fundus.colour import srgb_to_linear
from c3_fundus.operators.field_of_view import FieldOfView, FieldOfViewParams


def test_identity_params_keep_the_image(demo_lesion_batch) -> None:  # noqa: ANN001
    b = demo_lesion_batch.select([0])
    out = FieldOfView().apply(b, [FieldOfViewParams(1.0, 0.0, 0.0, 1.0)])
    assert torch.allclose(out.image, b.image, atol=5e-4)  # the soft aperture edge (0.5 px) only
    assert torch.equal(out.mask, b.mask) and torch.equal(out.extras["fov"], b.extras["fov"])


def test_fov_mask_matches_the_lit_region_after_reframing(demo_lesion_batch) -> None:  # noqa: ANN001
    params = [FieldOfViewParams(1.15, 0.02, -0.02, 0.8)] * demo_lesion_batch.size
    out = FieldOfView().apply(demo_lesion_batch, params)
    lit = srgb_to_linear(out.image).amax(dim=1, keepdim=True) > 0.02  # visibly lit
    fov = out.extras["fov"] > 0.5
    agree = (lit == fov).float().mean()
    assert agree > 0.96  # the two differ only on a 1-2 px rim (bilinear edge, soft aperture)
    assert float(fov.float().mean()) < float((demo_lesion_batch.extras["fov"] > 0.5).float().mean())
    assert out.mask is not None and bool(((out.mask > 0.5) <= fov).all())  # no lesion outside the FOV


def test_magnification_scales_distances(make_batch) -> None:  # noqa: ANN001
    n = 101
    img = torch.zeros(1, 3, n, n)
    img[:, :, 50, 70] = 1.0  # a dot 20 px right of the centre
    out = FieldOfView().apply(make_batch(img), [FieldOfViewParams(1.5, 0.0, 0.0, 1.0)])
    col = int(out.image[0, 1, 50].argmax())
    assert abs((col - 50) - 30) <= 1  # 20 px × 1.5


def test_lesion_check_rejects_cropping_lesions_away(demo_lesion_batch) -> None:  # noqa: ANN001
    op = FieldOfView()
    mild = [FieldOfViewParams(1.0, 0.0, 0.0, 0.97)] * demo_lesion_batch.size
    harsh = [FieldOfViewParams(1.0, 0.0, 0.0, 0.3)] * demo_lesion_batch.size
    assert op.check(demo_lesion_batch, op.apply(demo_lesion_batch, mild), mild) == [None] * demo_lesion_batch.size
    reasons = op.check(demo_lesion_batch, op.apply(demo_lesion_batch, harsh), harsh)
    assert all(r is not None and r.startswith("lesion visibility") for r in reasons)
