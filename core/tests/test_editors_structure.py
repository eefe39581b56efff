"""Seg-CFT (segmentor-guided counterfactual fine-tuning): kernels, metrics, fine-tuning, the generic editor."""

from __future__ import annotations

import types

import pytest
import torch
import toy_structure
from torch.nn import functional as F

from c3_core.batch import Batch
from c3_core.editors import structure as st
from c3_core.plugins.markers import hookimpl
from c3_core.seeding import generator_from_seed
from c3_core.testing import plugin_checks


# -- metrics -------------------------------------------------------------------------------
def test_mape_and_mae_formulas() -> None:
    m = torch.tensor([110.0, 45.0, 200.0])
    t = torch.tensor([100.0, 50.0, 200.0])
    assert st.mape(m, t) == pytest.approx(100 * (0.1 + 0.1 + 0.0) / 3)
    assert st.mae(m, t) == pytest.approx((10 + 5 + 0) / 3)
    with pytest.raises(ValueError, match="target area must be > 0"):
        st.mape(m, torch.tensor([100.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="differ in shape"):
        st.mae(m, t[:2])


def test_pixel_area_from_spacing() -> None:
    # a 128 px image at 2.8 mm/px on a 64 px grid: 5.6 mm working pixels
    assert st.pixel_area_mm2((2.8, 2.8), (128, 128), 64) == pytest.approx(5.6 * 5.6)
    assert st.pixel_area_mm2((1.0, 2.0), (100, 50), 50) == pytest.approx(2.0 * 2.0)
    with pytest.raises(ValueError, match="2-D"):
        st.pixel_area_mm2((1.0, 1.0, 1.0), (8, 8, 8), 4)


def test_leakage_is_the_share_of_change_outside_the_region() -> None:
    x = torch.zeros(4, 1, 8, 8)
    region = torch.zeros(4, 1, 8, 8)
    region[..., :4, :] = 1.0
    y = x.clone()
    y[0, 0, 1, 1] = 2.0  # inside only
    y[1, 0, 6, 6] = -3.0  # outside only
    y[2, 0, 1, 1], y[2, 0, 6, 6] = 1.0, 3.0  # 3 of 4 outside
    # case 3 unchanged: 0 by convention, never NaN
    torch.testing.assert_close(st.leakage(x, y, region), torch.tensor([0.0, 1.0, 0.75, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="does not match"):
        st.leakage(x, y, region[:, :, :4])


# -- kernels -------------------------------------------------------------------------------
def test_areas_dilation_and_intervention() -> None:
    logits = torch.full((1, 2, 4, 4), -50.0)
    logits[0, 0, :2, :] = 50.0  # 8 px
    logits[0, 1, 0, 0] = 50.0  # 1 px
    torch.testing.assert_close(st.hard_area_px(logits), torch.tensor([[8.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(st.soft_area(logits), torch.tensor([[0.5, 1 / 16]]))
    m = torch.zeros(1, 1, 9, 9)
    m[0, 0, 4, 4] = 1.0
    assert st.dilate(m, 2).sum() == 25 and torch.equal(st.dilate(m, 0), m)
    frac = torch.tensor([[0.2, 0.05], [0.3, 0.06]])
    out = st.intervene(frac, torch.tensor([1, 0]), torch.tensor([1.2, 0.5], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[0.2, 0.06], [0.15, 0.06]]))


def test_segcft_objective_matches_its_formula() -> None:
    g = torch.Generator().manual_seed(0)
    measured, target = torch.rand(5, 2, generator=g) + 0.1, torch.rand(5, 2, generator=g) + 0.1
    u, u_cf = torch.rand(5, 1, 6, 6, generator=g), torch.rand(5, 1, 6, 6, generator=g)
    region = (torch.rand(5, 1, 6, 6, generator=g) > 0.5).float()
    expected = ((measured - target).abs() / target).mean() + 0.7 * ((u_cf - u).abs() * (1 - region)).mean()
    torch.testing.assert_close(st.segcft_objective(measured, target, u, u_cf, region, 0.7), expected)


def test_shifted_target_moves_the_soft_area_by_the_hard_area_to_add() -> None:
    soft = torch.tensor([[0.30, 0.12], [0.25, 0.10]])  # soft areas: the hard ones plus the sigmoid's tails
    hard = torch.tensor([[0.24, 0.06], [0.20, 0.05]])
    target, scale = st.shifted_target(soft, hard, torch.tensor([1, 0]), torch.tensor([1.2, 0.5], dtype=torch.float64))
    torch.testing.assert_close(target, torch.tensor([[0.30, 0.12 + 0.2 * 0.06], [0.25 - 0.5 * 0.20, 0.10]]))
    torch.testing.assert_close(scale, torch.tensor([[0.24, 1.2 * 0.06], [0.5 * 0.20, 0.05]]))
    # the relative error is scaled by the intended hard area; nothing to set (scale 0) counts 0
    err = st.relative_area_error(torch.tensor([[0.3, 0.2]]), torch.tensor([[0.2, 0.1]]), torch.tensor([[0.5, 0.0]]))
    torch.testing.assert_close(err, torch.tensor([[0.2, 0.0]]))
    seg = toy_structure.ThresholdSegmentor(gain=4.0)
    u, m = toy_structure.disks(3, seed=2)
    measure = st.segmentor_measure(seg)
    torch.testing.assert_close(measure.reading(u), m.flatten(2).mean(2))  # the toy threshold is exact
    assert bool((measure(u) > measure.reading(u) + 0.1).all())  # a soft segmentor's tails: soft >> hard
    sharp = st.segmentor_measure(seg, 4.0)  # the soft area of sigmoid(4 * logit): closer to the hard one
    assert bool((sharp(u) - sharp.reading(u)).abs().lt(measure(u) - measure.reading(u)).all())
    with pytest.raises(ValueError, match="target must be"):
        st.FineTuneConfig(target="ratio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sharpness must be"):
        st.FineTuneConfig(sharpness=0.0)


def test_counterfactual_keeps_the_residual_and_is_identity_at_the_same_condition() -> None:
    cfg = toy_structure.CONFIG
    gen = st.ConditionalVAE(cfg).eval()
    st.init_parameters(gen, torch.Generator().manual_seed(3))
    u, _ = toy_structure.disks(4, seed=2)
    c = torch.randn(4, 1, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(st.counterfactual(gen, u, c, c), u)
        z = gen.abduct(u)
        cf = st.counterfactual(gen, u, c, c + 1.0)
        torch.testing.assert_close(cf - u, gen.decode(z, c + 1.0) - gen.decode(z, c))


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="divisible"):
        st.StructureModelConfig(size=30, widths=(8, 16))
    with pytest.raises(ValueError, match="ratio_low"):
        st.FineTuneConfig(ratio_low=1.5, ratio_high=1.2)
    with pytest.raises(ValueError, match="seg_widths"):
        st.StructureModelConfig(seg_widths=(8, 16))  # type: ignore[arg-type]
    cfg = toy_structure.CONFIG
    with pytest.raises(ValueError, match="masks must be"):
        st.fit_structure_model(torch.zeros(4, 1, 32, 32), torch.zeros(4, 2, 32, 32), structures=("disk",), config=cfg, tune=toy_structure.TUNE, seed=0)


# -- fine-tuning ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_generator() -> tuple[st.ConditionalVAE, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An untuned conditional VAE on 96 toy disks, with its data and area standardisation."""
    u, m = toy_structure.disks(96, seed=1)
    frac = m.flatten(2).mean(2)
    mean, std = st.area_statistics(frac)
    gen = st.train_generator(u, frac, mean, std, toy_structure.CONFIG, torch.Generator().manual_seed(0))
    return gen, u, m, frac, mean, std


def test_segmentor_guided_fine_tuning_lowers_area_error_and_keeps_abduction(toy_generator) -> None:  # noqa: ANN001
    gen, u, m, frac, mean, std = toy_generator
    seg = toy_structure.ThresholdSegmentor()
    tune = st.FineTuneConfig(steps=60, batch_size=16, lr=2e-3, margin_px=2)
    tuned = st.fine_tune(gen, st.segmentor_measure(seg), u, frac, m, mean, std, tune, torch.Generator().manual_seed(1))
    ut, mt = toy_structure.disks(48, seed=9)
    ft = mt.flatten(2).mean(2)
    kw = dict(structures=("disk",), ratios=(0.8, 1.25), pixel_mm2=0.25, margin_px=2)
    before = st.evaluate_interventions(gen, seg, ut, ft, mt, mean, std, **kw)[0]
    after = st.evaluate_interventions(tuned, seg, ut, ft, mt, mean, std, **kw)[0]
    assert after.mape_percent < 0.6 * before.mape_percent, (before, after)
    assert after.mae_mm2 == pytest.approx(after.mae_px * 0.25)
    assert 0.0 <= after.leakage <= 1.0
    with torch.no_grad():  # the encoder is frozen: abduction is unchanged; the decoder moved
        assert torch.equal(tuned.abduct(ut), gen.abduct(ut))
        assert not torch.equal(tuned.decode(gen.abduct(ut), ft), gen.decode(gen.abduct(ut), ft))
    assert all(p.requires_grad for p in gen.parameters())  # the original was not modified


def test_fine_tuning_sets_the_segmented_area_not_the_soft_area(toy_generator) -> None:  # noqa: ANN001
    """A shallow segmentor (logit 4 (u - 0.5): the exact mask, but a quarter of a pixel of sigmoid
    on every background pixel) guides the fine-tuning; the exact segmentor judges. The first
    version (``ratio`` times the plain soft area) asks the border to move several times too far;
    the default (the sharpened soft area moved by the area to add or remove) lands near the ratio."""
    gen, u, m, frac, mean, std = toy_generator
    shallow = toy_structure.ThresholdSegmentor(gain=4.0)
    judge = toy_structure.ThresholdSegmentor()
    ut, mt = toy_structure.disks(48, seed=9)
    ft = mt.flatten(2).mean(2)
    kw = dict(structures=("disk",), ratios=(0.8, 1.25), pixel_mm2=0.25, margin_px=2)
    tune = st.FineTuneConfig(steps=60, batch_size=16, lr=2e-3, margin_px=2)
    errors = {}
    for name, cfg in (("default", tune), ("first", st.FineTuneConfig(**{**tune.__dict__, "target": "scale", "sharpness": 1.0}))):
        measure = st.segmentor_measure(shallow, cfg.sharpness)
        tuned = st.fine_tune(gen, measure, u, frac, m, mean, std, cfg, torch.Generator().manual_seed(1))
        errors[name] = st.evaluate_interventions(tuned, judge, ut, ft, mt, mean, std, **kw)[0].mape_percent
    before = st.evaluate_interventions(gen, judge, ut, ft, mt, mean, std, **kw)[0].mape_percent
    assert errors["default"] < 0.6 * before and errors["default"] < 0.6 * errors["first"], (before, errors)


def test_regressor_guided_baseline_runs_on_the_same_loop(toy_generator) -> None:  # noqa: ANN001
    gen, u, m, frac, mean, std = toy_generator

    class MeanRegressor(torch.nn.Module):  # a global read-out: area fraction from the mean intensity
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return ((v.flatten(1).mean(1, keepdim=True) - 0.2) / 0.6).clamp_min(1e-3)

    tune = st.FineTuneConfig(steps=5, batch_size=8)
    tuned = st.fine_tune(gen, st.regressor_measure(MeanRegressor()), u, frac, m, mean, std, tune, torch.Generator().manual_seed(1))
    assert not torch.equal(tuned.out.weight, gen.out.weight)


def test_fit_is_deterministic_under_seed() -> None:
    u, m = toy_structure.disks(32, seed=1)
    cfg = st.StructureModelConfig(size=32, structures=1, widths=(4, 8), seg_widths=(4, 4, 4), latent_dim=4, gen_epochs=2, seg_epochs=1, batch_size=16)
    tune = st.FineTuneConfig(steps=3, batch_size=8)
    a = st.fit_structure_model(u, m, structures=("disk",), config=cfg, tune=tune, seed=5).state_dict()
    b = st.fit_structure_model(u, m, structures=("disk",), config=cfg, tune=tune, seed=5).state_dict()
    c = st.fit_structure_model(u, m, structures=("disk",), config=cfg, tune=tune, seed=6).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("gen."))


def test_state_dict_round_trip_and_mismatch_errors() -> None:
    state = dict(toy_structure.toy_model_state())
    model = st.StructureModel.from_state_dict(state, toy_structure.CONFIG, ("disk",), source="w.safetensors")
    again = model.state_dict()
    assert all(torch.equal(again[k], state[k]) for k in state)
    other = st.StructureModelConfig(size=32, structures=1, widths=(8, 16), seg_widths=(4, 8, 16), latent_dim=8)
    with pytest.raises(ValueError, match=r"w\.safetensors: architecture"):
        st.StructureModel.from_state_dict(state, other, ("disk",), source="w.safetensors")
    with pytest.raises(ValueError, match="missing 'frac.std'"):
        st.StructureModel.from_state_dict({k: v for k, v in state.items() if k != "frac.std"}, toy_structure.CONFIG, ("disk",), source="w")
    with pytest.raises(KeyError, match="unknown structure 'heart'"):
        model.index("heart")


# -- the generic editor --------------------------------------------------------------------
def test_editor_identity_at_zero_severity_and_direction_of_change() -> None:
    ed = toy_structure.ToyDiskArea(direction="grow")
    batch = toy_structure.disk_batch()
    same = ed.apply(batch, [st.AreaParams(1.0)] * batch.size)
    assert torch.equal(same.image, batch.image)
    grown = ed.apply(batch, [ed.sample_params(batch.case_info(i), generator_from_seed(0), 0.3) for i in range(batch.size)])
    shrunk = ed.apply(batch, [st.AreaParams(0.7)] * batch.size)
    a0, a1, a2 = ed.measure_area_mm2(batch), ed.measure_area_mm2(grown), ed.measure_area_mm2(shrunk)
    # the toy generator is small (fitted in seconds): the cohort's mean area moves the right way
    # (single small disks can miss by a pixel or two; the fine-tuning test bounds the error itself)
    assert float(a1.mean()) > float(a0.mean()) and float(a2.mean()) < float(a0.mean())
    assert int((a1 > a0).sum()) >= 2 and int((a2 < a0).sum()) >= 2
    assert torch.equal(grown.mask, ed.segmented_mask(grown))  # the mask describes the edited image
    assert torch.equal(same.mask, batch.mask)  # ratio 1: nothing edited, nothing restated
    assert ed.preserves == frozenset() and ed.describe()["intent"] == "interventional"
    assert ed.describe()["changes"] == ["label", "mask", "structure_area"]


def test_editor_returns_the_segmentors_mask_of_the_edited_image_and_no_stale_label() -> None:
    ed = toy_structure.ToyDiskArea()
    batch = toy_structure.disk_batch()
    extra = torch.zeros_like(batch.mask)  # a second mask channel the editor does not segment
    batch = batch.replace(mask=torch.cat([batch.mask, extra], 1), label=torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    out = ed.apply(batch, [st.AreaParams(1.3), st.AreaParams(1.0), st.AreaParams(0.7)])
    seg = ed.segmented_mask(out)
    for i in (0, 2):  # edited: the frozen segmentor's mask of the edited image; the rest unknown
        assert torch.equal(out.mask[i, :1], seg[i]) and bool(out.mask[i, 1].isnan().all())
        assert bool(out.label[i].isnan().all())
    assert torch.equal(out.mask[1], batch.mask[1]) and torch.equal(out.label[1], batch.label[1])
    assert not torch.equal(out.mask[0, 0], batch.mask[0, 0])  # the area moved, and the mask with it
    with pytest.raises(ValueError, match="toy.disk_area: the mask has 1 channel"):
        type("Two", (toy_structure.ToyDiskArea,), {"mask_channels": (1,)})().apply(
            toy_structure.disk_batch(1), [st.AreaParams(1.2)])  # fmt: skip


def test_editor_target_check_and_options() -> None:
    batch = toy_structure.disk_batch()
    ed = toy_structure.ToyDiskArea(tolerance=1e-9)
    params = [st.AreaParams(1.2)] * batch.size
    target = ed.target_area_mm2(batch, params)
    torch.testing.assert_close(target, 1.2 * ed.measure_area_mm2(batch))
    cf = ed.apply(batch, params)
    reasons = ed.check(batch, cf, params)
    got = ed.measure_area_mm2(cf)
    for r, a, t in zip(reasons, got.tolist(), target.tolist()):
        assert (r is None) == (a == t)
        if r is not None:
            assert "toy.disk_area: disk area" in r and "misses the target" in r
    assert toy_structure.ToyDiskArea(tolerance=10.0).check(batch, cf, params) == [None] * batch.size
    g = generator_from_seed(0)
    assert toy_structure.ToyDiskArea(direction="shrink").sample_params(batch.case_info(0), g, 0.2) == st.AreaParams(0.8)
    ratios = {round(toy_structure.ToyDiskArea().sample_params(batch.case_info(0), g, 0.1).ratio, 9) for _ in range(40)}
    assert ratios == {0.9, 1.1}
    with pytest.raises(ValueError, match="toy.disk_area: direction"):
        toy_structure.ToyDiskArea(direction="up")
    with pytest.raises(ValueError, match="toy.disk_area: tolerance"):
        toy_structure.ToyDiskArea(tolerance=0.0)
    with pytest.raises(ValueError, match="toy.disk_area: ratio"):
        ed.apply(batch, [st.AreaParams(-1.0)] * batch.size)


def test_editor_result_is_deterministic_and_matches_the_working_grid_edit() -> None:
    ed = toy_structure.ToyDiskArea()
    batch = toy_structure.disk_batch()
    params = [st.AreaParams(1.3), st.AreaParams(0.8), st.AreaParams(1.1)]
    a, b = ed.apply(batch, params), ed.apply(batch, params)
    assert torch.equal(a.image, b.image)
    model = ed.model("cpu")  # images are on the working grid already: the change is the decoder difference
    delta, logits, _ = model.edit_delta(batch.image, 0, torch.tensor([1.3, 0.8, 1.1]))
    torch.testing.assert_close(a.image, batch.image + delta * ed.region_weight(logits[:, :1] > 0))
    unbounded = toy_structure.ToyDiskArea(region_px=None).apply(batch, params)
    torch.testing.assert_close(unbounded.image, batch.image + delta)


def _plugin() -> types.ModuleType:
    module = types.ModuleType("toy_structure_plugin")

    @hookimpl
    def c3_register_datasets(registry):  # noqa: ANN001
        registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True)

    module.c3_register_datasets = c3_register_datasets  # type: ignore[attr-defined]
    module.c3_register_editors = toy_structure.c3_register_editors  # type: ignore[attr-defined]
    return module


def _factory(modality: str, domain: str, dims: int) -> Batch:
    return toy_structure.disk_batch(2, seed=11)


@pytest.mark.parametrize("check", plugin_checks(_plugin(), batch_factory=_factory), ids=str)
def test_conformance_kit_on_the_structure_editor(check) -> None:  # noqa: ANN001
    check()


def test_generator_reconstructs_the_toy_disks(toy_generator) -> None:  # noqa: ANN001
    gen, u, m, frac, mean, std = toy_generator
    with torch.no_grad():
        rec = gen.decode(gen.abduct(u), st.standardise(frac, mean, std))
    assert F.mse_loss(rec, u).item() < 0.2 * u.var().item()


def test_the_change_stays_within_region_px_of_the_segmented_structure() -> None:
    batch = toy_structure.disk_batch()
    ed = toy_structure.ToyDiskArea(region_px=2)
    out = ed.apply(batch, [st.AreaParams(1.3)] * batch.size)
    model = ed.model("cpu")
    seg = model.segment_logits(st.to_grid(batch.image, model.config.size))[:, :1] > 0
    support = st.dilate(seg.float(), 2 + 4)  # region_px + 4: the weight is exactly 0 beyond
    changed = (out.image != batch.image)
    assert bool(changed.any()) and not bool((changed & (support == 0)).any())
    inner = st.dilate(seg.float(), 2) > 0  # weight 1 there: the generator's full change
    free = toy_structure.ToyDiskArea(region_px=None).apply(batch, [st.AreaParams(1.3)] * batch.size)
    assert torch.equal(out.image[inner], free.image[inner])
    assert bool((free.image != batch.image)[support == 0].any())  # unbounded, the decoder touches the rest


@pytest.mark.parametrize("bad", [-1, 1.5, True, "4"])
def test_region_px_is_validated(bad) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="region_px must be an integer >= 0 or None"):
        toy_structure.ToyDiskArea(region_px=bad)


def test_loading_and_moving_the_model_leave_the_global_rng_alone() -> None:
    toy_structure.toy_model_state()  # fitted (cached) before the state is taken
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model = toy_structure.ToyDiskArea().model("cpu")
    model.to("cpu")
    assert torch.equal(torch.get_rng_state(), before)
