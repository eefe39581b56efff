"""The generic diffusion editor: DDIM/SDEdit kernels against diffusers, identity at strength 0,
monotone growth with strength, lesion consistency, agreement, determinism, weights I/O, fitting."""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from c3_core.batch import Batch, Sample  # noqa: E402
from c3_core.domains import IntensityDomain  # noqa: E402
from c3_core.editors.diffusion import (  # noqa: E402
    Constraints,
    DiffusionEditor,
    agreement_step,
    ddim_step,
    encode_labels,
    eps_from_x0,
    forward_noise,
    from_grid,
    grid_mask,
    percentile_range,
    predict_x0,
    sdedit,
    sdedit_timesteps,
    to_unit,
    unit_scale,
)
from c3_core.editors.diffusion_fit import FitSettings, cohort_tensors, fit_command, fit_diffusion  # noqa: E402
from c3_core.editors.diffusion_model import (  # noqa: E402
    DiffusionConfig,
    DiffusionWeightsError,
    alphas_cumprod,
    load_model,
    make_scheduler,
    save_model,
)
from c3_core.editors.scorer import PromptScorer, TaskModelScorer, agreement, load_prompt_embeddings  # noqa: E402
from c3_core.model import ModelBundle  # noqa: E402
from c3_core.plugins.markers import hookimpl  # noqa: E402
from c3_core.seeding import generator_from_seed  # noqa: E402

SIZE = 32  # image size; the toy model works on a 16 px grid


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
TINY = DiffusionConfig(size=16, channels=1, n_labels=2, widths=(8, 16), norm_groups=4)


# -- a toy cohort: a bright blob whose position is the label ------------------------------------
def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (n, 1, SIZE, SIZE) in [0, ~1.2], labels (n, 2) in {0, 1} and lesion masks (n, 1, SIZE, SIZE)."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.linspace(-1, 1, SIZE)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    cy = torch.rand(n, generator=g) * 1.0 - 0.5
    cx = torch.rand(n, generator=g) * 1.0 - 0.5
    d2 = (yy - cy.view(-1, 1, 1)) ** 2 + (xx - cx.view(-1, 1, 1)) ** 2
    img = torch.exp(-d2 / 0.08) + 0.2 * (yy + 1) / 2 + 0.05 * torch.rand(n, SIZE, SIZE, generator=g)
    labels = torch.stack([(cy > 0).float(), (cx > 0).float()], 1)
    mask = (d2 < 0.04).float()
    return img.unsqueeze(1), labels, mask.unsqueeze(1)


def toy_batch(n: int = 4, seed: int = 99) -> Batch:
    img, lab, mask = blobs(n, seed)
    return Batch(img, tuple(f"toy-{seed}-{i}" for i in range(n)), "toy", IntensityDomain.DISPLAY, ((1.0, 1.0),) * n, label=lab, mask=mask)


class BlobDataset:
    def __init__(self, split: str = "train", source: str | None = None) -> None:
        self.img, self.lab, self.mask = blobs(48 if split == "train" else 8, 1 if split == "train" else 2)

    def __len__(self) -> int:
        return self.img.shape[0]

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.img[i], f"blob-{i:03d}", "toy", "display", (1.0, 1.0), label=self.lab[i], mask=self.mask[i])


def make_blobs(*, split: str = "train", source: str | None = None) -> BlobDataset:
    return BlobDataset(split, source)


@functools.lru_cache(maxsize=1)
def tiny_state() -> dict[str, torch.Tensor]:
    """A tiny denoiser trained for a few steps on the toy cohort (mechanics, not image quality)."""
    ds = BlobDataset()
    editor = ToyDiffusion(scorer="none")
    u, c = cohort_tensors(ds, TINY, lambda b: editor.condition_vector(b, TINY.n_labels))
    model, _ = fit_diffusion(u, c, TINY, FitSettings(epochs=2, batch_size=16, lr=3e-3, seed=0))
    return {k: v.clone() for k, v in model.network.state_dict().items()}


class ToyDiffusion(DiffusionEditor):
    id = "toy.diffusion"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    summary = "toy diffusion resampling"
    lesion_channels = (0,)
    lower_bound = 0.0
    model_config = TINY
    fit_defaults = {"epochs": 1, "batch_size": 16}

    @classmethod
    def load_default_model(cls):  # noqa: ANN206
        from c3_core.editors.diffusion_model import model_from_state

        return model_from_state(tiny_state(), TINY)


