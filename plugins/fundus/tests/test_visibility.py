"""Lesion preservation: the shared visibility measure and every operator's check.

The check must fire on a haze strong enough to hide microaneurysms and stay quiet on mild
settings, on the procedural cohort and on scikit-image's real microaneurysm crop.
"""

from __future__ import annotations

import pytest
import torch

from c3_core.seeding import generator_from_seed
from c3_fundus.colour import srgb_to_linear
from c3_fundus.functional.visibility import lesion_contrast, lesion_visibility
from c3_fundus.operators.camera_response import CameraResponse
from c3_fundus.operators.field_of_view import FieldOfView
from c3_fundus.operators.illumination import Illumination, Vignetting
from c3_fundus.operators.jpeg import Jpeg
from c3_fundus.operators.optics import Optics, OpticsParams
from c3_fundus.operators.sensor import Sensor

ALL_OPERATORS = (Illumination, Vignetting, Sensor, CameraResponse, Optics, Jpeg, FieldOfView)


def _haze(fraction: float, sigma_mm: float = 0.5) -> OpticsParams:
    return OpticsParams(0.0, 0.0, 0.0, fraction, sigma_mm, 0.0, 0.0, 0.0, 0.05)


def test_weber_contrast_by_hand() -> None:
    lin = torch.full((1, 3, 21, 21), 0.2)
    lin[:, :, 10, 10] = 0.1  # one dark dot: contrast |0.1 − 0.2| / 0.2
    mask = torch.zeros(1, 1, 21, 21)
    mask[:, :, 10, 10] = 1
    c, n = lesion_contrast(lin, mask)
    assert torch.allclose(c, torch.tensor([[0.5]])) and float(n) == 1
    vis, worst = lesion_visibility(lin, 0.5 * lin + 0.1, mask)  # veil: contrast 0.05 / 0.2
    assert torch.allclose(vis, torch.tensor([0.5])) and int(worst) == 0
    vis, worst = lesion_visibility(lin, lin, torch.zeros_like(mask))
    assert float(vis) == 1.0 and int(worst) == -1  # no lesions: nothing to lose


def test_check_fires_on_strong_haze_not_on_mild_demo(demo_lesion_batch) -> None:  # noqa: ANN001
    op = Optics(components=["haze"])
    b = demo_lesion_batch
    mild = [_haze(0.15)] * b.size
    strong = [_haze(0.9, 1.5)] * b.size
    assert op.check(b, op.apply(b, mild), mild) == [None] * b.size
    reasons = op.check(b, op.apply(b, strong), strong)
    assert all(r is not None and r.startswith("lesion visibility") and "fundus.optics" in r for r in reasons), reasons


def test_check_fires_on_strong_haze_not_on_mild_real_microaneurysms(microaneurysm_batch) -> None:  # noqa: ANN001
    op = Optics(components=["haze"])
    b = microaneurysm_batch
    assert float(b.mask[:, 0].sum()) > 10
    assert op.check(b, op.apply(b, [_haze(0.1)]), [_haze(0.1)]) == [None]
    reason = op.check(b, op.apply(b, [_haze(0.9, 0.2)]), [_haze(0.9, 0.2)])[0]
    assert reason is not None and "microaneurysms" in reason, reason


@pytest.mark.parametrize("cls", ALL_OPERATORS, ids=lambda c: c.id)
def test_every_operator_checks_lesions_with_the_shared_measure(cls, demo_lesion_batch) -> None:  # noqa: ANN001
    op = cls()
    b = demo_lesion_batch
    params = [op.sample_params(b.case_info(i), generator_from_seed(i), op.severity.levels[0]) for i in range(b.size)]
    out = op.apply(b, params)
    assert op.check(b, out, params) == [None] * b.size  # mild settings keep lesions visible
    flat = out.replace(image=torch.full_like(out.image, 0.3))  # lesions erased
    reasons = op.check(b, flat, params)
    assert all(r is not None and r.startswith("lesion visibility 0.00 < 0.50") for r in reasons)


@pytest.mark.parametrize("cls", ALL_OPERATORS, ids=lambda c: c.id)
def test_every_operator_runs_on_the_real_retina(cls, retina, make_batch) -> None:  # noqa: ANN001
    batch = make_batch(retina, spacing=12.0 / 256)
    op = cls()
    out = op(batch, generator_from_seed(0), op.severity.levels[-1])
    assert out.image.shape == batch.image.shape and bool(torch.isfinite(out.image).all())
    assert 0.0 <= float(out.image.min()) and float(out.image.max()) <= 1.0
    assert not torch.equal(out.image, batch.image), op.id
    assert op.check(batch, out, [None]) == [None]  # no lesion mask: nothing to reject


def test_visibility_is_computed_in_linear_light(demo_lesion_batch) -> None:  # noqa: ANN001
    b = demo_lesion_batch
    c_lin, _ = lesion_contrast(srgb_to_linear(b.image), b.mask)
    c_enc, _ = lesion_contrast(b.image, b.mask)
    assert not torch.allclose(c_lin, c_enc)  # the encoding compresses contrast; the measure must not use it
