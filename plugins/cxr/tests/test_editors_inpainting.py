"""Mask-guided interventions on the CXR demo: conformance, untouched pixels, what removal does, controls."""

from __future__ import annotations

import pytest
import torch

from c3_core.batch import Batch, collate
from c3_core.seeding import generator_from_seed
from c3_core.testing import editor_checks, parametrize_with_checks

pytest.importorskip("cv2")

from c3_cxr.data.demo import make_demo_dataset  # noqa: E402
from c3_cxr.editors.inpainting import CxrHealthyControl, CxrLesionOnly, CxrLesionRemoved, body_region  # noqa: E402

_CACHE: dict[str, Batch] = {}


def lesion_batch() -> Batch:
    """Two demo radiographs that have a finding region (mask channel 2)."""
    if "b" not in _CACHE:
        ds = make_demo_dataset(split="test")
        picked = [i for i in range(len(ds)) if float(ds[i].mask[2].sum()) > 20][:2]
        _CACHE["b"] = collate([ds[i] for i in picked])
    return _CACHE["b"]


@parametrize_with_checks(editor_checks([CxrLesionRemoved, CxrLesionOnly, CxrHealthyControl], batch=lesion_batch))
def test_conformance(check) -> None:  # noqa: ANN001
    check()


def _apply(editor, batch: Batch, severity: float = 2.8):  # noqa: ANN001, ANN202
    g = generator_from_seed(0)
    params = [editor.sample_params(batch.case_info(i), g, severity) for i in range(batch.size)]
    return editor.apply(batch, params), params


def test_removal_takes_the_finding_out_and_leaves_every_other_pixel() -> None:
    batch = lesion_batch()
    ed = CxrLesionRemoved()
    out, _ = _apply(ed, batch)
    for i in range(batch.size):
        region = ed.edit_region(batch, i, 2.8)
        assert torch.equal(out.image[i][:, ~region], batch.image[i][:, ~region])
        finding = batch.mask[i, 2] > 0.5
        # findings add attenuation (fluid, opacity, haze): the inpainted lungs are more lucent
        assert float(out.image[i, 0][finding].mean()) < float(batch.image[i, 0][finding].mean())


def test_removal_returns_the_mask_and_label_of_the_edited_radiograph() -> None:
    batch = lesion_batch()
    out, _ = _apply(CxrLesionRemoved(), batch)
    assert not bool(out.mask[:, 2].any())  # no finding region left
    assert torch.equal(out.mask[:, :2], batch.mask[:, :2])  # lungs and heart kept
    assert out.label[:, [2, 4]].eq(0).all() and out.label[:, [0, 3]].isnan().all()  # absent; unknown
    assert torch.equal(out.label[:, 1], batch.label[:, 1])  # cardiomegaly has no region: kept
    assert CxrHealthyControl.changes == frozenset() and CxrLesionOnly.changes == {"mask", "label"}


def test_lesion_only_and_control_stay_in_their_regions() -> None:
    batch = lesion_batch()
    only, _ = _apply(CxrLesionOnly(), batch)
    ctl_ed = CxrHealthyControl()
    ctl, params = _apply(ctl_ed, batch)
    body = body_region(batch)
    for i in range(batch.size):
        region = ctl_ed.edit_region(batch, i, 2.8)
        assert torch.equal(only.image[i][:, region], batch.image[i][:, region])
        assert bool((only.image[i][:, ~region] == 0).all())
        moved = ctl_ed.control_region(batch, i, params[i])
        assert moved is not None and int(moved.sum()) == int(region.sum())
        assert not bool((moved & region).any()) and bool(body[i][moved].all())
        assert torch.equal(ctl.image[i][:, ~moved], batch.image[i][:, ~moved])