class ToyBrightening(ToyDiffusion):
    """A direction: a global additive offset of ``amplitude`` (display units)."""

    id = "toy.diffusion_brighten"
    summary = "toy diffusion edit with a brightening guide"
    direction = "brightening"
    amplitude_unit = "display units"
    max_amplitude = 0.2

    def guide(self, batch, params):  # noqa: ANN001, ANN201
        a = torch.tensor([p.amplitude for p in params], dtype=batch.image.dtype).view(-1, 1, 1, 1)
        return batch.image + a


@hookimpl
def c3_register_editors(registry):  # noqa: ANN001, ANN201
    registry.add("toy.diffusion", f"{__name__}:ToyDiffusion", "toy diffusion resampling")
    registry.add("toy.diffusion_brighten", f"{__name__}:ToyBrightening", "toy diffusion with a brightening guide")


@hookimpl
def c3_register_datasets(registry):  # noqa: ANN001, ANN201
    registry.add("toy.blobs", f"{__name__}:make_blobs", "blobs", task="multilabel", demo=True)


def edit(editor: DiffusionEditor, batch: Batch, strength: float, seed: int = 7) -> Batch:
    return editor(batch, generator_from_seed(seed), strength)


# -- kernels against diffusers -------------------------------------------------------------------
def test_ddim_step_matches_diffusers_scheduler() -> None:
    sched = make_scheduler(TINY)
    sched.set_timesteps(10)
    abar = alphas_cumprod(TINY)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 8, generator=g)
    for t in sched.timesteps.tolist():
        eps = torch.randn(2, 1, 8, 8, generator=g)
        ref = sched.step(eps, t, x, eta=0.0).prev_sample
        prev = t - TINY.train_timesteps // 10
        a_prev = abar[prev] if prev >= 0 else torch.tensor(1.0)
        ours = ddim_step(predict_x0(x, eps, abar[t]), eps, a_prev)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        x = ref


def test_forward_noise_matches_diffusers_add_noise() -> None:
    sched = make_scheduler(TINY)
    abar = alphas_cumprod(TINY)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    t = torch.tensor([0, 300, 999])
    ref = sched.add_noise(x0, eps, t)
    ours = torch.cat([forward_noise(x0[i : i + 1], eps[i : i + 1], abar[t[i]]) for i in range(3)])
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_eps_from_x0_inverts_predict_x0() -> None:
    g = torch.Generator().manual_seed(2)
    x, eps = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    a = torch.tensor(0.37)
    torch.testing.assert_close(eps_from_x0(x, predict_x0(x, eps, a), a), eps, rtol=1e-5, atol=1e-5)


def test_sdedit_timesteps_follow_the_formula() -> None:
    assert sdedit_timesteps(0.5, 1000, 20) == [500, 450, 400, 350, 300, 250, 200, 150, 100, 50]
    assert sdedit_timesteps(1.0, 1000, 4) == [999, 749, 500, 250]
    assert sdedit_timesteps(0.01, 1000, 20) == [10]
    assert sdedit_timesteps(0.0001, 1000, 20) == [0]
    ts = sdedit_timesteps(0.37, 1000, 50)
    assert len(ts) == math.ceil(0.37 * 50) and ts[0] == 370 and all(a > b for a, b in zip(ts, ts[1:]))
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="strength"):
            sdedit_timesteps(bad, 1000, 20)


