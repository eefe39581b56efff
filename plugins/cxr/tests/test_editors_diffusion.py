"""CXR diffusion editors on the demo cohort: direction kernels, findings held, identity at strength 0,
monotone growth, determinism, and the conformance kit (a tiny denoiser trained here, not the demo one)."""

from __future__ import annotations

import functools

import pytest
import torch

pytest.importorskip("diffusers")

from c3_core.batch import Batch, collate  # noqa: E402
from c3_core.editors.diffusion import DiffusionEditor, encode_labels  # noqa: E402
from c3_core.editors.diffusion_fit import FitSettings, cohort_tensors, fit_diffusion  # noqa: E402
from c3_core.editors.diffusion_model import DiffusionConfig, DiffusionModel, model_from_state  # noqa: E402
from c3_core.seeding import generator_from_seed  # noqa: E402
from c3_core.testing import editor_checks, parametrize_with_checks, with_model  # noqa: E402
from c3_cxr.data.demo import ChestDemo  # noqa: E402
from c3_cxr.data.phantom import FINDINGS  # noqa: E402
from c3_cxr.editors import diffusion as cxr  # noqa: E402

TINY = DiffusionConfig(size=32, channels=1, n_labels=len(FINDINGS), widths=(8, 16), norm_groups=4)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def demo_cases() -> Batch:
    """The first 24 cases of the demo test split (128 px, masks: lungs, heart, findings)."""
    ds = ChestDemo("test", n=24)
    return collate([ds[i] for i in range(len(ds))])


def lesion_batch() -> Batch:
    """Two demo radiographs with a finding region of at least 20 px."""
    b = demo_cases()
    picked = [i for i in range(b.size) if float(b.mask[i, 2].sum()) >= 20][:2]
    return b.select(picked)


@functools.lru_cache(maxsize=1)
def tiny_state() -> dict[str, torch.Tensor]:
    """A tiny denoiser fitted for a few steps on demo cases (mechanics only)."""
    b = demo_cases()

    class Cohort:
        def __len__(self) -> int:
            return b.size

        def __getitem__(self, i: int):  # noqa: ANN204
            from c3_core.batch import Sample

            return Sample(b.image[i], b.exam_ids[i], "cxr", "log_attenuation", b.spacing[i], label=b.label[i], mask=b.mask[i])

    u, c = cohort_tensors(Cohort(), TINY, lambda x: encode_labels(x.label, TINY.n_labels, x.size))
    model, _ = fit_diffusion(u, c, TINY, FitSettings(epochs=2, batch_size=8, lr=3e-3, seed=0))
    return {k: v.clone() for k, v in model.network.state_dict().items()}


def tiny_model() -> DiffusionModel:
    """The tiny denoiser: what the editors below load instead of the demo one."""
    return model_from_state(tiny_state(), TINY)


Plain = with_model(cxr.CxrDiffusion, tiny_model)
Ribs = with_model(cxr.CxrDiffusionRibContrast, tiny_model)
Haze = with_model(cxr.CxrDiffusionHaze, tiny_model)
Projection = with_model(cxr.CxrDiffusionProjection, tiny_model)
EDITORS = {"Plain": Plain, "Ribs": Ribs, "Haze": Haze, "Projection": Projection}


def edit(editor: DiffusionEditor, batch: Batch, strength: float, seed: int = 3) -> Batch:
    return editor(batch, generator_from_seed(seed), strength)


# -- direction kernels ------------------------------------------------------------------------
def test_rib_contrast_is_linear_in_the_gain_and_stays_in_the_lungs() -> None:
    b = demo_cases().select([0, 1])
    lung = cxr.lungs(b)
    g = torch.tensor([0.25, -0.25])
    one = cxr.rib_contrast(b.image, lung, g, b.spacing) - b.image
    two = cxr.rib_contrast(b.image, lung, 2 * g, b.spacing) - b.image
    torch.testing.assert_close(two, 2 * one, rtol=1e-4, atol=1e-6)
    assert torch.equal(cxr.rib_contrast(b.image, lung, torch.zeros(2), b.spacing), b.image)
    far = cxr.blur_mm(lung, 12.0, b.spacing) < 1e-3  # farther than ~4 sigma of the 4 mm support blur
    assert float(one.abs()[far].max()) < 1e-3 * float(one.abs().max())
    # the band-pass (rib-scale) energy inside the lungs grows with a positive gain
    band = lambda x: cxr.blur_mm(x, 2.0, b.spacing) - cxr.blur_mm(x, 8.0, b.spacing)  # noqa: E731
    inner = cxr.blur_mm(lung, 4.0, b.spacing) > 0.99
    e0 = band(b.image)[0][inner[0]].pow(2).mean()
    e1 = band(b.image + one)[0][inner[0]].pow(2).mean()
    assert float(e1) > 1.2 * float(e0)


