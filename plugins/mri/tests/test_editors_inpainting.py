"""Mask-guided interventions on the MRI demo volumes: conformance, harmonic fill in 3-D, brain controls."""

from __future__ import annotations

import torch

from c3_core.batch import Batch, collate
from c3_core.editors.inpainting import dilate_mm
from c3_core.seeding import generator_from_seed
from c3_core.testing import editor_checks, parametrize_with_checks
from c3_mri.editors.inpainting import MriHealthyControl, MriLesionOnly, MriLesionRemoved, brain_region

_CACHE: dict[str, Batch] = {}


def demo_batch() -> Batch:
    """The first two test volumes of the demo (site C; every case has lesions)."""
    if "b" not in _CACHE:
        from c3_mri.data.demo import make_demo_dataset

        ds = make_demo_dataset(split="test", n=2)
        _CACHE["b"] = collate([ds[0], ds[1]])
    return _CACHE["b"]


@parametrize_with_checks(editor_checks([MriLesionRemoved, MriLesionOnly, MriHealthyControl], batch=demo_batch))
def test_conformance(check) -> None:  # noqa: ANN001
    check()


def _apply(editor, batch: Batch, severity: float = 1.5):  # noqa: ANN001, ANN202
    g = generator_from_seed(2)
    params = [editor.sample_params(batch.case_info(i), g, severity) for i in range(batch.size)]
    return editor.apply(batch, params), params


def test_removed_lesions_fall_to_the_signal_of_the_surrounding_tissue() -> None:
    batch = demo_batch()
    ed = MriLesionRemoved()
    out, _ = _apply(ed, batch)
    for i in range(batch.size):
        region = ed.edit_region(batch, i, 1.5)
        assert torch.equal(out.image[i][:, ~region], batch.image[i][:, ~region])
        lesion = batch.mask[i, 0] > 0.5
        ring = dilate_mm(region, 1.5, batch.spacing[i]) & ~region
        surround = float(batch.image[i, 0][ring].mean())
        before, after = float(batch.image[i, 0][lesion].mean()), float(out.image[i, 0][lesion].mean())
        assert before > surround  # FLAIR lesions are bright
        assert abs(after - surround) < 0.5 * abs(before - surround)


def test_lesion_only_and_controls_inside_the_brain() -> None:
    batch = demo_batch()
    only, _ = _apply(MriLesionOnly(), batch)
    ctl_ed = MriHealthyControl()
    ctl, params = _apply(ctl_ed, batch)
    brain = brain_region(batch)
    for i in range(batch.size):
        region = ctl_ed.edit_region(batch, i, 1.5)
        assert torch.equal(only.image[i][:, region], batch.image[i][:, region])
        assert bool((only.image[i][:, ~region] == 0).all())
        moved = ctl_ed.control_region(batch, i, params[i])
        assert moved is not None and int(moved.sum()) == int(region.sum())
        assert bool(brain[i][moved].all()) and not bool((moved & region).any())
        assert torch.equal(ctl.image[i][:, ~moved], batch.image[i][:, ~moved])


def test_brain_region_falls_back_to_the_bright_foreground_without_a_tissue_map() -> None:
    batch = demo_batch()
    plain = batch.replace(extras={})
    with_map, without = brain_region(batch), brain_region(plain)
    agree = (with_map == without).float().mean()
    assert float(agree) > 0.9
