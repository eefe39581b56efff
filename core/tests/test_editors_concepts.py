"""Concept perturbation (c3_core.editors.concepts): kernels against references, a toy editor end to end.

The toy cohort: 32 x 32 images with a bright square "organ" at a random place and, in half the
cases, a bright blob (the "spot" finding) inside it. The concept model learns to insert or delete
the spot; its edits must stay inside the organ's region and keep the organ's mask.
"""

from __future__ import annotations

import functools
import types

import pytest
import torch

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.editors.concepts import (
    ConceptEditor,
    ConceptModel,
    ConceptModelConfig,
    ConceptSpec,
    concept_edit,
    dilate,
    feather,
    fit_concept_model,
    mask_iou,
    mean_difference_direction,
    probe_direction,
    project_out,
    ridge_direction,
    shift_latent,
    soft_region,
    within_class_std,
)
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
from c3_core.plugins.host import PluginHost
from c3_core.plugins.markers import hookimpl
from c3_core.testing import plugin_checks

SIZE = 32
CFG = ConceptModelConfig(size=SIZE, channels=1, widths=(8, 16), latent_dim=8, seg_widths=(4, 8, 8),
                         ae_epochs=30, seg_epochs=12, batch_size=32, lr=5e-3)  # fmt: skip
SPECS = (ConceptSpec("spot", 0, region=("organ",), preserve=("organ",)),)
ANATOMY = ("organ",)


def toy_cohort(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (n, 1, 32, 32), labels (n, 1), organ masks (n, 1, 32, 32)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    cy = torch.randint(10, 22, (n, 1, 1), generator=g).float()
    cx = torch.randint(10, 22, (n, 1, 1), generator=g).float()
    half = torch.randint(5, 8, (n, 1, 1), generator=g).float()
    organ = (((yy - cy).abs() <= half) & ((xx - cx).abs() <= half)).float()
    spot = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
    label = (torch.arange(n) % 2).float().view(n, 1)
    image = 0.2 + 0.4 * organ + 0.5 * spot * label.view(n, 1, 1) + 0.02 * torch.randn((n, SIZE, SIZE), generator=g)
    return image.unsqueeze(1), label, organ.unsqueeze(1)


@functools.cache
def toy_model() -> ConceptModel:
    image, label, organ = toy_cohort(128, 0)
    return fit_concept_model(image, label, organ, concepts=SPECS, anatomy=ANATOMY, config=CFG, seed=0)


class ToySpotEditor(ConceptEditor):
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    concept = "spot"

    @classmethod
    def load_model(cls) -> ConceptModel:
        return toy_model()


class ToyInsertSpot(ToySpotEditor):
    id = "toy.insert_spot"
    sign = 1
    summary = "insert the spot"
    expected_effect = "spot present"


class ToyDeleteSpot(ToySpotEditor):
    id = "toy.delete_spot"
    sign = -1
    summary = "delete the spot"
    expected_effect = "spot absent"


def toy_batch(image: torch.Tensor, mask: torch.Tensor | None = None, prefix: str = "case") -> Batch:
    n = image.shape[0]
    return Batch(image, tuple(f"{prefix}-{i}" for i in range(n)), "toy", "display", ((1.0, 1.0),) * n, mask=mask)


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return toy_cohort(32, 1)


# -- kernels ---------------------------------------------------------------------------------
def test_mean_difference_recovers_the_shift_and_needs_both_classes() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn((4000, 6), generator=g)
    pos = torch.arange(4000) % 2 == 0
    true = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    z[pos] += true
    v = mean_difference_direction(z, pos)
    assert float(v.norm()) == pytest.approx(1.0, abs=1e-6)
    assert float(v @ (true / true.norm())) > 0.995
    with pytest.raises(ValueError, match="positive and negative"):
        mean_difference_direction(z, torch.ones(4000, dtype=torch.bool))


def test_probe_direction_matches_scikit_learn_logistic_regression() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(1)
    n, l2 = 600, 0.05
    z = torch.randn((n, 5), generator=g) * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0])
    pos = (z @ torch.tensor([1.0, -0.3, 2.0, 0.2, 0.0]) + 0.5 * torch.randn(n, generator=g)) > 0
    v = probe_direction(z, pos, l2=l2)
    xs = ((z - z.mean(0)) / z.std(0)).double().numpy()
    # ours: mean BCE + l2 |w|^2  ==  sklearn: 0.5 |w|^2 + C * sum BCE  with C = 1 / (2 * l2 * n)
    ref = sklearn.LogisticRegression(C=1.0 / (2 * l2 * n), tol=1e-8, max_iter=1000).fit(xs, pos.numpy())
    w = torch.from_numpy(ref.coef_[0]) / z.std(0).double()
    assert float(v.double() @ (w / w.norm())) > 0.9999