def test_percentile_normalisation_is_affine_and_invertible() -> None:
    x = torch.rand(3, 2, 10, 10, generator=torch.Generator().manual_seed(3)) * torch.tensor([1.0, 5.0, 100.0]).view(-1, 1, 1, 1)
    lo, hi = percentile_range(x, 1.0, 99.0)
    for i in range(3):
        torch.testing.assert_close(lo[i], torch.quantile(x[i].flatten(), 0.01))
        torch.testing.assert_close(hi[i], torch.quantile(x[i].flatten(), 0.99))
    u = to_unit(x, lo, hi)
    torch.testing.assert_close(u.flatten(1).quantile(0.99, dim=1), torch.ones(3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close((u + 1) * unit_scale(lo, hi) + lo.view(-1, 1, 1, 1), x, rtol=1e-5, atol=1e-4)
    flat = torch.full((1, 1, 4, 4), 2.0)
    lo, hi = percentile_range(flat, 0.5, 99.5)
    assert float(hi - lo) > 0  # a constant image still maps invertibly


def test_grid_mask_covers_every_interpolated_pixel() -> None:
    mask = torch.zeros(1, 1, 64, 64)
    mask[0, 0, 20:23, 30:41] = 1
    mask[0, 0, 50, 5] = 1
    gm = grid_mask(mask, 16)
    delta = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(4)) * (1 - gm)
    assert bool((from_grid(delta, (64, 64))[mask > 0] == 0).all())


def test_encode_labels() -> None:
    lab = torch.tensor([[1.0, 0.0, float("nan")], [0.0, 1.0, 1.0]])
    assert encode_labels(lab, 3, 2).tolist() == [[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0]]
    assert encode_labels(torch.tensor([2, 0]), 3, 2).tolist() == [[-1.0, -1.0, 1.0], [1.0, -1.0, -1.0]]
    assert encode_labels(None, 3, 2).tolist() == [[0.0] * 3] * 2
    with pytest.raises(ValueError, match="3 columns"):
        encode_labels(lab, 5, 2)
    with pytest.raises(ValueError, match="outside 0..2"):
        encode_labels(torch.tensor([3]), 3, 1)


def test_agreement_step_is_a_normalised_backtracking_step_scaled_by_the_loss() -> None:
    target = torch.zeros(3, 1, 4, 4)
    x = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), -2.0), torch.full((1, 4, 4), 0.5)])

    def loss(v: torch.Tensor) -> torch.Tensor:
        return (v - target).pow(2).flatten(1).mean(1)

    new, value = agreement_step(x, loss, 0.1)
    torch.testing.assert_close(new[:, 0, 0, 0], torch.tensor([0.9, -1.6, 0.475]))  # x - 0.1 * L * sign
    torch.testing.assert_close(value, loss(new))
    # a step of 1 overshoots for x = 3 (L = 9: 3 -> -6) and is halved once (3 -> -1.5)
    new, value = agreement_step(torch.full((1, 1, 2, 2), 3.0), lambda v: v.pow(2).flatten(1).mean(1), 1.0)
    torch.testing.assert_close(new, torch.full((1, 1, 2, 2), -1.5))
    # no decrease possible (at a minimum): unchanged
    flat, _ = agreement_step(torch.zeros(1, 1, 2, 2), lambda v: v.pow(2).flatten(1).mean(1), 1.0)
    assert torch.equal(flat, torch.zeros(1, 1, 2, 2))


# -- the editor ----------------------------------------------------------------------------------
def test_strength_zero_is_bit_identical_and_mixes_with_edits() -> None:
    batch = toy_batch()
    ed = ToyBrightening(scorer="none")
    assert torch.equal(edit(ed, batch, 0.0).image, batch.image)
    params = [ed.sample_params(batch.case_info(i), generator_from_seed(i), 0.0 if i % 2 else 0.3) for i in range(batch.size)]
    out = ed.apply(batch, params)
    assert torch.equal(out.image[1], batch.image[1]) and torch.equal(out.image[3], batch.image[3])
    assert not torch.equal(out.image[0], batch.image[0])


