"""Fundus diffusion editors on the demo cohort: direction kernels, lesions and outside-FOV held,
identity at strength 0, monotone growth, determinism, and the conformance kit (a tiny denoiser
trained here, not the demo one)."""

from __future__ import annotations

import functools
import math

import pytest
import torch

pytest.importorskip("diffusers")

from c3_core.batch import Batch, Sample, collate  # noqa: E402
from c3_core.editors.diffusion import DiffusionEditor, encode_labels  # noqa: E402
from c3_core.editors.diffusion_fit import FitSettings, cohort_tensors, fit_diffusion  # noqa: E402
from c3_core.editors.diffusion_model import DiffusionConfig, DiffusionModel, model_from_state  # noqa: E402
from c3_core.seeding import generator_from_seed  # noqa: E402
from c3_core.testing import editor_checks, parametrize_with_checks, with_model  # noqa: E402
from c3_fundus.colour import srgb_to_linear  # noqa: E402
from c3_fundus.data.demo import FundusDemo  # noqa: E402
from c3_fundus.data.phantom import FOV_RADIUS  # noqa: E402
from c3_fundus.editors import diffusion as fd  # noqa: E402
from c3_fundus.grades import GRADE_NAMES  # noqa: E402

TINY = DiffusionConfig(size=32, channels=3, n_labels=len(GRADE_NAMES), widths=(8, 16), norm_groups=4)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def demo_cases() -> Batch:
    """20 cases of the demo test split at 64 px (sRGB, lesion masks, FOV in extras)."""
    ds = FundusDemo("test", size=64, n=20)
    return collate([ds[i] for i in range(len(ds))])


def lesion_batch() -> Batch:
    """Two demo photographs with lesions."""
    b = demo_cases()
    picked = [i for i in range(b.size) if float(b.mask[i].sum()) >= 4][:2]
    return b.select(picked)


@functools.lru_cache(maxsize=1)
def tiny_state() -> dict[str, torch.Tensor]:
    """A tiny denoiser fitted for a few steps on demo cases (mechanics only)."""
    b = demo_cases()
    cohort = [Sample(b.image[i], b.exam_ids[i], "fundus", "srgb", b.spacing[i], label=b.label[i]) for i in range(b.size)]
    u, c = cohort_tensors(cohort, TINY, lambda x: encode_labels(x.label, TINY.n_labels, x.size))
    model, _ = fit_diffusion(u, c, TINY, FitSettings(epochs=2, batch_size=8, lr=3e-3, seed=0))
    return {k: v.clone() for k, v in model.network.state_dict().items()}


def tiny_model() -> DiffusionModel:
    """The tiny denoiser: what the editors below load instead of the demo one."""
    return model_from_state(tiny_state(), TINY)


Plain = with_model(fd.FundusDiffusion, tiny_model)
Illumination = with_model(fd.FundusDiffusionIllumination, tiny_model)
Vessels = with_model(fd.FundusDiffusionVesselContrast, tiny_model)
EDITORS = {"Plain": Plain, "Illumination": Illumination, "Vessels": Vessels}


def edit(editor: DiffusionEditor, batch: Batch, strength: float, seed: int = 3) -> Batch:
    return editor(batch, generator_from_seed(seed), strength)


# -- direction kernels ------------------------------------------------------------------------
def test_illumination_is_a_log_linear_gain_in_linear_light() -> None:
    image = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.2
    angle = math.pi / 3
    out = fd.illumination_gradient(image, torch.tensor([0.5]), torch.tensor([angle]))
    lin0, lin1 = srgb_to_linear(image), srgb_to_linear(out)
    h, w = image.shape[2:]
    ys = torch.linspace(-1, 1, h).view(-1, 1) / FOV_RADIUS
    xs = torch.linspace(-1, 1, w).view(1, -1) / FOV_RADIUS
    expected = 0.5 * (math.cos(angle) * xs + math.sin(angle) * ys)
    ok = (lin1[0] < 0.99).all(0)  # away from saturation
    assert int(ok.sum()) > 0.9 * h * w
    measured = torch.log2(lin1[0] / lin0[0].clamp_min(1e-6))  # (3, H, W)
    for ch in range(3):
        torch.testing.assert_close(measured[ch][ok], expected.expand(h, w)[ok], rtol=0, atol=2e-3)
    torch.testing.assert_close(fd.illumination_gradient(image, torch.zeros(1), torch.zeros(1)), image, rtol=0, atol=1e-5)


def test_vessel_contrast_scales_only_dark_thin_detail() -> None:
    img = torch.full((1, 3, 48, 48), 0.6)
    img[:, :, :, 23:25] = 0.3  # a dark vessel two pixels wide
    sp = [(0.1, 0.1)]
    up = fd.vessel_contrast(img, torch.tensor([0.5]), sp)
    down = fd.vessel_contrast(img, torch.tensor([-0.5]), sp)
    assert float(up[0, 1, 24, 24]) < 0.3 - 0.01 < 0.3 + 0.01 < float(down[0, 1, 24, 24])  # darker / lighter vessel
    torch.testing.assert_close(up[..., :, :12], img[..., :, :12], rtol=0, atol=1e-5)  # flat background unchanged
    bright = torch.full((1, 3, 48, 48), 0.3)
    bright[:, :, :, 23:25] = 0.6  # bright thin structures are not vessels: untouched
    torch.testing.assert_close(fd.vessel_contrast(bright, torch.tensor([0.5]), sp)[..., 24], bright[..., 24], rtol=0, atol=1e-5)


# -- the editors ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EDITORS))
def test_lesions_and_outside_fov_held_identity_at_zero(name: str) -> None:
    batch = lesion_batch()
    ed = EDITORS[name](scorer="none")
    assert torch.equal(edit(ed, batch, 0.0).image, batch.image)
    out = edit(ed, batch, 0.4).image
    held = ((batch.mask >= 0.5).any(1, keepdim=True) | (batch.extras["fov"] < 0.5)).expand_as(out)
    assert torch.equal(out[held], batch.image[held])
    assert float((out - batch.image).abs()[~held].mean()) > 0
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", ["Plain", "Illumination"])
def test_edits_grow_monotonically_with_strength(name: str) -> None:
    batch = lesion_batch()
    ed = EDITORS[name](scorer="none")
    sizes = [float((edit(ed, batch, s).image - batch.image).abs().mean()) for s in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes


def test_same_seed_same_bytes() -> None:
    batch = lesion_batch()
    a = edit(Vessels(scorer="none"), batch, 0.3, seed=5).image
    assert torch.equal(a, edit(Vessels(scorer="none"), batch, 0.3, seed=5).image)
    assert not torch.equal(a, edit(Vessels(scorer="none"), batch, 0.3, seed=6).image)


def test_grade_conditioning_and_declarations() -> None:
    b = lesion_batch()
    cond = Plain(scorer="none").condition_vector(b, len(GRADE_NAMES))
    assert cond.shape == (2, 5) and all(int(cond[i].argmax()) == int(b.label[i]) for i in range(2))
    assert float(cond.sum(1).abs().sub(3).abs().max()) == 0.0  # +1 once, -1 four times
    assert fd.CONFIG.channels == 3 and fd.CONFIG.n_labels == len(GRADE_NAMES)
    d = fd.FundusDiffusionVesselContrast.describe()
    assert d["direction"] == "vessel contrast" and d["lesion_channels"] == [0, 1, 2]


@parametrize_with_checks(editor_checks(EDITORS.values(), batch=lesion_batch, options={"scorer": "none"}))
def test_conformance(check) -> None:  # noqa: ANN001
    check()