def test_ridge_direction_matches_the_closed_form() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(2)
    z = torch.randn((300, 4), generator=g)
    t = z @ torch.tensor([0.5, 0.0, -1.0, 2.0]) + 0.1 * torch.randn(300, generator=g)
    v = ridge_direction(z, t, ridge=3.0)
    xs = ((z - z.mean(0)) / z.std(0)).double().numpy()
    coef = torch.from_numpy(sklearn.Ridge(alpha=3.0).fit(xs, t.double().numpy()).coef_) / z.std(0).double()
    assert float(v.double() @ (coef / coef.norm())) > 0.99999
    with pytest.raises(ValueError, match="does not vary"):
        ridge_direction(z, torch.ones(300), 1.0)


def test_project_out_is_orthogonal_and_refuses_a_direction_inside_the_span() -> None:
    g = torch.Generator().manual_seed(3)
    basis = [torch.randn(7, generator=g) for _ in range(2)]
    v = torch.randn(7, generator=g)
    r = project_out(v, basis)
    assert float(r.norm()) == pytest.approx(1.0, abs=1e-6)
    for b in basis:
        assert abs(float(r @ b)) < 1e-5
    assert float(r @ v) > 0  # still points the same way
    with pytest.raises(ValueError, match="span"):
        project_out(2 * basis[0] - basis[1], basis)


def test_within_class_std_is_the_pooled_standard_deviation() -> None:
    z = torch.tensor([[0.0], [2.0], [4.0], [10.0], [14.0]])
    pos = torch.tensor([False, False, False, True, True])
    # class 0 residuals -2, 0, 2; class 1 residuals -2, 2: SS = 16, dof = 5 - 2
    assert within_class_std(z, pos, torch.tensor([1.0])) == pytest.approx((16 / 3) ** 0.5)


def test_shift_latent_moves_exactly_along_the_direction_and_drops_parallel_noise() -> None:
    g = torch.Generator().manual_seed(4)
    z = torch.randn((3, 5), generator=g)
    v = torch.nn.functional.normalize(torch.randn(5, generator=g), dim=0)
    noise = torch.randn((3, 5), generator=g)
    shift = torch.tensor([0.0, 1.5, -2.0])
    out = shift_latent(z, v, shift, noise)
    torch.testing.assert_close(out @ v - z @ v, shift, atol=1e-5, rtol=0)
    torch.testing.assert_close(shift_latent(z, v, shift), z + shift[:, None] * v)


def test_soft_region_is_one_on_the_region_and_exactly_zero_beyond_its_margin() -> None:
    mask = torch.zeros((1, 2, 40, 40))
    mask[0, 0, 15:25, 15:25] = 1
    w = soft_region(mask, [0], dilate_px=2, feather_px=3)
    assert float(w.min()) >= 0 and float(w.max()) <= 1
    assert bool((w[0, 0, 13:27, 13:27] == 1).all())  # the region dilated by dilate_px
    margin = 2 + 4 * 3
    far = torch.ones_like(w, dtype=torch.bool)
    far[..., 15 - margin : 25 + margin, 15 - margin : 25 + margin] = False
    assert bool((w[far] == 0).all())
    assert float(w[0, 0, 20, 15 - margin]) > 0 or float(w[0, 0, 20, 15 - margin + 1]) > 0
    with pytest.raises(ValueError, match="at least one"):
        soft_region(mask, [], 1, 1)
    assert torch.equal(dilate(mask[:, :1], 0), mask[:, :1]) and torch.equal(feather(mask[:, :1], 0), mask[:, :1])