@pytest.mark.parametrize("cls", [ToyDiffusion, ToyBrightening], ids=["resample", "direction"])
def test_edits_grow_monotonically_with_strength(cls: type[DiffusionEditor]) -> None:
    batch = toy_batch(n=4)
    ed = cls(scorer="none")
    sizes = [float((edit(ed, batch, s).image - batch.image).abs().mean()) for s in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    assert sizes[0] == 0.0
    assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes


def test_lesion_region_changes_less_under_the_consistency_constraint() -> None:
    batch = toy_batch(n=4)
    lesion = batch.mask > 0.5

    def change(**options: float) -> tuple[float, float]:
        d = (edit(ToyDiffusion(scorer="none", **options), batch, 0.5).image - batch.image).abs()
        return float(d[lesion].mean()), float(d[~lesion].mean())

    free_in, free_out = change(lesion_weight=0.0, reimpose=0.0)
    soft_in, soft_out = change(lesion_weight=0.8, reimpose=0.0)
    hard_in, hard_out = change(lesion_weight=0.5, reimpose=1.0)
    assert free_in > 0 and free_out > 0
    assert soft_in < 0.5 * free_in and soft_in < soft_out  # the penalty alone holds the lesion back
    assert hard_in == 0.0 and hard_out > 0  # re-imposition keeps it bit-identical
    out = edit(ToyDiffusion(scorer="none"), batch, 0.5)
    assert torch.equal(out.image[lesion], batch.image[lesion])


def test_same_seed_same_bytes_and_batch_invariance() -> None:
    batch = toy_batch(n=3)
    a = edit(ToyBrightening(scorer="none"), batch, 0.4, seed=11).image
    b = edit(ToyBrightening(scorer="none"), batch, 0.4, seed=11).image
    c = edit(ToyBrightening(scorer="none"), batch, 0.4, seed=12).image
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    ed = ToyBrightening(scorer="none")
    params = [ed.sample_params(batch.case_info(i), generator_from_seed(5), 0.3) for i in range(3)]
    whole = ed.apply(batch, params).image
    for i in range(3):
        assert torch.equal(ed.apply(batch.select([i]), params[i : i + 1]).image[0], whole[i])


def test_params_scale_with_strength_and_sign() -> None:
    ed = ToyBrightening(scorer="none")
    info = toy_batch(1).case_info(0)
    p_half = ed.sample_params(info, generator_from_seed(3), 0.25)
    p_full = ed.sample_params(info, generator_from_seed(3), 0.5)
    assert p_half.noise_seed == p_full.noise_seed and p_half.angle == p_full.angle
    assert math.isclose(p_full.amplitude, 2 * p_half.amplitude)
    amps = [ed.sample_params(info, generator_from_seed(s), 0.5).amplitude for s in range(40)]
    assert all(0.1 - 1e-9 <= abs(a) <= 0.2 + 1e-9 for a in amps) and min(amps) < 0 < max(amps)
    assert ToyDiffusion(scorer="none").sample_params(info, generator_from_seed(3), 0.5).amplitude == 0.0


def test_output_respects_domain_bounds() -> None:
    batch = toy_batch(n=2)
    batch = batch.replace(image=batch.image * 0.05)  # near the lower bound 0
    out = edit(ToyDiffusion(scorer="none"), batch, 0.5).image
    assert float(out.min()) >= 0.0


class MeanScorer:
    """A differentiable toy scorer: two probabilities from the image mean and the blob's brightness."""

    names = ("bright", "peaky")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        m = images.flatten(1).mean(1)
        peak = torch.logsumexp(images.flatten(1) * 10, 1) / 10
        return torch.sigmoid(torch.stack([20 * (m - 0.3), 10 * (peak - 1.0)], 1))


def test_agreement_term_keeps_scorer_probabilities_closer() -> None:
    batch = toy_batch(n=4)
    scorer = MeanScorer()
    ref = scorer(batch.image)

    def disagreement(step: float) -> float:
        ed = ToyBrightening(scorer=scorer, agreement_step=step)
        return float(agreement(scorer(edit(ed, batch, 0.5).image), ref).mean())

    # deterministic: 0.675 vs 0.891 (the estimate stays inside the case's range, which caps the correction)
    assert disagreement(0.3) < 0.8 * disagreement(0.0)


def test_check_rejects_cases_beyond_the_agreement_tolerance() -> None:
    batch = toy_batch(n=2)
    ed = ToyBrightening(scorer=MeanScorer(), agreement_step=0.0, agreement_tolerance=1e-4)
    params = [ed.sample_params(batch.case_info(i), generator_from_seed(i), 0.5) for i in range(2)]
    reasons = ed.check(batch, ed.apply(batch, params), params)
    assert all(r is not None and "toy.diffusion_brighten" in r and "tolerance" in r for r in reasons)
    assert ToyBrightening(scorer=MeanScorer()).check(batch, batch, params) == [None, None]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"lesion_weight": 1.5}, "lesion_weight"),
        ({"reimpose": -0.1}, "reimpose"),
        ({"agreement_step": float("inf")}, "agreement_step"),
        ({"scorer": "clip"}, "scorer"),
        ({"condition": "report"}, "condition"),
        ({"weights": "/nonexistent/model.safetensors"}, "not found"),
    ],
)
def test_bad_options_name_the_option(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        ToyDiffusion(**options)
    assert "toy.diffusion" in str(info.value)


def test_wrong_channel_count_is_a_clear_error() -> None:
    batch = toy_batch(n=1)
    rgb = batch.replace(image=batch.image.expand(1, 3, SIZE, SIZE).contiguous())
    with pytest.raises(ValueError, match="1 channel"):
        edit(ToyDiffusion(scorer="none"), rgb, 0.2)


def test_conformance_kit() -> None:
    from c3_core.testing import plugin_checks

    def factory(modality: str, domain: str, dims: int) -> Batch:
        if dims != 2:
            raise AssertionError("2-D only")
        return toy_batch(n=2)

    checks = plugin_checks(sys.modules[__name__], batch_factory=factory, name="toy-diffusion")
    editor_checks = [c for c in checks if c.contribution.startswith("toy.diffusion")]
    names = {c.name for c in editor_checks}
    assert {c.contribution for c in editor_checks} == {"toy.diffusion", "toy.diffusion_brighten"}
    assert len(editor_checks) == 2 * len(names) and {"undeclared_untouched", "declared_changes_consistent"} <= names
    for check in editor_checks:
        check()


# -- scorers ---------------------------------------------------------------------------------------
def _bundle(task: str = "multilabel") -> ModelBundle:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 3))
    return ModelBundle(net, task, ("a", "b", "c"), "display", prepare=lambda x: x * 2.0, name="toy.net")


