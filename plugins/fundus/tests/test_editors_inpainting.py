"""Mask-guided interventions on the fundus demo: conformance, untouched pixels, removal, controls in the FOV."""

from __future__ import annotations

import pytest
import torch

from c3_core.batch import Batch, collate
from c3_core.editors.inpainting import dilate_mm
from c3_core.seeding import generator_from_seed
from c3_core.testing import editor_checks, parametrize_with_checks

pytest.importorskip("cv2")

from c3_fundus.data.demo import make_demo_dataset  # noqa: E402
from c3_fundus.editors.inpainting import FundusHealthyControl, FundusLesionOnly, FundusLesionRemoved  # noqa: E402

_CACHE: dict[str, Batch] = {}


def lesion_batch() -> Batch:
    """Two demo photographs with lesions (microaneurysms, haemorrhages or exudates)."""
    if "b" not in _CACHE:
        ds = make_demo_dataset(split="test")
        picked = [i for i in range(30) if float(ds[i].mask.sum()) > 40][:2]
        _CACHE["b"] = collate([ds[i] for i in picked])
    return _CACHE["b"]


@parametrize_with_checks(editor_checks([FundusLesionRemoved, FundusLesionOnly, FundusHealthyControl], batch=lesion_batch))
def test_conformance(check) -> None:  # noqa: ANN001
    check()


def _apply(editor, batch: Batch, severity: float = 0.1):  # noqa: ANN001, ANN202
    g = generator_from_seed(1)
    params = [editor.sample_params(batch.case_info(i), g, severity) for i in range(batch.size)]
    return editor.apply(batch, params), params


def test_removed_lesions_take_the_colour_of_the_retina_around_them() -> None:
    batch = lesion_batch()
    ed = FundusLesionRemoved()
    out, _ = _apply(ed, batch)
    for i in range(batch.size):
        region = ed.edit_region(batch, i, 0.1)
        assert torch.equal(out.image[i][:, ~region], batch.image[i][:, ~region])
        ring = dilate_mm(region, 0.3, batch.spacing[i]) & ~region & (batch.extras["fov"][i, 0] > 0.5)
        background = batch.image[i][:, ring].mean(1, keepdim=True)
        before = (batch.image[i][:, region] - background).abs().mean()
        after = (out.image[i][:, region] - background).abs().mean()
        assert float(after) < 0.6 * float(before)


def test_lesion_only_and_controls_inside_the_field_of_view() -> None:
    batch = lesion_batch()
    only, _ = _apply(FundusLesionOnly(), batch)
    ctl_ed = FundusHealthyControl()
    ctl, params = _apply(ctl_ed, batch)
    for i in range(batch.size):
        region = ctl_ed.edit_region(batch, i, 0.1)
        assert torch.equal(only.image[i][:, region], batch.image[i][:, region])
        assert bool((only.image[i][:, ~region] == 0).all())
        moved = ctl_ed.control_region(batch, i, params[i])
        assert moved is not None and int(moved.sum()) == int(region.sum())
        assert bool((batch.extras["fov"][i, 0][moved] > 0.5).all()) and not bool((moved & region).any())
        assert torch.equal(ctl.image[i][:, ~moved], batch.image[i][:, ~moved])
