"""Mask-guided inpainting kernels and the generic interventional editors (synthetic data, toy plugin)."""

from __future__ import annotations

import itertools
import types

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import toy_interventions

from c3_core.batch import Batch, collate
from c3_core.editors.inpainting import (
    ConvergenceError,
    connected_components,
    control_offset,
    dilate_mm,
    harmonic_fill,
    inpaint_ns,
    place_control,
    translate,
)
from c3_core.plugins.markers import hookimpl
from c3_core.seeding import generator_from_seed
from c3_core.testing import plugin_checks

cv2 = pytest.importorskip("cv2")


# -- reference: the harmonic system solved directly with scipy ------------------------------------
def _scipy_harmonic(image: np.ndarray, region: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Direct sparse solve of the same discrete Laplace problem (Dirichlet outside, Neumann at the border)."""
    shape = region.shape
    unknown = np.flatnonzero(region.ravel())
    slot = -np.ones(region.size, dtype=np.int64)
    slot[unknown] = np.arange(unknown.size)
    rows, cols, vals = [], [], []
    b = np.zeros(unknown.size)
    flat_img = image.ravel().astype(np.float64)
    coords = np.stack(np.unravel_index(unknown, shape), 1)
    for n, c in enumerate(coords):
        diag = 0.0
        for a, h in enumerate(spacing):
            w = 1.0 / h**2
            for step in (1, -1):
                q = c.copy()
                q[a] += step
                if not 0 <= q[a] < shape[a]:
                    continue
                diag += w
                j = int(np.ravel_multi_index(tuple(q), shape))
                if slot[j] >= 0:
                    rows.append(n)
                    cols.append(slot[j])
                    vals.append(-w)
                else:
                    b[n] += w * flat_img[j]
        rows.append(n)
        cols.append(n)
        vals.append(diag)
    a_mat = sp.csr_matrix((vals, (rows, cols)), shape=(unknown.size, unknown.size))
    out = flat_img.copy()
    out[unknown] = spla.spsolve(a_mat, b)
    return out.reshape(shape)


def test_dilate_mm_matches_the_euclidean_distance_definition() -> None:
    g = torch.Generator().manual_seed(0)
    mask = torch.rand((20, 24), generator=g) > 0.97
    spacing = (0.8, 1.7)
    for radius in (0.0, 1.0, 2.5, 4.0):
        got = dilate_mm(mask, radius, spacing).numpy()
        dist = ndi.distance_transform_edt(~mask.numpy(), sampling=spacing)
        assert np.array_equal(got, dist <= radius + 1e-9), radius
    vol = torch.zeros((9, 10, 11), dtype=torch.bool)
    vol[4, 5, 5] = True
    got3 = dilate_mm(vol, 2.0, (1.0, 1.0, 2.0)).numpy()
    assert np.array_equal(got3, ndi.distance_transform_edt(~vol.numpy(), sampling=(1.0, 1.0, 2.0)) <= 2.0)


def test_harmonic_fill_reproduces_a_discrete_harmonic_function_with_anisotropic_spacing() -> None:
    hx, hy = 1.0, 2.5  # u = X^2 - Y^2 in mm is harmonic only with the 1/h^2 weights
    i, j = torch.meshgrid(torch.arange(30.0), torch.arange(24.0), indexing="ij")
    u = ((i * hx) ** 2 - (j * hy) ** 2)[None].double()
    region = torch.zeros((30, 24), dtype=torch.bool)
    region[8:20, 5:17] = True
    out = harmonic_fill(u, region, (hx, hy), tol=1e-12)
    assert torch.allclose(out, u, rtol=0, atol=1e-7 * float(u.abs().max()))
    wrong = harmonic_fill(u, region, (1.0, 1.0), tol=1e-12)  # isotropic weights miss it
    assert float((wrong - u).abs().max()) > 1.0


def test_harmonic_fill_agrees_with_a_direct_sparse_solve_in_2d_and_3d() -> None:
    g = torch.Generator().manual_seed(1)
    for shape, spacing in (((16, 18), (1.0, 0.7)), ((8, 9, 10), (1.5, 1.0, 3.0))):
        img = torch.rand((1, *shape), generator=g, dtype=torch.float64)
        region = torch.zeros(shape, dtype=torch.bool)
        region[tuple(slice(0, s // 2 + 1) for s in shape)] = True  # touches the border: Neumann there
        region[tuple(slice(s // 2 + 2, s - 2) for s in shape)] = True
        got = harmonic_fill(img, region, spacing, tol=1e-12)[0].numpy()
        ref = _scipy_harmonic(img[0].numpy(), region.numpy(), spacing)
        assert np.allclose(got, ref, atol=1e-9)


def test_harmonic_fill_keeps_the_outside_bit_identical_and_obeys_the_maximum_principle() -> None:
    g = torch.Generator().manual_seed(2)
    img = torch.rand((2, 12, 14, 10), generator=g)
    region = torch.zeros((12, 14, 10), dtype=torch.bool)
    region[3:9, 4:11, 2:8] = True
    out = harmonic_fill(img, region, (1.0, 1.0, 1.0))
    assert out.dtype == img.dtype
    assert torch.equal(out[:, ~region], img[:, ~region])
    ring = ndi.binary_dilation(region.numpy()) & ~region.numpy()
    for c in range(2):
        lo, hi = float(img[c][torch.from_numpy(ring)].min()), float(img[c][torch.from_numpy(ring)].max())
        assert lo - 1e-6 <= float(out[c][region].min()) and float(out[c][region].max()) <= hi + 1e-6


def test_harmonic_fill_takes_boundary_values_only_from_the_sources() -> None:
    img = torch.ones((1, 20, 20), dtype=torch.float64)
    heart = torch.zeros((20, 20), dtype=torch.bool)
    heart[:, 12:] = True
    img[0][heart] = 10.0  # a dense structure right next to the region
    region = torch.zeros((20, 20), dtype=torch.bool)
    region[6:12, 6:12] = True
    lungs_only = harmonic_fill(img, region, (1.0, 1.0), sources=~heart)
    assert torch.allclose(lungs_only[0][region], torch.ones(36, dtype=torch.float64))  # no flux from the heart
    everything = harmonic_fill(img, region, (1.0, 1.0))
    assert float(everything[0][region].max()) > 2.0
    # a component that touches no source keeps all its neighbours (it must get boundary values somewhere)
    island = torch.zeros((20, 20), dtype=torch.bool)
    island[2:4, 15:17] = True
    both = harmonic_fill(img, region | island, (1.0, 1.0), sources=~heart)
    assert torch.allclose(both[0][island], torch.full((4,), 10.0, dtype=torch.float64))


def test_harmonic_fill_rejects_impossible_input_and_reports_non_convergence() -> None:
    img = torch.rand((1, 10, 10))
    with pytest.raises(ValueError, match="whole image"):
        harmonic_fill(img, torch.ones((10, 10), dtype=torch.bool), (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        harmonic_fill(img, torch.zeros((10, 10), dtype=torch.bool), (1.0,))
    empty = harmonic_fill(img, torch.zeros((10, 10), dtype=torch.bool), (1.0, 1.0))
    assert torch.equal(empty, img)
    region = torch.zeros((10, 10), dtype=torch.bool)
    region[2:8, 2:8] = True
    with pytest.raises(ConvergenceError, match="after 1 iterations"):
        harmonic_fill(img, region, (1.0, 1.0), max_iter=1)


def test_inpaint_ns_is_opencv_inside_and_the_input_outside() -> None:
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 48), indexing="ij")
    base = torch.stack([1000 * xx + 300 * yy, -50 + 20 * yy])  # physical units, negative values too
    img = base + 0.5 * torch.randn(base.shape, generator=g)
    region = torch.zeros((40, 48), dtype=torch.bool)
    region[10:22, 15:30] = True
    out = inpaint_ns(img, region, radius_px=3.0)
    assert torch.equal(out[:, ~region], img[:, ~region])
    for c in range(2):
        ref = cv2.inpaint(img[c].numpy().astype(np.float32), region.numpy().astype(np.uint8), 3.0, cv2.INPAINT_NS)
        assert np.array_equal(out[c].numpy()[region.numpy()], ref[region.numpy()])
    # a bright blob on a smooth ramp is gone: the fill follows the ramp, not the blob
    blob = base.clone()
    blob[:, region] += 400.0
    cleared = inpaint_ns(blob, region, 3.0)
    err, before = float((cleared - base)[:, region].abs().mean()), float((blob - base)[:, region].abs().mean())
    assert err < 0.05 * 400.0 and before == pytest.approx(400.0)  # within 5 % of the blob's height
    const = torch.full((1, 20, 20), 7.25, dtype=torch.float64)
    small = torch.zeros((20, 20), dtype=torch.bool)
    small[5:9, 5:9] = True
    filled = inpaint_ns(const, small)
    assert filled.dtype == torch.float64 and torch.allclose(filled, const, rtol=1e-6, atol=0)  # float32 inside OpenCV
    with pytest.raises(ValueError, match="2-D"):
        inpaint_ns(torch.zeros((1, 4, 4, 4)), torch.zeros((4, 4, 4), dtype=torch.bool))


def _brute_force_offsets(region: np.ndarray, allowed: np.ndarray, guard: int) -> set[tuple[int, ...]]:
    forbidden = ~allowed | ndi.binary_dilation(region, np.ones((3,) * region.ndim, bool), iterations=guard)
    pts = np.argwhere(region)
    found = set()
    for off in itertools.product(*[range(-s + 1, s) for s in region.shape]):
        q = pts + np.array(off)
        if (q < 0).any() or (q >= np.array(region.shape)).any():
            continue
        if not forbidden[tuple(q.T)].any():
            found.add(tuple(int(v) for v in off))
    return found


def test_control_offset_draws_uniformly_from_exactly_the_valid_translations() -> None:
    region = np.zeros((12, 13), bool)
    region[2:5, 3:5] = True
    region[4, 5] = True
    allowed = np.zeros((12, 13), bool)
    allowed[6:11, 6:11] = True  # a 5x5 window: 3 x 3 placements of the 3x3 bounding box, one clipped by the shape
    valid = _brute_force_offsets(region, allowed, guard=1)
    assert 4 <= len(valid) <= 9
    g = generator_from_seed(0)
    drawn = [control_offset(torch.from_numpy(region), torch.from_numpy(allowed), g, guard_px=1) for _ in range(40 * len(valid))]
    assert set(drawn) == valid  # every valid translation is reachable, no invalid one is drawn
    counts = np.array([drawn.count(v) for v in sorted(valid)])
    chi2 = ((counts - 40) ** 2 / 40).sum()
    assert chi2 < 3 * len(valid)  # a uniform draw (a draw favouring one placement gives far more)
    same = [control_offset(torch.from_numpy(region), torch.from_numpy(allowed), generator_from_seed(9)) for _ in range(2)]
    assert same[0] == same[1]
    assert control_offset(torch.from_numpy(region), torch.zeros((12, 13), dtype=torch.bool), g) is None


def test_connected_components_agree_with_scipy() -> None:
    g = torch.Generator().manual_seed(4)
    for shape in ((30, 31), (10, 11, 12)):
        mask = torch.rand(shape, generator=g) > 0.8
        ours = connected_components(mask).numpy()
        ref, n = ndi.label(mask.numpy(), structure=np.ones((3,) * len(shape), bool))
        assert ours.max() == n
        pairs = {(a, b) for a, b in zip(ours[mask.numpy()], ref[mask.numpy()])}
        assert len(pairs) == n  # a one-to-one relabelling


def test_place_control_moves_components_apart_when_the_whole_region_does_not_fit() -> None:
    region = torch.zeros((20, 20), dtype=torch.bool)
    region[2:6, 2:6] = True
    region[14:18, 14:18] = True  # two blobs spanning the image: no whole translation fits
    area = torch.ones((20, 20), dtype=torch.bool)
    assert control_offset(region, area & ~region, generator_from_seed(0)) is None
    result = place_control(region, [torch.zeros_like(area), area], generator_from_seed(0), guard_px=1)
    assert result is not None and result[1] == 1  # the empty first area cannot hold it
    placed = result[0]
    assert int(placed.sum()) == int(region.sum())
    assert not bool((placed & dilate_mm(region, 1.5, (1.0, 1.0))).any())
    assert torch.equal(translate(region, (0, 0)), region)


# -- the generic editors on the toy plugin --------------------------------------------------------
def _toy_batch(indices: list[int]) -> Batch:
    ds = toy_interventions.make_dataset(n=12)
    return collate([ds[i] for i in indices])


def _apply(editor, batch: Batch, seed: int, severity: float = 1.0) -> tuple[Batch, list]:  # noqa: ANN001
    g = generator_from_seed(seed)
    params = [editor.sample_params(batch.case_info(i), g, severity) for i in range(batch.size)]
    return editor.apply(batch, params), params


@pytest.mark.parametrize("method", ["auto", "harmonic", "ns"])
def test_mask_guided_edits_touch_only_the_dilated_mask(method: str) -> None:
    batch = _toy_batch([1, 2, 3])
    removed_ed = toy_interventions.ToyLesionRemoved(method=method)
    region = torch.stack([removed_ed.edit_region(batch, i, 1.0) for i in range(batch.size)])
    removed, _ = _apply(removed_ed, batch, 0)
    inside = region.unsqueeze(1).expand_as(batch.image)
    assert torch.equal(removed.image[~inside], batch.image[~inside])
    assert not bool(removed.mask[:, 0][region].any())  # the returned mask describes the edited image
    assert torch.equal(removed.mask[:, 0][~region], batch.mask[:, 0][~region])
    assert batch.label.tolist() == [1, 0, 1] and removed.label.tolist() == [0, 0, 0]  # the declared label
    lesion = batch.mask[0, 0] > 0.5
    assert float(removed.image[0, 0][lesion].mean()) < float(batch.image[0, 0][lesion].mean()) - 0.2
    only, _ = _apply(toy_interventions.ToyLesionOnly(method=method), batch, 0)
    assert torch.equal(only.image[inside], batch.image[inside])
    assert bool((only.image[~inside] == 0).all())
    assert torch.equal(only.mask[:, 0], batch.mask[:, 0]) and only.label.tolist() == [-1, -1, -1]  # unknown class
    control_ed = toy_interventions.ToyHealthyControl(method=method)
    control, params = _apply(control_ed, batch, 0)
    for i in (0, 2):
        moved = control_ed.control_region(batch, i, params[i])
        assert moved is not None and int(moved.sum()) == int(region[i].sum())
        assert not bool((moved & region[i]).any())
        assert torch.equal(control.image[i][:, ~moved], batch.image[i][:, ~moved])
    assert torch.equal(control.image[1], batch.image[1])  # case 2 has no lesion: untouched
    reasons = control_ed.check(batch, control, params)
    assert reasons[0] is None and reasons[2] is None and "no lesion" in reasons[1]


def test_same_seed_same_bytes_and_3d_volumes() -> None:
    batch = _toy_batch([1, 3])
    for ed in (toy_interventions.ToyLesionRemoved(), toy_interventions.ToyHealthyControl()):
        a, _ = _apply(ed, batch, 42)
        b, _ = _apply(ed, batch, 42)
        assert a.image.numpy().tobytes() == b.image.numpy().tobytes()
    g = torch.Generator().manual_seed(5)
    vol = torch.rand((2, 1, 10, 12, 14), generator=g) * 0.2 + 0.4
    mask = torch.zeros((2, 1, 10, 12, 14))
    mask[:, :, 3:6, 4:8, 5:9] = 1.0
    vol = vol + 0.3 * mask
    batch3 = Batch(vol, ("v-0", "v-1"), "toy", "display", ((1.0, 1.0, 2.0),) * 2, mask=mask)
    ed = toy_interventions.ToyLesionRemoved()
    out, _ = _apply(ed, batch3, 0)
    region = torch.stack([ed.edit_region(batch3, i, 1.0) for i in range(2)]).unsqueeze(1)
    assert torch.equal(out.image[~region], vol[~region])
    assert abs(float(out.image[region].mean()) - 0.5) < 0.05  # back to the background level
    again, _ = _apply(ed, batch3, 0)
    assert torch.equal(again.image, out.image)


def test_editors_refuse_batches_without_a_lesion_mask_and_bad_options() -> None:
    batch = _toy_batch([1]).replace(mask=None)
    ed = toy_interventions.ToyLesionRemoved()
    with pytest.raises(ValueError, match="toy.lesion_removed needs a lesion mask"):
        ed.apply(batch, [ed.sample_params(batch.case_info(0), generator_from_seed(0), 1.0)])
    with pytest.raises(TypeError, match="method"):
        toy_interventions.ToyLesionRemoved(method="telea")
    d = toy_interventions.ToyHealthyControl.describe()
    assert d["intent"] == "interventional" and d["expected_effect"] and d["kind"] == "editor"


def _toy_editor_plugin() -> types.ModuleType:
    module = types.ModuleType("toy_intervention_plugin")

    @hookimpl
    def c3_register_datasets(registry):  # noqa: ANN001
        registry.add("toy.demo", "toy_interventions:make_dataset", "toy demo", task="multiclass", demo=True)

    module.c3_register_datasets = c3_register_datasets  # type: ignore[attr-defined]
    module.c3_register_editors = toy_interventions.c3_register_editors  # type: ignore[attr-defined]
    return module


def _factory(modality: str, domain: str, dims: int) -> Batch:
    return _toy_batch([1, 3])


@pytest.mark.parametrize("check", plugin_checks(_toy_editor_plugin(), batch_factory=_factory), ids=str)
def test_conformance_kit_on_the_generic_editors(check) -> None:  # noqa: ANN001
    check()
