"""Lesion preservation: the shared visibility measure and every operator's check.

The check must fire on a haze strong enough to hide microaneurysms and stay quiet on mild
settings, on the procedural cohort and on scikit-image's real microaneurysm crop.
"""

from __future__ import annotations

import pytest
import torch

from c3_core.seeding import generator_from_seed
from c3_fundus.colour import srgb_to_linear
from c3_fundus.data.demo import FundusDemo
from c3_fundus.functional.srgb import srgb_to_linear_fast
from c3_fundus.functional.visibility import lesion_contrast, lesion_visibility
from c3_fundus.operators._base import MIN_VISIBILITY
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


def _dense_visibility_float64(original: torch.Tensor, counterfactual: torch.Tensor, masks: torch.Tensor,
                              cf_masks: torch.Tensor | None, area_scale: torch.Tensor | None, ring_px: int = 4) -> torch.Tensor:
    """The measure's definition evaluated densely in float64, dilating with max-pooling: the
    reference the (sparse) implementation must agree with."""
    from torch.nn import functional as F

    def contrast(green: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lesion = (m > 0.5).double()
        near = F.max_pool2d(lesion.amax(1, keepdim=True), 3, stride=1, padding=1)
        ring = (F.max_pool2d(lesion, 2 * ring_px + 1, stride=1, padding=ring_px) - near).clamp_min(0)
        n_l, n_r = lesion.sum((2, 3)), ring.sum((2, 3))
        mean_l = (green * lesion).sum((2, 3)) / n_l.clamp_min(1)
        mean_r = (green * ring).sum((2, 3)) / n_r.clamp_min(1)
        valid = (n_l > 0) & (n_r > 0)
        return torch.where(valid, (mean_l - mean_r).abs() / mean_r.clamp_min(1e-6), 0.0), torch.where(valid, n_l, 0.0)

    c0, n0 = contrast(original[:, 1:2].double(), masks.double())
    c1, n1 = contrast(counterfactual[:, 1:2].double(), (masks if cf_masks is None else cf_masks).double())
    ratio = c1 / c0.clamp_min(1e-9)
    if cf_masks is not None:
        scale = torch.ones(len(n0), dtype=torch.float64) if area_scale is None else area_scale.double()
        ratio = ratio * ((n1 / scale.view(-1, 1)) / n0.clamp_min(1)).clamp(max=1.0)
    present = (c0 > 0) & (n0 > 0)
    worst = torch.where(present, ratio, float("inf")).min(1).values
    return torch.where(present.any(1), worst, 1.0)


def _random_lesions(g: torch.Generator, b: int = 5, h: int = 48, w: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear images and sparse 3-type masks (case 0 without lesions, case 1 with one type only)."""
    image = 0.05 + 0.9 * torch.rand((b, 3, h, w), generator=g)
    masks = (torch.rand((b, 3, h, w), generator=g) < 0.01).float()
    masks[0] = 0
    masks[1, 1:] = 0
    return image, masks


def test_visibility_agrees_with_the_dense_float64_definition() -> None:
    g = generator_from_seed(7)
    for trial in range(6):
        image, masks = _random_lesions(g)
        cf = image * (0.4 + 0.6 * torch.rand((image.shape[0], 1, 1, 1), generator=g)) + 0.03
        moved = torch.roll(masks, (trial % 3, 2), (2, 3)) if trial % 2 else None
        scale = 1.0 + torch.rand(image.shape[0], generator=g) if moved is not None else None
        vis, worst = lesion_visibility(image, cf, masks, moved, scale)
        ref = _dense_visibility_float64(image, cf, masks, moved, scale)
        assert vis.dtype == torch.float32
        assert torch.allclose(vis.double(), ref, rtol=1e-6, atol=0), (vis, ref)
        assert float(vis[0]) == 1.0 and int(worst[0]) == -1  # no lesions: nothing to lose
        assert int(worst[1]) in (-1, 0)  # only type 0 present


def test_encoded_values_decoded_at_the_read_pixels_equal_decoding_first() -> None:
    from c3_fundus.functional.srgb import srgb_to_linear_fast

    image, masks = _random_lesions(generator_from_seed(3))
    cf = (image * 0.7).clamp(0, 1)
    encoded = lesion_visibility(image, cf, masks, to_linear=srgb_to_linear_fast)
    decoded = lesion_visibility(srgb_to_linear_fast(image), srgb_to_linear_fast(cf), masks)
    assert torch.equal(encoded[1], decoded[1])
    assert torch.allclose(encoded[0], decoded[0], rtol=1e-6, atol=0)


def test_a_case_gets_the_same_visibility_alone_as_in_a_batch() -> None:
    image, masks = _random_lesions(generator_from_seed(11))
    cf = image * 0.6 + 0.1
    together = lesion_visibility(image, cf, masks, torch.roll(masks, 1, 3))
    for i in range(image.shape[0]):
        alone = lesion_visibility(image[i : i + 1], cf[i : i + 1], masks[i : i + 1], torch.roll(masks, 1, 3)[i : i + 1])
        assert torch.equal(alone[0], together[0][i : i + 1]) and torch.equal(alone[1], together[1][i : i + 1])


def _chain(host, steps: str, k: int = 8):  # noqa: ANN001, ANN202
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec

    return Neighbourhood(NeighbourhoodSpec.from_toml_string(f"k = {k}\nseed = 3\n[[members]]\nsteps = [{steps}]\n"),
                         host.make_operator)


def test_a_chain_is_checked_against_the_case_not_step_by_step() -> None:
    """Two blurs that each keep half the lesions' contrast can keep a quarter together: every
    step's check compares with the case as drawn, so the chain is rejected exactly when its final
    image (or its first step's) has lost too much, which step-by-step checks miss."""
    from c3_core.batch import collate
    from c3_core.plugins.host import PluginHost

    host = PluginHost().load()
    ds = FundusDemo("test")
    batch = collate([ds[i] for i in range(16)])
    blur = '{ op = "fundus.optics", levels = [0.6] }'
    chain = _chain(host, f"{blur}, {blur}")
    cf, plans, reasons = chain.draw(batch)
    first, _, first_reasons = _chain(host, blur).draw(batch)  # the same draws for step 0 (same streams)
    case = batch.repeat_interleave(8)
    rejected = [r is not None for row in reasons for r in row]
    first_rejected = [r is not None for row in first_reasons for r in row]
    final_vis, _ = lesion_visibility(case.image[:, 1:2], cf.image[:, 1:2], case.mask, to_linear=srgb_to_linear_fast)
    expected = [a or v < MIN_VISIBILITY for a, v in zip(first_rejected, final_vis.tolist())]
    assert rejected == expected
    # the second step judged alone (its input against its output), as before check_reference
    flat = [p for row in plans for p in row]
    alone = Optics().check(first, cf, [p.steps[1].params for p in flat])
    missed = [i for i, (a, r) in enumerate(zip(alone, rejected)) if r and a is None and not first_rejected[i]]
    assert missed, "the configuration must hold a chain that only the cumulative check rejects"
    assert all(final_vis[i] < MIN_VISIBILITY for i in missed)
