"""Augmentation baselines (issue 9): standard augmentation, RandAugment, AugMix, its JSD, TTA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from c3_core.batch import Batch
from c3_core.training import baselines as B
from c3_core.training import baselines_ops as ops


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(n: int, spatial: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """(n, 1, *spatial) binary masks: an off-centre ellipsoid per case (positions vary)."""
    g = gen(seed)
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in spatial], indexing="ij")
    out = []
    for _ in range(n):
        c = (torch.rand(len(spatial), generator=g) - 0.5) * 0.6
        r = 0.25 + 0.2 * torch.rand(len(spatial), generator=g)
        out.append((sum(((gr - ci) / ri) ** 2 for gr, ci, ri in zip(grids, c, r)) <= 1).float())
    return torch.stack(out).unsqueeze(1)


def make_batch(
    spatial: tuple[int, ...] = (32, 32),
    n: int = 4,
    channels: int = 1,
    domain: str = "magnitude",
    seed: int = 0,
    spacing: tuple[float, ...] | None = None,
    with_mask: bool = True,
) -> Batch:
    """A textured phantom: background ~5, a brighter blob ~60 (+ texture), in ``domain`` units."""
    g = gen(seed)
    mask = blobs(n, spatial, seed)
    tex = torch.rand(n, channels, *spatial, generator=g)
    image = 5.0 + 20.0 * tex + 60.0 * mask
    if domain in ("srgb", "linear_rgb", "display"):
        image = image / 100.0
    return Batch(
        image=image.float(),
        exam_ids=tuple(f"case-{i}" for i in range(n)),
        modality="toy",
        domain=domain,
        spacing=tuple(spacing or (1.0,) * len(spatial) for _ in range(n)),
        label=torch.arange(n) % 2,
        mask=mask if with_mask else None,
    )


KINDS = {
    "grey2d": dict(spatial=(32, 32)),
    "grey3d": dict(spatial=(10, 14, 12), n=2, spacing=(2.0, 1.0, 1.0)),
    "rgb2d": dict(spatial=(24, 28), n=3, channels=3, domain="srgb"),
}
AUGMENTS = {
    "standard": B.standard_augment,
    "randaugment": B.randaugment,
    "augmix": B.augmix,
}


# -- determinism, shapes, labels --------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_same_seed_same_bytes_other_seed_differs(kind: str, name: str) -> None:
    batch = make_batch(**KINDS[kind])
    fn = AUGMENTS[name]
    a, b, c = fn(batch, gen(7)), fn(batch, gen(7)), fn(batch, gen(8))
    assert a.image.shape == batch.image.shape and a.image.dtype == batch.image.dtype
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.image, c.image)
    assert a.label is batch.label and a.exam_ids == batch.exam_ids
    assert torch.isfinite(a.image).all()
    assert set(a.mask.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a.image, batch.image)


@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_outputs_stay_in_the_domain(name: str) -> None:
    for domain in ("srgb", "magnitude"):
        batch = make_batch(spatial=(24, 24), n=6, channels=3 if domain == "srgb" else 1, domain=domain, seed=3)
        for seed in range(2):
            out = AUGMENTS[name](batch, gen(seed)).image
            assert out.min() >= 0.0
            if domain == "srgb":
                assert out.max() <= 1.0


# -- geometry: masks move with the image --------------------------------------------------------
def _self_mask_batch(spatial: tuple[int, ...], spacing: tuple[float, ...] | None = None) -> Batch:
    mask = blobs(4 if len(spatial) == 2 else 2, spatial, seed=5)
    return Batch(
        image=mask.clone(), exam_ids=tuple(f"m{i}" for i in range(mask.shape[0])), modality="toy",
        domain="magnitude", spacing=tuple(spacing or (1.0,) * len(spatial) for _ in range(mask.shape[0])),
        mask=mask, extras={"fov": mask.clone()},
    )


GEOMETRIC_2D = ["rotate", "shear_x", "shear_y", "translate_x", "translate_y"]
GEOMETRIC_3D = GEOMETRIC_2D + ["shear_z", "translate_z"]


@pytest.mark.parametrize("spatial", [(32, 32), (10, 14, 12)])
def test_masks_follow_geometric_ops_of_an_image_equal_to_its_mask(spatial: tuple[int, ...]) -> None:
    batch = _self_mask_batch(spatial, None if len(spatial) == 2 else (2.0, 1.0, 1.0))
    geo = GEOMETRIC_2D if len(spatial) == 2 else GEOMETRIC_3D
    outs = [
        B.standard_augment(batch, gen(1), intensity=0.0, max_rotate_deg=25.0, max_scale=0.2),
        B.randaugment(batch, gen(2), n_ops=3, magnitude=8, op_names=geo),
    ]
    for out in outs:
        assert not torch.equal(out.mask, batch.mask)  # something moved
        assert torch.equal((out.image >= 0.5).float(), out.mask)
        assert torch.equal(out.extras["fov"], out.mask)
        assert set(out.mask.unique().tolist()) <= {0.0, 1.0}


def test_rotation_by_90_degrees_is_rot90() -> None:
    x = torch.rand(2, 1, 9, 9, generator=gen(0))
    theta = ops.grid_theta(
        ops.plane_rotation(torch.full((2,), math.pi / 2, dtype=torch.float64), 2, (0, 1)),
        torch.zeros(2, 2), torch.full((2, 2), 9.0),
    )
    # positive angles turn +x (columns) towards +y (rows): clockwise on screen
    torch.testing.assert_close(ops.warp(x, theta), torch.rot90(x, -1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_rotation_acts_in_physical_space_with_anisotropic_spacing() -> None:
    # a disk of radius 12 mm on a 1 mm (x) by 2 mm (y) grid is an ellipse in voxels; rotating the
    # anatomy must leave it a disk, rotating the voxel grid would turn the ellipse
    h, w = 32, 64
    yy, xx = torch.meshgrid((torch.arange(h) + 0.5 - h / 2) * 2.0, torch.arange(w) + 0.5 - w / 2, indexing="ij")
    disk = ((yy**2 + xx**2) <= 144.0).float().view(1, 1, h, w)
    forward = ops.plane_rotation(torch.tensor([math.radians(40.0)], dtype=torch.float64), 2, (0, 1))
    zero = torch.zeros(1, 2)

    def iou(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a * b).sum() / ((a + b) > 0).sum())

    physical = ops.warp(disk, ops.grid_theta(forward, zero, torch.tensor([[64.0, 64.0]])), binary=True)
    voxel = ops.warp(disk, ops.grid_theta(forward, zero, torch.tensor([[64.0, 32.0]])), binary=True)
    assert iou(physical, disk) > 0.9
    assert iou(voxel, disk) < 0.75


def test_flip_is_exact_and_left_right_by_default() -> None:
    batch = make_batch(n=8)
    out = B.standard_augment(batch, gen(3), max_rotate_deg=0.0, max_scale=0.0, intensity=0.0)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out.image, batch.image)]
    kept = [torch.equal(o, i) for o, i in zip(out.image, batch.image)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    assert all(torch.equal(om, im.flip(-1)) == f for om, im, f in zip(out.mask, batch.mask, flipped))


# -- identities ----------------------------------------------------------------------------------
def test_standard_augment_with_everything_off_is_the_identity() -> None:
    batch = make_batch()
    out = B.standard_augment(batch, gen(0), flip=False, max_rotate_deg=0.0, max_scale=0.0, intensity=0.0)
    assert torch.equal(out.image, batch.image) and torch.equal(out.mask, batch.mask)


MAGNITUDE_OPS_RGB = [n for n in ops.RANDAUGMENT_OPS if n not in ("identity", "autocontrast", "equalize")]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_op_with_a_magnitude_is_the_identity_at_magnitude_0(kind: str) -> None:
    batch = make_batch(**KINDS[kind])
    colour = kind == "rgb2d"
    names = [n for n in MAGNITUDE_OPS_RGB if (colour or n != "color") and (kind == "grey3d" or not n.endswith("_z"))]
    for name in names:
        out = B.randaugment(batch, gen(0), n_ops=1, magnitude=0, op_names=[name])
        assert torch.equal(out.image, batch.image), name
        assert torch.equal(out.mask, batch.mask), name
        moved = B.randaugment(batch, gen(0), n_ops=1, magnitude=9, op_names=[name])
        assert not torch.equal(moved.image, batch.image), name  # and each op does something
    out = B.augmix(batch, gen(0), severity=0, op_names=["posterize", "solarize", "rotate", "shear_x", "translate_y"], geometric=True)
    torch.testing.assert_close(out.image, batch.image, atol=1e-5 * float(batch.image.abs().max()), rtol=0)


def test_op_table_adapts_to_channels_and_dims() -> None:
    assert {op.name for op in ops.select_ops(None, ops.RANDAUGMENT_OPS, 2, False, "x")}.isdisjoint(
        {"color", "autocontrast", "shear_z", "translate_z"}
    )
    three = {op.name for op in ops.select_ops(None, ops.RANDAUGMENT_OPS, 3, True, "x")}
    assert {"color", "autocontrast", "shear_z", "translate_z"} <= three
    with pytest.raises(ValueError, match="color.*RGB"):
        B.randaugment(make_batch(), gen(0), op_names=["color"])
    with pytest.raises(ValueError, match="shear_z.*3-D"):
        B.randaugment(make_batch(), gen(0), op_names=["shear_z"])
    with pytest.raises(ValueError, match="unknown op 'invert'"):
        B.randaugment(make_batch(), gen(0), op_names=["invert"])


# -- intensity ops do not assume [0, 1] ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(AUGMENTS))
def test_intensity_handling_is_equivariant_to_the_units(name: str) -> None:
    # the same CT slice in HU and in (7 HU + 300) units: every op commutes with the unit change
    base = make_batch(spatial=(24, 24), n=4, domain="hu", seed=2)
    x = (base.image.double() * 30.0 - 1000.0)
    a = base.replace(image=x)
    b = base.replace(image=7.0 * x + 300.0)
    ya, yb = AUGMENTS[name](a, gen(4)).image, AUGMENTS[name](b, gen(4)).image
    torch.testing.assert_close(yb, 7.0 * ya + 300.0, atol=1e-6 * 7 * float(x.abs().max()), rtol=0)
    assert float(ya.min()) < 0  # HU are not squeezed into [0, 1]


def test_values_above_the_robust_range_are_not_clipped() -> None:
    batch = make_batch(n=2, with_mask=False)
    hot = batch.image.clone()
    hot[:, :, 3, 3] = 1000.0  # a tiny hyperintensity far above the 99th percentile
    out = B.randaugment(batch.replace(image=hot), gen(0), n_ops=1, magnitude=5, op_names=["brightness"])
    assert float(out.image[:, :, 3, 3].min()) > 500.0


def test_colour_op_leaves_grey_pixels_and_equalize_flattens_the_histogram() -> None:
    grey = make_batch(spatial=(24, 24), n=2, channels=1, domain="srgb", with_mask=False).image.expand(-1, 3, -1, -1)
    rgb = make_batch(spatial=(24, 24), n=2, channels=3, domain="srgb", with_mask=False)
    out = B.randaugment(rgb.replace(image=grey.contiguous()), gen(0), n_ops=1, magnitude=9, op_names=["color"])
    torch.testing.assert_close(out.image, grey, atol=1e-6, rtol=0)
    z = (-torch.log1p(-torch.rand(1, 1, 64, 64, generator=gen(1))) / 4.0).clamp(max=1.0)  # Exp(4)
    z.view(-1)[:2] = torch.tensor([0.0, 1.0])
    eq = ops.equalize(z)
    order = torch.argsort(z.flatten())
    assert bool((eq.flatten()[order].diff() >= -1e-7).all())  # monotone
    hist = torch.histc(eq, bins=8, min=0.0, max=1.0) / eq.numel()
    assert float((hist - 1 / 8).abs().max()) < 0.03
    assert float(eq.view(-1)[0]) == 0.0 and float(eq.view(-1)[1]) == 1.0  # 0 -> 0, 1 -> 1
    assert float(eq.min()) >= 0.0 and float(eq.max()) <= 1.0


# -- AugMix ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_augmix_is_a_convex_combination_of_its_chains_and_the_original(kind: str) -> None:
    batch = make_batch(**KINDS[kind], with_mask=False)
    parts = B.augmix_parts(batch, gen(11), width=4, severity=5)
    out = B.augmix(batch, gen(11), width=4, severity=5)
    assert parts.geometric
    torch.testing.assert_close(parts.weights.sum(1), torch.ones(batch.size, dtype=parts.weights.dtype))
    assert bool((parts.weights >= 0).all()) and bool(((parts.m >= 0) & (parts.m <= 1)).all())
    stack = torch.cat([batch.image.unsqueeze(0), parts.chains], 0)
    tol = 1e-5 * float(stack.abs().max())
    assert bool((out.image >= stack.amin(0) - tol).all()) and bool((out.image <= stack.amax(0) + tol).all())
    torch.testing.assert_close(out.image, B.mix(batch.image, parts.chains, parts.weights, parts.m))
    assert not torch.equal(parts.chains[0], parts.chains[1])


def test_augmix_keeps_masks_and_alignment_unless_geometry_is_asked_for() -> None:
    batch = _self_mask_batch((32, 32))
    out = B.augmix(batch, gen(0))
    assert not B.augmix_parts(batch, gen(0)).geometric and torch.equal(out.mask, batch.mask)
    with pytest.raises(ValueError, match="rotate.*geometric=False"):
        B.augmix(batch, gen(0), op_names=["rotate"], geometric=False)
    moved = B.augmix(batch, gen(0), op_names=["translate_x", "rotate"], geometric=True, alpha=0.5)
    assert set(moved.mask.unique().tolist()) <= {0.0, 1.0} and not torch.equal(moved.mask, batch.mask)
    inter = (moved.mask * (moved.image >= 0.5)).sum()
    assert float(inter / ((moved.mask + (moved.image >= 0.5).float()) > 0).sum()) > 0.85  # vote ~ mixed image


@pytest.mark.parametrize("alpha", [0.3, 1.0, 3.7])
def test_gamma_sampler_follows_the_gamma_law(alpha: float) -> None:
    draws = ops.sample_gamma(alpha, (4000,), gen(int(alpha * 10))).numpy()
    assert stats.kstest(draws, stats.gamma(alpha).cdf).pvalue > 1e-3
    beta = ops.sample_beta(alpha, 4000, gen(5)).numpy()
    assert stats.kstest(beta, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    assert torch.equal(ops.sample_gamma(alpha, (50,), gen(1)), ops.sample_gamma(alpha, (50,), gen(1)))
    w = ops.sample_dirichlet(0.01, 100, 3, gen(0))  # tiny alpha: no underflow to 0/0
    assert torch.isfinite(w).all() and torch.allclose(w.sum(1), torch.ones(100, dtype=w.dtype))


# -- Jensen-Shannon consistency -------------------------------------------------------------------
def _js_reference(probs: list[np.ndarray]) -> np.ndarray:
    """H(M) - mean H(p_i) over the last axis, float64."""
    p = np.stack(probs).astype(np.float64)
    m = p.mean(0)

    def h(q: np.ndarray) -> np.ndarray:
        return -(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)).sum(-1)

    return h(m) - np.mean([h(q) for q in p], 0)


def test_jsd_multiclass_matches_the_entropy_formula_and_its_bounds() -> None:
    g = gen(0)
    a, b, c = (torch.randn(6, 5, generator=g) * 2 for _ in range(3))
    js = B.jensen_shannon_consistency(a, b, c, "multiclass", reduction="none")
    ref = _js_reference([torch.softmax(t.double(), 1).numpy() for t in (a, b, c)])
    np.testing.assert_allclose(js.numpy(), ref, atol=1e-6)
    for perm in ((b, a, c), (c, b, a), (a, c, b)):
        torch.testing.assert_close(B.jensen_shannon_consistency(*perm, "multiclass", reduction="none"), js)
    assert float(B.jensen_shannon_consistency(a, a, a, "multiclass")) < 1e-6
    assert bool((js >= 0).all()) and bool((js <= math.log(3)).all())
    eye = torch.eye(3) * 60.0  # three disjoint certainties: the maximum, log 3
    top = B.jensen_shannon_consistency(eye[:1], eye[1:2], eye[2:], "multiclass")
    assert abs(float(top) - math.log(3)) < 1e-5
    two = torch.tensor([[60.0, 0.0]]), torch.tensor([[0.0, 60.0]])  # K = 2 caps it at H(M) <= log 2
    assert float(B.jensen_shannon_consistency(two[0], two[1], two[0], "multiclass")) <= math.log(2)
    torch.testing.assert_close(B.jensen_shannon_consistency(a, b, c, "multiclass"), js.mean())


def test_jsd_multilabel_is_the_mean_bernoulli_js_per_finding() -> None:
    g = gen(1)
    a, b, c = (torch.randn(4, 7, generator=g) * 3 for _ in range(3))
    js = B.jensen_shannon_consistency(a, b, c, "multilabel", reduction="none")

    def bern(t: torch.Tensor) -> np.ndarray:
        p = torch.sigmoid(t.double()).numpy()
        return np.stack([p, 1 - p], -1)

    ref = _js_reference([bern(a), bern(b), bern(c)]).mean(1)
    np.testing.assert_allclose(js.numpy(), ref, atol=1e-6)
    extreme = torch.tensor([[80.0, -80.0]]), torch.tensor([[-80.0, 80.0]])
    assert float(B.jensen_shannon_consistency(extreme[0], extreme[1], extreme[0], "multilabel")) <= math.log(2)


def test_jsd_segmentation_is_per_voxel() -> None:
    g = gen(2)
    a, b, c = (torch.randn(2, 3, 4, 5, 6, generator=g) for _ in range(3))
    js = B.jensen_shannon_consistency(a, b, c, "segmentation", reduction="none")
    flat = [t.movedim(1, -1).reshape(-1, 3) for t in (a, b, c)]
    per_voxel = B.jensen_shannon_consistency(*flat, "multiclass", reduction="none").reshape(2, -1).mean(1)
    torch.testing.assert_close(js, per_voxel)
    one = [t[:, :1] for t in (a, b, c)]
    js1 = B.jensen_shannon_consistency(*one, "segmentation", reduction="none")
    ref = B.jensen_shannon_consistency(*[t.reshape(2, -1) for t in one], "multilabel", reduction="none")
    torch.testing.assert_close(js1, ref)
    a.requires_grad_(True)
    B.jensen_shannon_consistency(a, b, c, "segmentation").backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and float(a.grad.abs().sum()) > 0


def test_jsd_bad_input() -> None:
    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="task must be one of"):
        B.jensen_shannon_consistency(x, x, x, "regression")
    with pytest.raises(ValueError, match=r"multiclass logits must be \(B, K\)"):
        B.jensen_shannon_consistency(x[0], x[0], x[0], "multiclass")
    with pytest.raises(ValueError, match="segmentation logits must be"):
        B.jensen_shannon_consistency(x, x, x, "segmentation")
    with pytest.raises(ValueError, match="logits_aug2"):
        B.jensen_shannon_consistency(x, x, torch.zeros(3, 5), "multiclass")


# -- test-time augmentation ----------------------------------------------------------------------
def _pointwise(batch: Batch) -> torch.Tensor:
    """An equivariant segmentation model: a voxel-wise function of the image."""
    x = batch.image[:, :1]
    return torch.cat([0.05 * x - 2.0, torch.sin(0.1 * x)], 1)


@pytest.mark.parametrize("spatial", [(32, 32), (10, 14, 12)])
@pytest.mark.parametrize("seeded", [False, True])
def test_tta_of_an_equivariant_model_equals_the_plain_prediction(spatial: tuple[int, ...], seeded: bool) -> None:
    batch = make_batch(spatial=spatial, n=2, seed=4)
    g = gen(0) if seeded else None
    plain = torch.softmax(_pointwise(batch), 1)
    tta = B.tta_predict(_pointwise, batch, g, n=8, task="segmentation", max_shift=0.1)
    torch.testing.assert_close(tta, plain, atol=1e-6, rtol=0)
    # classification: mean of a voxel-wise score over an image whose border is background
    img = batch.image.clone()
    border = [slice(None), slice(None)] + [slice(3, s - 3) for s in spatial]
    bg = torch.full_like(img, 5.0)
    bg[tuple(border)] = img[tuple(border)]
    inside = batch.replace(image=bg)

    def pooled(b: Batch) -> torch.Tensor:
        return torch.stack([(0.05 * b.image - 2).mean(tuple(range(1, b.image.ndim))), b.image.amax(tuple(range(1, b.image.ndim))) / 50], 1)

    plain_c = torch.sigmoid(pooled(inside))
    torch.testing.assert_close(B.tta_predict(pooled, inside, g, n=8, task="multilabel", max_shift=0.08), plain_c, atol=1e-6, rtol=0)


def test_tta_changes_a_model_that_is_not_equivariant_and_n1_is_plain() -> None:
    batch = make_batch(n=2)

    def left_half(b: Batch) -> torch.Tensor:
        return torch.stack([b.image[..., :16].mean((1, 2, 3)), b.image[..., 16:].mean((1, 2, 3))], 1) / 10

    plain = torch.softmax(left_half(batch), 1)
    torch.testing.assert_close(B.tta_predict(left_half, batch, None, n=1, task="multiclass"), plain)
    tta = B.tta_predict(left_half, batch, None, n=2, task="multiclass")  # identity + left-right flip
    flipped = torch.softmax(left_half(batch.replace(image=batch.image.flip(-1), mask=batch.mask.flip(-1))), 1)
    torch.testing.assert_close(tta, (plain + flipped) / 2)
    assert not torch.allclose(tta, plain)


def test_tta_views_and_seeding() -> None:
    views = B.tta_views((32, 32), 6, None, flip_axes=(-1,), max_shift=0.1)
    assert views[0] == ((), (0, 0)) and views[1] == ((1,), (0, 0))
    assert views[2] == ((), (3, 0)) and views[4] == ((), (-3, 0))
    r1 = B.tta_views((32, 32), 8, gen(3), max_shift=0.1)
    assert r1 == B.tta_views((32, 32), 8, gen(3), max_shift=0.1)
    assert all(abs(s) <= 3 for _, sh in r1 for s in sh) and r1[0] == ((), (0, 0))


def test_tta_bad_input() -> None:
    batch = make_batch(n=2)
    with pytest.raises(ValueError, match="task must be one of"):
        B.tta_predict(_pointwise, batch, None, task="detection")
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        B.tta_predict(_pointwise, batch, None, n=0, task="segmentation")
    with pytest.raises(ValueError, match=r"segmentation logits must be \(B, K, \*spatial\)"):
        B.tta_predict(lambda b: b.image[..., :5], batch, None, task="segmentation")
    with pytest.raises(ValueError, match=r"multiclass logits must be \(B, K\)"):
        B.tta_predict(_pointwise, batch, None, task="multiclass")


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_is_named() -> None:
    batch = make_batch(n=2)
    with pytest.raises(TypeError, match="expected a c3_core.batch.Batch"):
        B.standard_augment(batch.image, gen(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        B.randaugment(batch, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_scale"):
        B.standard_augment(batch, gen(0), max_scale=1.5)
    with pytest.raises(ValueError, match="flip_axes entry 2"):
        B.standard_augment(batch, gen(0), flip_axes=(2,))
    with pytest.raises(ValueError, match="magnitude"):
        B.randaugment(batch, gen(0), magnitude=11)
    with pytest.raises(ValueError, match="n_ops"):
        B.randaugment(batch, gen(0), n_ops=-1)
    with pytest.raises(ValueError, match="width"):
        B.augmix(batch, gen(0), width=0)
    with pytest.raises(ValueError, match="alpha"):
        B.augmix(batch, gen(0), alpha=0.0)
    with pytest.raises(ValueError, match="severity"):
        B.augmix(batch, gen(0), severity=-1)
    bad = batch.image.clone()
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="case-0, case-1.*NaN"):
        B.augmix(batch.replace(image=bad), gen(0))


def test_global_random_state_is_never_touched() -> None:
    batch = make_batch(spatial=(16, 16), n=2)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    for fn in AUGMENTS.values():
        fn(batch, gen(0))
    B.tta_predict(_pointwise, batch, gen(0), task="segmentation")
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_the_contract() -> None:
    batch = make_batch(spatial=(10, 14, 12), n=2, spacing=(2.0, 1.0, 1.0)).to("cuda")
    for fn in AUGMENTS.values():
        g1, g2 = torch.Generator("cuda").manual_seed(0), torch.Generator("cuda").manual_seed(0)
        a, b = fn(batch, g1), fn(batch, g2)
        assert a.image.is_cuda and torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    tta = B.tta_predict(_pointwise, batch, torch.Generator("cuda").manual_seed(0), task="segmentation", max_shift=0.1)
    torch.testing.assert_close(tta, torch.softmax(_pointwise(batch), 1), atol=1e-5, rtol=0)
