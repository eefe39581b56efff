"""3-D structure-volume machinery: kernels, Seg-CFT fine-tuning on sphere phantoms (a fixed
threshold segmentor measures, so only the generator trains), staged fits that resume to the same
bytes, and ``c3 editor fit`` for a volume editor."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from c3_core.domains import IntensityDomain
from c3_core.editors import fit_checkpoint as ckpt
from c3_core.editors.structure_fit import _tune_fingerprint, fit_command, parse_grid
from c3_core.editors.structure_stages import (
    TuneSettings,
    fine_tune_stage,
    generator_stage,
    run_stages,
    segmentor_measure,
)
from c3_core.editors.volume_structure_editor import VolumeStructureEditor
from c3_core.editors.volume_structure_kernels import (
    dilate,
    drop_small_components,
    mask_to_grid,
    region_weight,
    to_grid,
    voxel_volume_ml,
)
from c3_core.editors.volume_structure_metrics import evaluate_volume_interventions, leakage, mae, mape
from c3_core.editors.volume_structure_model import _quiet, load_volume_model, volume_statistics
from c3_core.editors.volume_structure_nets import VolumeCVAE, VolumeStructureConfig, init_parameters3d

THRESHOLD = 0.65


def phantoms(n: int, size: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright balls (radius 1.5–3.5 voxels) on a dim noisy background, and their masks."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.arange(size, dtype=torch.float32)
    zz, yy, xx = torch.meshgrid(ax, ax, ax, indexing="ij")
    us, ms = [], []
    for _ in range(n):
        c = size / 4 + size / 2 * torch.rand(3, generator=g)
        r = 1.5 + 2.0 * torch.rand((), generator=g)
        d = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2).sqrt()
        us.append(0.3 + 0.7 * torch.sigmoid((r - d) * 3) + 0.02 * torch.randn(d.shape, generator=g))
        ms.append((0.3 + 0.7 * torch.sigmoid((r - d) * 3) > THRESHOLD).float())
    return torch.stack(us)[:, None], torch.stack(ms)[:, None]


def threshold_logits(u: torch.Tensor) -> torch.Tensor:
    return (u - THRESHOLD) * 20.0


def threshold_measure(u: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(threshold_logits(u)).flatten(2).mean(2)


class ShallowThreshold(torch.nn.Module):
    """The exact ball mask (logit > 0 where ``u > THRESHOLD``) with shallow logits: at ``gain`` 6 the
    background sits at logit -2.1, so the soft volume is ~3x the segmented one."""

    def __init__(self, gain: float = 6.0) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.gain * (u - THRESHOLD)


CFG = VolumeStructureConfig(grid=(12, 12, 12), widths=(8, 16), latent_channels=4, seg_widths=(4, 4), gen_epochs=5, batch_size=4, lr=5e-3,
                            seg_patch=None)


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    u, m = phantoms(16)
    frac = m.flatten(2).mean(2)
    mean, std = volume_statistics(frac)
    g = torch.Generator().manual_seed(0)
    tune = TuneSettings(steps=20, epochs=2, batch_size=4, lr=3e-3, margin=1)
    stages = [
        ("gen", lambda d: generator_stage(lambda: _quiet(lambda: VolumeCVAE(CFG)), init_parameters3d, u, (frac - mean) / std,
                                          CFG.beta, CFG.gen_epochs, CFG.batch_size, CFG.lr, g)),
        ("tuned", lambda d: fine_tune_stage(d["gen"], threshold_measure, u, frac, m, mean, std, tune, g)),
    ]  # fmt: skip
    done, _ = run_stages(stages, g)
    ut, mt = phantoms(8, seed=7)
    return {"done": done, "mean": mean, "std": std, "u": ut, "m": mt, "train": (u, m, frac)}


def _evaluate(f: dict[str, Any], name: str, region_vox: int | None) -> Any:
    return evaluate_volume_interventions(
        f["done"][name], threshold_logits, threshold_logits, f["u"], f["m"], f["mean"], f["std"],
        structure=0, name="ball", ratios=(0.7, 1.3), voxel_ml=0.001, margin=1, region_vox=region_vox,
    )  # fmt: skip


def test_segcft_moves_the_volume_toward_the_target(fitted: dict[str, Any]) -> None:
    untuned, tuned = _evaluate(fitted, "gen", None), _evaluate(fitted, "tuned", None)
    assert tuned.mape_percent < untuned.mape_percent
    assert tuned.mape_percent < 25.0  # doing nothing scores 30 % on ratios 0.7 and 1.3
    assert tuned.leakage < untuned.leakage


def test_fine_tuning_sets_the_segmented_volume_not_the_soft_volume(fitted: dict[str, Any]) -> None:
    """A shallow guide (the exact mask, wide sigmoid tails) steers the fine-tuning; the exact
    threshold judges. ``ratio`` times the plain soft volume (the first objective) asks the border
    to move several times too far; the sharpened soft volume moved by the volume to add or remove
    (what ``mri.lesion_volume`` uses) lands near the ratio."""
    u, m, frac = fitted["train"]
    shallow = ShallowThreshold()
    with torch.no_grad():
        assert float(torch.sigmoid(shallow(u)).sum()) > 2.5 * float((shallow(u) > 0).sum())
    errors = {}
    for name, target, sharpness in (("shift", "shift", 4.0), ("first", "scale", 1.0)):
        tune = TuneSettings(steps=40, epochs=2, batch_size=4, lr=3e-3, margin=1, target=target, sharpness=sharpness)
        g = torch.Generator().manual_seed(1)
        stage = ("tuned", lambda d, tune=tune, g=g: fine_tune_stage(fitted["done"]["gen"], segmentor_measure(shallow, tune.sharpness), u, frac,
                                                                    m, fitted["mean"], fitted["std"], tune, g))  # fmt: skip
        errors[name] = _evaluate({**fitted, "done": run_stages([stage], g)[0]}, "tuned", None).mape_percent
    before = _evaluate(fitted, "gen", None).mape_percent
    assert errors["shift"] < 0.6 * before and errors["shift"] < 0.6 * errors["first"], (before, errors)


def test_the_editor_bound_keeps_leakage_small(fitted: dict[str, Any]) -> None:
    bounded = _evaluate(fitted, "tuned", 0)  # change only within 1 voxel of the segmented ball
    assert bounded.leakage <= 0.1
    assert bounded.mape_percent < 30.0


def test_ratio_one_is_the_identity(fitted: dict[str, Any]) -> None:
    gen, u = fitted["done"]["tuned"], fitted["u"]
    c = torch.zeros(u.shape[0], 1)
    z = gen.abduct(u)
    assert torch.equal(u + (gen.decode(z, c) - gen.decode(z, c)), u)


# -- kernels and metrics -----------------------------------------------------------------------
def test_kernels() -> None:
    x = torch.zeros(1, 1, 4, 4, 4)
    x[0, 0, :2, :2, :2] = 1.0
    assert torch.equal(to_grid(x, (2, 2, 2))[0, 0, 0, 0, 0], torch.tensor(1.0))
    assert mask_to_grid(x, (2, 2, 2)).sum() == 1
    assert dilate(x, 1).sum() == 27
    point = torch.zeros(1, 1, 9, 9, 9, dtype=torch.bool)
    point[0, 0, 4, 4, 4] = True
    w = region_weight(point, 1)
    assert [float(w[0, 0, 4, 4, k]) for k in (4, 5, 6, 7)] == [1.0, 1.0, 0.5, 0.0]
    assert math.isclose(voxel_volume_ml((1.5, 1.5, 1.5), (72, 80, 40), (36, 40, 20)), 0.027)
    m = torch.zeros(8, 8, 8)
    m[0, 0, 0] = 1
    m[4:7, 4:7, 4:7] = 1
    kept = drop_small_components(m, 5)
    assert int(kept.sum()) == 27 and not bool(kept[0, 0, 0])
    with pytest.raises(ValueError, match="grid"):
        to_grid(x, (2, 2))
    with pytest.raises(ValueError, match="spacing"):
        voxel_volume_ml((1.0, 1.0), (4, 4, 4), (2, 2, 2))


def test_metrics_against_their_formulas() -> None:
    assert mape(torch.tensor([1.2, 0.5]), torch.tensor([1.0, 1.0])) == pytest.approx(35.0)
    assert mae(torch.tensor([1.2, 0.5]), torch.tensor([1.0, 1.0])) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="> 0"):
        mape(torch.tensor([1.0]), torch.tensor([0.0]))
    x = torch.zeros(2, 1, 2, 2, 2)
    y = x.clone()
    y[0, 0, 0, 0, 0] = 1.0
    y[0, 0, 1, 1, 1] = 3.0
    region = torch.zeros(2, 1, 2, 2, 2)
    region[:, 0, 1, 1, 1] = 1
    torch.testing.assert_close(leakage(x, y, region), torch.tensor([0.25, 0.0], dtype=torch.float64))


def test_config_rejects_bad_grids() -> None:
    with pytest.raises(ValueError, match="divisible"):
        VolumeStructureConfig(grid=(10, 12, 12), widths=(4, 8), seg_patch=None)
    assert parse_grid("36,40,20") == (36, 40, 20)
    with pytest.raises(ValueError, match="D,H,W"):
        parse_grid("36,40")


# -- staged fits: checkpoints and resume ---------------------------------------------------------
TINY = VolumeStructureConfig(grid=(8, 8, 8), widths=(4,), latent_channels=2, seg_widths=(4, 4), gen_epochs=2, seg_epochs=2,
                             reg_epochs=1, batch_size=4, seg_patch=None)  # fmt: skip
TINY_TUNE = TuneSettings(steps=4, epochs=2, batch_size=4, target="shift", sharpness=4.0)  # the 3-D editor's objective


class _TinyVolumeEditor(VolumeStructureEditor):
    id = "toy.volume"
    modality = "toy"
    domain = IntensityDomain.MAGNITUDE
    structure = "ball"
    summary = "toy volume editor"
    model_config = TINY
    tune_settings = TINY_TUNE

    @classmethod
    def load_model(cls) -> Any:
        raise ValueError("toy.volume: run `c3 editor fit`")

    @classmethod
    def fit_arrays(cls, limit: int | None = None, config: VolumeStructureConfig | None = None) -> Any:
        u, m = phantoms(8 if limit is None else limit, size=8)
        return u, m, {"data": "phantoms", "structures": ["ball"]}


class _Host:
    class _Reg:
        def get(self, op_id: str) -> Any:
            if op_id != _TinyVolumeEditor.id:
                from c3_core.plugins.registry import UnknownContributionError

                raise UnknownContributionError(op_id)
            return type("C", (), {"load": staticmethod(lambda: _TinyVolumeEditor)})()

    def registry(self, kind: str) -> Any:
        return self._Reg()


def test_fit_command_resumes_to_the_same_bytes(tmp_path: Any) -> None:
    lines: list[str] = []
    whole = tmp_path / "whole.safetensors"
    assert fit_command("toy.volume", whole, host=_Host(), echo=lines.append) == 0, lines
    model = load_volume_model(whole)
    assert model.structures == ("ball",) and model.config == TINY
    assert not ckpt.checkpoint_dir_for(whole).exists()

    cut = tmp_path / "cut.safetensors"

    def interrupt_at_epoch_3(line: str) -> None:
        if "epoch 3:" in line:
            raise KeyboardInterrupt

    assert fit_command("toy.volume", cut, host=_Host(), echo=interrupt_at_epoch_3) == 130
    assert not cut.exists() and ckpt.latest(ckpt.checkpoint_dir_for(cut)) is not None
    assert fit_command("toy.volume", cut, host=_Host(), echo=lines.append) == 2  # unfinished fit: needs --resume
    assert fit_command("toy.volume", cut, host=_Host(), echo=lines.append, resume=True) == 0, lines
    _assert_same_file(cut, whole)


def _assert_same_file(a: Any, b: Any) -> None:
    """Same tensors (bytes) and metadata (safetensors writes its metadata map in no fixed order)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        assert fa.metadata() == fb.metadata()


def test_tune_settings_record_the_objective() -> None:
    first = _tune_fingerprint(TuneSettings(steps=4))  # the first version's objective: recorded as before the options existed
    assert "target" not in first and "sharpness" not in first
    assert _tune_fingerprint(TINY_TUNE)["target"] == "shift" and _tune_fingerprint(TINY_TUNE)["sharpness"] == 4.0
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sharpness"):
            TuneSettings(sharpness=bad)


def test_fit_command_rejects_bad_input(tmp_path: Any) -> None:
    lines: list[str] = []
    assert fit_command("toy.volume", tmp_path / "x.pt", host=_Host(), echo=lines.append) == 2
    assert fit_command("toy.volume", tmp_path / "y.safetensors", host=_Host(), echo=lines.append, resume=True) == 2
    assert fit_command("toy.volume", tmp_path / "y.safetensors", host=_Host(), echo=lines.append, size=32) == 2
    assert fit_command("toy.volume", tmp_path / "y.safetensors", host=_Host(), echo=lines.append, grid="9,9,9") == 2
    assert fit_command("toy.other", tmp_path / "y.safetensors", host=_Host(), echo=lines.append) == 2
    assert any("--grid" in line for line in lines) and any("divisible" in line for line in lines)