def test_mask_iou_agrees_with_the_metrics_module() -> None:
    pytest.importorskip("scipy")
    from c3_core.metrics.segmentation import iou

    g = torch.Generator().manual_seed(5)
    a, b = torch.rand((6, 1, 9, 9), generator=g) > 0.5, torch.rand((6, 1, 9, 9), generator=g) > 0.4
    a[0], b[0] = False, False
    torch.testing.assert_close(mask_iou(a, b), iou(a, b))


# -- configuration and persistence -----------------------------------------------------------
def test_config_and_training_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ConceptModelConfig(size=30, widths=(8, 16))
    with pytest.raises(ValueError, match="direction"):
        ConceptModelConfig(direction="pca")  # type: ignore[arg-type]
    image, label, organ = toy_cohort(8, 0)
    with pytest.raises(ValueError, match=r"images must be \(N, 1, 32, 32\)"):
        fit_concept_model(image[:, :, :16], label, organ, concepts=SPECS, anatomy=ANATOMY, config=CFG, seed=0)
    with pytest.raises(ValueError, match="anatomy masks"):
        fit_concept_model(image, label, organ.repeat(1, 2, 1, 1), concepts=SPECS, anatomy=ANATOMY, config=CFG, seed=0)


def test_fit_is_deterministic_and_round_trips_through_its_state_dict() -> None:
    image, label, organ = toy_cohort(32, 7)
    small = ConceptModelConfig(size=SIZE, widths=(8, 16), latent_dim=4, seg_widths=(4, 4, 4), ae_epochs=2, seg_epochs=1)
    rng = torch.get_rng_state()
    a = fit_concept_model(image, label, organ, concepts=SPECS, anatomy=ANATOMY, config=small, seed=3)
    assert torch.equal(rng, torch.get_rng_state())  # only the explicit generator was used
    b = fit_concept_model(image, label, organ, concepts=SPECS, anatomy=ANATOMY, config=small, seed=3)
    c = fit_concept_model(image, label, organ, concepts=SPECS, anatomy=ANATOMY, config=small, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["ae.to_latent.weight"], sc["ae.to_latent.weight"])
    again = ConceptModel.from_state_dict(sa, small, SPECS, ANATOMY, source="toy.safetensors")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in sa.items())
    with pytest.raises(ValueError, match=r"toy\.safetensors: architecture"):
        ConceptModel.from_state_dict(sa, CFG, SPECS, ANATOMY, source="toy.safetensors")
    with pytest.raises(ValueError, match=r"toy\.safetensors: has 1 concepts"):
        ConceptModel.from_state_dict(sa, small, SPECS * 2, ANATOMY, source="toy.safetensors")
    with pytest.raises(ValueError, match="not a concept model"):
        ConceptModel.from_state_dict({"x": torch.zeros(1)}, small, SPECS, ANATOMY, source="x.safetensors")


# -- the edit --------------------------------------------------------------------------------
def _inside(image: torch.Tensor, organ: torch.Tensor) -> torch.Tensor:
    return (image * organ).flatten(1).sum(1) / organ.flatten(1).sum(1)