def test_task_model_scorer_matches_the_bundle_and_selects_the_vocabulary() -> None:
    bundle = _bundle()
    x = toy_batch(n=2).image
    full = bundle.probabilities(bundle.logits(x))
    sc = TaskModelScorer(bundle, vocabulary=("c", "a"))
    assert sc.names == ("c", "a")
    torch.testing.assert_close(sc(x), full[:, [2, 0]])
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sc(xr).sum(), xr)
    assert float(grad.abs().sum()) > 0
    multi = TaskModelScorer(_bundle("multiclass"))
    torch.testing.assert_close(multi(x).sum(1), torch.ones(2))
    with pytest.raises(ValueError, match=r"\['z'\]"):
        TaskModelScorer(bundle, vocabulary=("a", "z"))


def test_prompt_scorer_is_the_softmax_over_each_prompt_pair(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(5)
    proj = torch.randn(SIZE * SIZE, 6, generator=g)
    encoder = lambda x: x.flatten(1) @ proj  # noqa: E731
    pos, neg = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    sc = PromptScorer(encoder, pos, neg, ("effusion", "haze"), logit_scale=50.0)
    x = toy_batch(n=3).image
    e = torch.nn.functional.normalize(encoder(x), dim=1)
    cp = e @ torch.nn.functional.normalize(pos, dim=1).T
    cn = e @ torch.nn.functional.normalize(neg, dim=1).T
    expected = torch.softmax(torch.stack([50 * cp, 50 * cn], -1), -1)[..., 0]
    torch.testing.assert_close(sc(x), expected)

    from safetensors.torch import save_file

    path = tmp_path / "prompts.safetensors"
    save_file({"positive": pos, "negative": neg}, str(path), metadata={"names": json.dumps(["effusion", "haze"]), "logit_scale": "50"})
    names, p2, n2, scale = load_prompt_embeddings(path)
    assert names == ("effusion", "haze") and scale == 50.0 and torch.equal(p2, pos) and torch.equal(n2, neg)
    bad = tmp_path / "bad.safetensors"
    save_file({"positive": pos}, str(bad), metadata={"names": "[]"})
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_prompt_embeddings(bad)
    with pytest.raises(ValueError, match="2 names for 3"):
        PromptScorer(encoder, torch.randn(3, 6), torch.randn(3, 6), ("a", "b"))


# -- weights I/O -----------------------------------------------------------------------------------
def test_save_and_load_round_trip_and_refuse_other_formats(tmp_path: Path) -> None:
    model = ToyDiffusion.load_default_model()
    w, j = save_model(model, tmp_path / "m.safetensors", extra={"note": "test"})
    assert j == tmp_path / "m.json" and json.loads(j.read_text())["config"]["widths"] == [8, 16]
    again = load_model(w)
    x, t, c = torch.randn(2, 1, 16, 16), torch.tensor([3, 400]), torch.zeros(2, 2)
    with torch.no_grad():
        assert torch.equal(again.eps(x, t, c), model.eps(x, t, c))
    # the editor takes the file through its weights option and gives the same bytes as the default
    batch = toy_batch(n=2)
    assert torch.equal(edit(ToyDiffusion(weights=str(w), scorer="none"), batch, 0.3).image, edit(ToyDiffusion(scorer="none"), batch, 0.3).image)

    pt = tmp_path / "m.pt"
    torch.save(model.network.state_dict(), pt)
    with pytest.raises(DiffusionWeightsError, match=r"m\.pt.*\.safetensors"):
        load_model(pt)
    pickled = tmp_path / "p.safetensors"
    pickled.write_bytes(pt.read_bytes())
    (tmp_path / "p.json").write_text(j.read_text())
    with pytest.raises(DiffusionWeightsError, match="p.safetensors"):
        load_model(pickled)
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(w.read_bytes())
    with pytest.raises(DiffusionWeightsError, match="lonely.json"):
        load_model(lonely)
    meta = json.loads(j.read_text())
    meta["config"]["depth"] = 3
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(DiffusionWeightsError, match=r"m\.json.*'depth'"):
        load_model(w)
    meta["config"].pop("depth")
    meta["config"]["widths"] = [8, 32]
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(DiffusionWeightsError, match="do not fit"):
        load_model(w)
    meta["format"] = "something-else"
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(DiffusionWeightsError, match="not a c3-diffusion-editor config"):
        load_model(w)


def test_attention_option_adds_attention_blocks() -> None:
    from c3_core.editors.diffusion_model import build_model

    plain = build_model(TINY, torch.Generator().manual_seed(0))
    attn = build_model(replace(TINY, attention=True), torch.Generator().manual_seed(0))
    n = lambda m: sum(p.numel() for p in m.network.parameters())  # noqa: E731
    assert n(attn) > n(plain)
    with torch.no_grad():
        out = attn.eps(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]), torch.zeros(2, 2))
    assert out.shape == (2, 1, 16, 16) and bool(torch.isfinite(out).all())


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="size"):
        replace(TINY, size=17)
    with pytest.raises(ValueError, match="norm_groups"):
        replace(TINY, widths=(6, 16))
    with pytest.raises(ValueError, match="max_strength"):
        replace(TINY, max_strength=0.0)
    with pytest.raises(ValueError, match="beta_schedule"):
        replace(TINY, beta_schedule="cosine")


