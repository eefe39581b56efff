"""``mri.lesion_volume``: the conformance kit with small weights made once per session (a tiny
model fitted in seconds on the kit's two demo volumes, not the editor's fit), the declared mask
change, determinism, the size floor, bad input, and the error when no weights were fitted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from c3_core.batch import collate
from c3_core.editors.structure_stages import run_stages
from c3_core.editors.volume_structure_editor import VolumeParams
from c3_core.editors.volume_structure_kernels import dilate, from_grid
from c3_core.editors.volume_structure_model import (
    load_volume_model,
    model_from_stages,
    save_volume_model,
    volume_fit_stages,
)
from c3_core.editors.volume_structure_nets import VolumeStructureConfig
from c3_core.testing import editor_checks, parametrize_with_checks, with_model
from c3_mri.data.demo import MriDemo
from c3_mri.editors.lesion_volume import CONFIG, MIN_VOLUME_ML, MriLesionVolume, working_arrays

SMALL = VolumeStructureConfig(grid=(18, 20, 10), widths=(4,), latent_channels=2, seg_widths=(4, 4), gen_epochs=2, seg_epochs=2, batch_size=2,
                              seg_patch=None)

_BATCH: list[Any] = []
_WEIGHTS: dict[str, Any] = {}


def kit_batch() -> Any:
    if not _BATCH:
        ds = MriDemo("test", n=2)
        _BATCH.append(collate([ds[0], ds[1]]))
    return _BATCH[0]


def small_weights(tmp_dir: Any = None) -> Any:
    """A tiny model fitted on the kit batch (seconds); its segmentor's head bias set so that the
    brightest 0.5 % of working voxels count as lesion (an edit region to check), saved and reloaded."""
    if "path" not in _WEIGHTS:
        import tempfile
        from pathlib import Path

        b = kit_batch()
        u, m = working_arrays(b.image, b.mask, tuple(b.spacing[0]), SMALL)
        g = torch.Generator().manual_seed(0)
        tune = replace(MriLesionVolume.tune_settings, steps=2, epochs=1, batch_size=2)  # the editor's objective, two steps
        done, _ = run_stages(volume_fit_stages(u, m, SMALL, tune, g), g)
        model = model_from_stages(done, m, SMALL, ("lesion",), MIN_VOLUME_ML)
        with torch.no_grad():
            logits = model.segmentor(u)
            model.segmentor.head.bias -= torch.quantile(logits.flatten(), 0.995)
        folder = Path(tmp_dir or tempfile.mkdtemp(prefix="c3-lesion-volume-"))
        _WEIGHTS["path"] = save_volume_model(model, folder / "small.safetensors")
    return _WEIGHTS["path"]


def small_model() -> Any:
    if "model" not in _WEIGHTS:
        _WEIGHTS["model"] = load_volume_model(small_weights())
    return _WEIGHTS["model"]


@parametrize_with_checks(editor_checks([MriLesionVolume], batch=kit_batch, model=small_model))
def test_conformance(check: Any) -> None:
    check()


@pytest.fixture(scope="module")
def editor() -> Any:
    return with_model(MriLesionVolume, small_model)()


def test_registered_and_described() -> None:
    from c3_core.plugins.host import PluginHost

    cls = PluginHost().load().registry("editors").get("mri.lesion_volume").load()
    d = cls.describe()
    assert cls is MriLesionVolume and d["intent"] == "interventional"
    assert d["changes"] == ["mask", "structure_volume"] and d["spatial_dims"] == [3]
    assert d["min_volume_ml"] == MIN_VOLUME_ML and d["grid"] == list(CONFIG.grid)


def test_the_edit_restates_the_mask_inside_its_region_only(editor: Any) -> None:
    b = kit_batch()
    params = [VolumeParams(1.3), VolumeParams(1.0)]
    out = editor.apply(b, params)
    region = editor.edit_region(b)
    assert bool(region[0].any()), "the small model segments nothing: no region to check"
    r = region[0, 0]
    seg = editor.segmented_mask(out)
    assert torch.equal(out.mask[0, 0][r], seg[0, 0][r])
    assert torch.equal(out.mask[0, 0][~r], b.mask[0, 0][~r])
    assert torch.equal(out.image[0, 0][~r], b.image[0, 0][~r])  # nothing moves outside the region
    assert torch.equal(out.image[1], b.image[1]) and torch.equal(out.mask[1], b.mask[1])  # ratio 1: identity
    # the region is the segmented structure dilated by region_vox + 1 working voxels (and no farther)
    model, _, small = editor._prepare(b)
    bound = from_grid(dilate(model.segment_logits(small) > 0, editor.region_vox + 1), b.spatial_shape) > 0
    assert not bool((region & ~bound).any())


def test_same_seed_same_bytes_and_provenance(editor: Any) -> None:
    b = kit_batch()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, c = editor(b, g1), editor(b, g2)
    assert torch.equal(a.image, c.image)
    assert torch.equal(a.mask.nan_to_num(-1), c.mask.nan_to_num(-1))


def test_volume_is_measured_in_ml_and_checked(editor: Any) -> None:
    b = kit_batch()
    params = [VolumeParams(1.3), VolumeParams(0.7)]
    vol = editor.measure_volume_ml(b)
    assert vol.dtype == torch.float64 and bool((vol > 0).all())
    torch.testing.assert_close(editor.target_volume_ml(b, params), vol * torch.tensor([1.3, 0.7], dtype=torch.float64))
    reasons = editor.check(b, editor.apply(b, params), params)
    assert len(reasons) == 2 and all(r is None or "mri.lesion_volume" in r for r in reasons)


def test_size_floor_drops_small_lesions() -> None:
    b = kit_batch()
    u, m = working_arrays(b.image, b.mask, tuple(b.spacing[0]), CONFIG)
    _, m_all = working_arrays(b.image, b.mask, tuple(b.spacing[0]), CONFIG, min_volume_ml=0.0)
    assert u.shape == (2, 1, *CONFIG.grid) and bool((m <= m_all).all())


def test_bad_input_errors(editor: Any, tmp_path: Any) -> None:
    b = kit_batch()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            editor.apply(b, [VolumeParams(bad), VolumeParams(1.1)])
    with pytest.raises(ValueError, match="3"):
        editor.apply(b.replace(image=b.image[..., 0], mask=b.mask[..., 0], spacing=[(1.5, 1.5)] * 2), [VolumeParams(1.1)] * 2)
    with pytest.raises(ValueError, match="weights"):
        MriLesionVolume(weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="region_vox"):
        MriLesionVolume(region_vox=-1)
    with pytest.raises(ValueError, match="direction"):
        MriLesionVolume(direction="sideways")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk"):
        MriLesionVolume(weights=str(junk)).apply(b, [VolumeParams(1.1)] * 2)


def test_weights_option_loads_the_fitted_file() -> None:
    b = kit_batch()
    ed = MriLesionVolume(weights=str(small_weights()))
    assert ed.model("cpu").config == SMALL
    out = ed.apply(b, [VolumeParams(1.2), VolumeParams(0.8)])
    assert out.image.shape == b.image.shape


def test_missing_weights_say_to_run_editor_fit(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("C3_CACHE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="c3 editor fit mri.lesion_volume"):
        MriLesionVolume().apply(kit_batch(), [VolumeParams(1.1)] * 2)


def test_default_config_fits_the_demo_grid() -> None:
    assert CONFIG.grid == (36, 40, 20) and replace(CONFIG).arch_vector().tolist()[:4] == [3, 36, 40, 20]


def test_fine_tuning_objective_and_version() -> None:
    """Version 2 fine-tunes on the shifted, sharpened soft volume; its weights file is not version 1's."""
    from c3_mri.editors.lesion_volume import TUNE, default_weights_path

    assert (TUNE.target, TUNE.sharpness) == ("shift", 4.0) and MriLesionVolume.tune_settings is TUNE
    assert MriLesionVolume.version == "2" and default_weights_path().name == "c3_mri-lesion-volume-v2.safetensors"