def test_insertion_brightens_the_organ_and_deletion_darkens_it(held_out) -> None:  # noqa: ANN001
    image, label, organ = held_out
    neg, pos = label[:, 0] == 0, label[:, 0] == 1
    ins = ToyInsertSpot(jitter=0.0)
    dele = ToyDeleteSpot(jitter=0.0)
    up = ins.apply(toy_batch(image[neg]), [ins.sample_params(toy_batch(image[neg]).case_info(0), torch.Generator(), 3.0)] * int(neg.sum()))
    down = dele.apply(toy_batch(image[pos]), [dele.sample_params(toy_batch(image[pos]).case_info(0), torch.Generator(), 3.0)] * int(pos.sum()))
    gain = _inside(up.image, organ[neg]) - _inside(image[neg], organ[neg])
    loss = _inside(down.image, organ[pos]) - _inside(image[pos], organ[pos])
    assert float(gain.min()) > 0.0 and float(loss.max()) < 0.0
    # the gap between the classes' organ brightness shrinks when the concept is moved across
    gap = float(_inside(image[pos], organ[pos]).mean() - _inside(image[neg], organ[neg]).mean())
    assert float(gain.mean()) > 0.2 * gap and float(-loss.mean()) > 0.2 * gap


def test_alpha_zero_is_the_identity_and_nothing_changes_outside_the_region(held_out) -> None:  # noqa: ANN001
    image, _, _ = held_out
    ed = ToyInsertSpot()
    model = ed.model("cpu")
    res = concept_edit(model, image, 0, torch.zeros(image.shape[0]), region=[0], dilate_px=1, feather_px=1)
    assert bool((res.change == 0).all())
    batch = toy_batch(image)
    params = [ed.sample_params(batch.case_info(i), torch.Generator().manual_seed(i), 4.0) for i in range(batch.size)]
    rng = torch.get_rng_state()
    out = ed.apply(batch, params)
    assert torch.equal(rng, torch.get_rng_state())
    outside = out.image != batch.image
    w = concept_edit(model, image, 0, torch.ones(image.shape[0]), region=[0], dilate_px=ed.dilate_px, feather_px=ed.feather_px).weight
    assert bool(outside.any()) and not bool((outside & (w == 0)).any())
    assert float(ed.outside_change(batch, out).max()) == 0.0


def test_same_seed_same_bytes_through_a_neighbourhood(held_out) -> None:  # noqa: ANN001
    image, _, _ = held_out
    host = PluginHost(autoload=False, modules={"concept-toy": _toy_plugin()}).load()
    spec = NeighbourhoodSpec.from_dict({"k": 3, "seed": 11, "members": [{"op": "toy.insert_spot", "severity": [1.0, 4.0]}]})
    batch = toy_batch(image[:4])
    a, plans_a, _ = Neighbourhood(spec, host.make_operator).draw(batch)
    b, plans_b, _ = Neighbourhood(spec, host.make_operator).draw(batch)
    c, _, _ = Neighbourhood(spec.with_overrides(seed=12), host.make_operator).draw(batch)
    assert torch.equal(a.image, b.image)
    assert [p.provenance().to_json() for p in plans_a[0]] == [p.provenance().to_json() for p in plans_b[0]]
    assert not torch.equal(a.image, c.image)


def test_check_rejects_lost_anatomy_and_changes_outside_the_region(held_out) -> None:  # noqa: ANN001
    image, _, organ = held_out
    ed = ToyInsertSpot(tau=0.8, dilate_px=1, feather_px=0)  # support: organ + 1 px
    batch = toy_batch(image[:3])
    params = [ed.sample_params(batch.case_info(i), torch.Generator(), 1.0) for i in range(3)]
    edited = ed.apply(batch, params)
    assert ed.check(batch, edited, params) == [None, None, None]
    ious = ed.anatomy_iou(batch, edited)["organ"]
    assert float(ious.min()) >= 0.8
    wiped = batch.replace(image=torch.full_like(batch.image, 0.2))  # the organ is gone
    reasons = ed.check(batch, wiped, params)
    assert all(r is not None and "toy.insert_spot: organ IoU" in r and "< tau 0.8" in r for r in reasons)
    corner = batch.image.clone()
    corner[:, :, 0, 0] += 0.5  # far from every organ (organs lie in rows/cols 3..28)
    reasons = ed.check(batch, batch.replace(image=corner), params)
    assert all(r is not None and "outside the spot region" in r for r in reasons)