# -- fitting ---------------------------------------------------------------------------------------
def test_fit_is_deterministic_and_reduces_the_loss() -> None:
    ds = BlobDataset()
    ed = ToyDiffusion(scorer="none")
    u, c = cohort_tensors(ds, TINY, lambda b: ed.condition_vector(b, 2), limit=32)
    assert u.shape == (32, 1, 16, 16) and c.shape == (32, 2)
    settings = FitSettings(epochs=3, batch_size=8, lr=3e-3, seed=4)
    m1, h1 = fit_diffusion(u, c, TINY, settings)
    m2, h2 = fit_diffusion(u, c, TINY, settings)
    s1, s2 = m1.network.state_dict(), m2.network.state_dict()
    assert h1 == h2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert h1[-1] < h1[0]
    with pytest.raises(ValueError, match=r"\(32, 3\)"):
        fit_diffusion(u, torch.zeros(32, 3), TINY, settings)


def test_fit_command_writes_weights_the_editor_loads(tmp_path: Path) -> None:
    from c3_core.plugins.host import PluginHost

    host = PluginHost(autoload=False, modules={"toy-diffusion": sys.modules[__name__]}).load()
    messages: list[str] = []
    out = tmp_path / "fit" / "toy.safetensors"
    code = fit_command("toy.diffusion", out, epochs=1, limit=16, seed=3, host=host, echo=messages.append)
    assert code == 0, messages
    assert out.is_file() and out.with_suffix(".json").is_file()
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    assert training["data"] == "toy.blobs" and training["cases"] == 16 and len(training["loss"]) == 1
    batch = toy_batch(n=1)
    assert not torch.equal(edit(ToyDiffusion(weights=str(out), scorer="none"), batch, 0.3).image, batch.image)
    # refusals: nothing is written
    assert fit_command("toy.diffusion", out, epochs=1, host=host, echo=messages.append) == 2
    assert "already exists" in messages[-1]
    assert fit_command("toy.diffusion", tmp_path / "x.pt", host=host, echo=messages.append) == 2
    assert fit_command("toy.nothing", tmp_path / "y.safetensors", host=host, echo=messages.append) == 2
    assert "toy.nothing" in messages[-1]
    assert fit_command("toy.diffusion", tmp_path / "z.safetensors", data="toy.missing", host=host, echo=messages.append) == 2
    assert fit_command("toy.diffusion", tmp_path / "w.safetensors", size=17, host=host, echo=messages.append) == 2
    assert "size" in messages[-1]
    assert not any((tmp_path / n).exists() for n in ("x.pt", "y.safetensors", "z.safetensors", "w.safetensors"))