def test_haze_is_dependent_and_only_adds() -> None:
    b = demo_cases().select([0])
    lung = cxr.lungs(b)
    added = cxr.haze(b.image, lung, torch.tensor([0.1]), b.spacing) - b.image
    assert float(added.min()) >= 0.0 and float(added.max()) <= 0.1 + 1e-6
    inner = (cxr.blur_mm(lung, 8.0, b.spacing) > 0.98)[0, 0]
    rows = [float(added[0, 0, r][inner[r]].mean()) for r in range(inner.shape[0]) if bool(inner[r].any())]
    assert rows[-1] > 2.0 * rows[0]  # base well above apex (0.4 -> 1.0 of the amount)
    assert all(b2 >= a - 1e-6 for a, b2 in zip(rows, rows[1:]))


def test_scapular_overlap_covers_the_lateral_upper_lung_fields() -> None:
    b = demo_cases().select([2])
    lung = cxr.lungs(b)
    s = (cxr.scapular_overlap(b.image, lung, torch.tensor([0.2]), b.spacing) - b.image)[0, 0]
    top, bottom = cxr._extent(lung, 2)
    left, right = cxr._extent(lung, 3)
    t, bt, le, r = (int(v) for v in (top[0], bottom[0], left[0], right[0]))
    h, q = bt - t, (r - le) // 6
    upper_lateral = torch.cat([s[t : t + h // 2, le : le + q].flatten(), s[t : t + h // 2, r - q : r + 1].flatten()])
    lower_medial = s[t + 3 * h // 4 : bt, (le + r) // 2 - q : (le + r) // 2 + q]
    assert float(s.min()) >= 0.0
    assert float(upper_lateral.mean()) > 5.0 * float(lower_medial.mean()) + 1e-6


# -- the editors ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EDITORS))
def test_findings_held_and_identity_at_zero(name: str) -> None:
    batch = lesion_batch()
    ed = EDITORS[name](scorer="none")
    assert torch.equal(edit(ed, batch, 0.0).image, batch.image)
    out = edit(ed, batch, 0.4).image
    finding = batch.mask[:, 2:3] >= 0.5
    assert torch.equal(out[finding], batch.image[finding])
    assert float((out - batch.image).abs()[~finding].mean()) > 0
    assert float(out.min()) >= 0.0  # line integrals stay non-negative


@pytest.mark.parametrize("name", ["Plain", "Ribs"])
def test_edits_grow_monotonically_with_strength(name: str) -> None:
    batch = lesion_batch()
    ed = EDITORS[name](scorer="none")
    sizes = [float((edit(ed, batch, s).image - batch.image).abs().mean()) for s in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes


def test_same_seed_same_bytes() -> None:
    batch = lesion_batch()
    a = edit(Haze(scorer="none"), batch, 0.3, seed=5).image
    assert torch.equal(a, edit(Haze(scorer="none"), batch, 0.3, seed=5).image)
    assert not torch.equal(a, edit(Haze(scorer="none"), batch, 0.3, seed=6).image)


def test_agreement_with_the_task_model_scorer() -> None:
    from c3_core.editors.scorer import TaskModelScorer, agreement
    from c3_core.model import ModelBundle

    # a sensitive stand-in task model (regional mean attenuation -> five logits); the demo CNN
    # would have to be trained first
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.AvgPool2d(16), torch.nn.Flatten(), torch.nn.Linear(64, len(FINDINGS)))
    with torch.no_grad():
        net[2].weight.mul_(20.0)
    bundle = ModelBundle(net, "multilabel", FINDINGS, "log_attenuation", prepare=lambda x: x - 2.0, name="stand-in")
    scorer = TaskModelScorer(bundle, vocabulary=FINDINGS)
    batch = lesion_batch()
    with torch.no_grad():
        ref = scorer(batch.image)

    def disagreement(step: float) -> float:
        out = edit(Plain(scorer=scorer, agreement_step=step), batch, 0.5).image
        with torch.no_grad():
            return float(agreement(scorer(out), ref).mean())

    assert disagreement(0.2) < 0.5 * disagreement(0.0)


def test_works_without_masks() -> None:
    batch = demo_cases().select([3]).replace(mask=None)
    out = edit(Projection(scorer="none"), batch, 0.3).image
    assert out.shape == batch.image.shape and bool(torch.isfinite(out).all()) and not torch.equal(out, batch.image)


def test_declarations() -> None:
    assert cxr.CONFIG.channels == 1 and cxr.CONFIG.n_labels == len(FINDINGS)
    d = cxr.CxrDiffusionHaze.describe()
    assert d["kind"] == "editor" and d["intent"] == "admissible" and d["direction"] == "subtle haze"
    assert d["severity"]["unit"] == "fraction of the diffusion trajectory" and d["lesion_channels"] == [2]


@parametrize_with_checks(editor_checks(EDITORS.values(), batch=lesion_batch, options={"scorer": "none"}))
def test_conformance(check) -> None:  # noqa: ANN001
    check()