def test_insert_and_delete_move_the_findings_label_as_declared(held_out) -> None:  # noqa: ANN001
    from c3_core.editors.concepts import ConceptParams

    image, label, organ = held_out
    two = torch.cat([label[:3], 1 - label[:3]], 1)  # the spot is column 0; column 1 must not move
    batch = toy_batch(image[:3], organ[:3]).replace(label=two)
    params = [ConceptParams(2.0, 0.1, 1), ConceptParams(0.0, 0.1, 2), ConceptParams(3.0, 0.0, 3)]
    for ed, value in ((ToyInsertSpot(), 1.0), (ToyDeleteSpot(), 0.0)):
        out = ed.apply(batch, params)
        assert out.label[:, 0].tolist() == [value, float(two[1, 0]), value]  # alpha 0 moves nothing
        assert torch.equal(out.label[:, 1], two[:, 1]) and out.mask is batch.mask  # no finding channels here
        assert ed.describe()["changes"] == ["label"]
    with pytest.raises(ValueError, match="toy.insert_spot: moves multi-label column 0"):
        ToyInsertSpot().apply(batch.replace(label=torch.tensor([1, 0, 1])), params)
    with pytest.raises(TypeError, match="declare 'mask'"):
        type("NoMask", (ToyInsertSpot,), {"finding_mask_channels": (1,)})()
    outlined = type("Outlined", (ToyInsertSpot,), {"finding_mask_channels": (1,), "changes": frozenset({"label", "mask"})})()
    two_channel = batch.replace(mask=torch.cat([organ[:3], organ[:3]], 1))
    out = outlined.apply(two_channel, params)
    assert torch.equal(out.mask[:, 0], two_channel.mask[:, 0])  # anatomy kept (check() guards its IoU)
    assert [bool(out.mask[i, 1].isnan().all()) for i in range(3)] == [True, False, True]  # the finding's outline: unknown


def test_editor_options_and_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="toy.insert_spot: tau"):
        ToyInsertSpot(tau=1.5)
    with pytest.raises(ValueError, match="toy.insert_spot: jitter"):
        ToyInsertSpot(jitter=-1)
    image, _, _ = toy_cohort(2, 3)
    ed = ToyInsertSpot()
    with pytest.raises(ValueError, match="toy.insert_spot"):
        ed.apply(toy_batch(image).replace(domain="srgb"), [])
    with pytest.raises(KeyError, match="unknown concept 'nope'"):
        toy_model().concept("nope")
    d = ToyDeleteSpot.describe()
    assert d["kind"] == "editor" and d["intent"] == "interventional" and d["sign"] == -1
    assert d["severity"]["unit"] == "latent standard deviations"


# -- the conformance kit on a toy plugin carrying the two editors ------------------------------
def _toy_plugin() -> types.ModuleType:
    module = types.ModuleType("concept_toy_plugin")

    @hookimpl
    def c3_register_editors(registry) -> None:  # noqa: ANN001
        registry.add("toy.insert_spot", f"{__name__}:ToyInsertSpot", "insert the spot")
        registry.add("toy.delete_spot", f"{__name__}:ToyDeleteSpot", "delete the spot")

    module.c3_register_editors = c3_register_editors  # type: ignore[attr-defined]
    return module


def _factory(modality: str, domain: str, spatial_dims: int) -> Batch:
    image, _, organ = toy_cohort(2, 5)
    return toy_batch(image, organ)


@pytest.mark.parametrize("check", plugin_checks(_toy_plugin(), batch_factory=_factory, name="concept-toy"), ids=str)
def test_toy_concept_editors_conform(check) -> None:  # noqa: ANN001
    check()