def test_fit_command_checkpoints_every_epoch_and_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """Ctrl-C after epoch 1 keeps it in OUT.ckpt/; --resume ends with the uninterrupted fit's bytes."""
    from safetensors.torch import load_file

    from c3_core.plugins.host import PluginHost

    host = PluginHost(autoload=False, modules={"toy-diffusion": sys.modules[__name__]}).load()
    opts = {"epochs": 3, "batch_size": 8, "limit": 16, "seed": 5, "host": host}
    messages: list[str] = []
    whole = tmp_path / "whole.safetensors"
    assert fit_command("toy.diffusion", whole, echo=messages.append, **opts) == 0, messages
    assert not (tmp_path / "whole.safetensors.ckpt").exists()  # removed once the weights are written

    def interrupt_after_first_epoch(message: str) -> None:
        messages.append(message)
        if message.startswith("  epoch 1/"):
            raise KeyboardInterrupt

    cut = tmp_path / "cut.safetensors"
    folder = tmp_path / "cut.safetensors.ckpt"
    assert fit_command("toy.diffusion", cut, echo=interrupt_after_first_epoch, **opts) == 130
    assert "1 finished epoch(s) kept" in messages[-1] and not cut.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0001.json", "epoch-0001.safetensors"]
    # a leftover checkpoint needs --resume; --resume needs the same options and a checkpoint
    assert fit_command("toy.diffusion", cut, echo=messages.append, **opts) == 2 and "--resume" in messages[-1]
    assert fit_command("toy.diffusion", cut, echo=messages.append, resume=True, **{**opts, "seed": 6}) == 2
    assert "seed" in messages[-1]
    assert fit_command("toy.diffusion", tmp_path / "none.safetensors", echo=messages.append, resume=True, **opts) == 2
    assert "no checkpoint" in messages[-1]
    assert fit_command("toy.diffusion", cut, echo=messages.append, resume=True, **opts) == 0, messages
    assert "resuming after epoch 1" in " ".join(messages) and not folder.exists()
    a, b = load_file(str(whole)), load_file(str(cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loss = [json.loads(p.with_suffix(".json").read_text())["training"]["loss"] for p in (whole, cut)]
    assert loss[0] == loss[1] and len(loss[0]) == 3


def test_editor_fit_command_line_passes_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import c3_core.editors.diffusion_fit as fit_module
    from c3_core.cli import app

    seen: dict[str, object] = {}
    monkeypatch.setattr(fit_module, "fit_command", lambda *a, **kw: seen.update(kw) or 0)
    result = CliRunner().invoke(app, ["editor", "fit", "toy.diffusion", "--out", str(tmp_path / "m.safetensors"), "--resume"])
    assert result.exit_code == 0, result.output
    assert seen["resume"] is True


def test_no_constraint_step_leaves_the_cases_own_range() -> None:
    """The agreement step is normalised by the gradient's RMS, so a concentrated gradient can move a
    pixel far; the clean estimate is clamped to the case's bounds after every step (a regression:
    it was clamped before the lesion pull and the agreement step, and outputs reached 2x the range)."""
    abar = alphas_cumprod(TINY)
    g = torch.Generator().manual_seed(0)
    u = torch.rand((2, 1, 8, 8), generator=g) * 2 - 1
    noise = torch.randn(u.shape, generator=g)
    lo, hi = u.amin((1, 2, 3), keepdim=True) - 0.25, u.amax((1, 2, 3), keepdim=True) + 0.25

    def spiky(x0: torch.Tensor) -> torch.Tensor:  # loss gradient concentrated on one pixel per case
        return -(x0[:, 0, 3, 3] * 50.0)

    c = Constraints(known=u, agreement=spiky, agreement_step=5.0, bounds=(lo, hi))
    steps = sdedit_timesteps(0.5, TINY.train_timesteps, 10)
    out = sdedit(lambda x, t: torch.zeros_like(x), u, noise, steps, abar, c)
    assert bool((out >= lo - 1e-6).all()) and bool((out <= hi + 1e-6).all())
    free = sdedit(lambda x, t: torch.zeros_like(x), u, noise, steps, abar, replace(c, bounds=None))
    assert float(free.amax()) > float(hi.amax()) + 1.0  # without bounds the spike does leave the range
