"""Legitimate MRI cohorts never crash the summary (issue 15 §3).

A cohort of healthy controls (every lesion mask empty) or one whose lesion volumes are all equal
leaves the volume calibration slope undefined: ``c3 evaluate`` must still exit 0, write ``null``
with the reason beside it in summary.json, say why on the console, and ``--resume`` of an
interrupted run of such a cohort must finish the same way.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from c3_core.cli import app
from c3_core.evaluation.store import ResultStore, StoreError
from c3_core.metrics.errors import UndefinedMetricError

SHAPE = (24, 24, 16)
SPACING = (1.5, 1.5, 1.5)
runner = CliRunner()


def _save(path: Path, data: np.ndarray) -> None:
    img = nib.Nifti1Image(data.astype(np.float32), np.diag([*SPACING, 1.0]))
    img.header.set_zooms(SPACING)
    nib.save(img, str(path))


def _cohort(root: Path, n: int, lesion: bool) -> Path:
    """``n`` small FLAIR-like volumes with their masks: all empty, or one equal 3x3x3 lesion each."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.random(SHAPE) * 100.0
        mask = np.zeros(SHAPE)
        if lesion:
            mask[8 + i : 11 + i, 10:13, 6:9] = 1.0
            image[mask > 0] += 150.0
        _save(root / f"case{i}.nii.gz", image)
        _save(root / f"case{i}_mask.nii.gz", mask)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mri.unet3d weights (the default architecture) that segment nothing: every weight zero and
    the last bias -10, so each voxel's lesion probability is ~5e-5, whatever the image."""
    from safetensors.torch import save_file

    from c3_mri.models import unet3d

    state = {k: torch.zeros_like(v) for k, v in unet3d(weights=None).network.state_dict().items()}
    last_bias = [k for k in state if k.endswith("bias")][-1]
    state[last_bias] = torch.full_like(state[last_bias], -10.0)
    path = tmp_path_factory.mktemp("weights") / "no-lesion.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _evaluate(data: Path, weights: Path, out: Path, *extra: str) -> Any:
    return runner.invoke(app, ["evaluate", "-m", "mri", "--data", str(data), "--model", str(weights), "--limit", "3",
                               "--k", "1", "--quiet", "--out", str(out), *extra])


def _strict_json(path: Path) -> dict[str, Any]:
    """The file as JSON, refusing NaN/Infinity (what ``allow_nan=False`` promises)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: {token} in JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _assert_every_null_has_a_reason(summary: dict[str, Any]) -> None:
    def walk(node: Any, reasons: Any, path: tuple[str, ...]) -> None:
        if node is None:
            assert isinstance(reasons, str) and reasons, f"{'.'.join(path)} is null without a reason"
        elif isinstance(node, dict):
            for k, v in node.items():
                if not path and k == "undefined":
                    continue
                walk(v, reasons.get(str(k)) if isinstance(reasons, dict) else None, (*path, str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, reasons.get(str(i)) if isinstance(reasons, dict) else None, (*path, str(i)))

    walk(summary, summary["undefined"], ())


def test_healthy_controls_give_null_and_a_reason(tmp_path: Path, weights: Path) -> None:
    data = _cohort(tmp_path / "controls", 3, lesion=False)
    result = _evaluate(data, weights, tmp_path / "out")
    assert result.exit_code == 0, result.output
    summary = _strict_json(tmp_path / "out" / "mri" / "summary.json")
    assert summary["n_cases"] == 3
    assert summary["volume_slope"] is None and summary["volume_intercept_mm3"] is None
    assert "every lesion mask is empty" in summary["undefined"]["volume_slope"]
    assert summary["small_lesion_recall"] is None and "no small lesion" in summary["undefined"]["small_lesion_recall"]
    assert summary["dice_volume_mean"] == 1.0  # nothing to find, nothing found: the empty-mask rule
    _assert_every_null_has_a_reason(summary)
    assert _strict_json(tmp_path / "out" / "summary.json")["mri"] == summary
    assert "volume_slope, volume_intercept_mm3: undefined: every lesion mask is empty" in result.output
    if importlib.util.find_spec("matplotlib") is not None:  # the report and card need c3-core[report]
        card = (tmp_path / "out" / "model_card.md").read_text(encoding="utf-8")
        assert "undefined: every lesion mask is empty" in card


def test_equal_lesion_volumes_give_null_and_a_reason(tmp_path: Path, weights: Path) -> None:
    data = _cohort(tmp_path / "equal", 3, lesion=True)
    result = _evaluate(data, weights, tmp_path / "out")
    assert result.exit_code == 0, result.output
    summary = _strict_json(tmp_path / "out" / "mri" / "summary.json")
    assert summary["volume_slope"] is None
    assert "every true lesion volume is equal" in summary["undefined"]["volume_slope"]
    assert summary["small_lesion_count"] == 0 and summary["small_lesion_recall"] is None  # 27 voxels = 91 mm³
    _assert_every_null_has_a_reason(summary)


def test_resume_of_a_run_killed_in_its_summary(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case committed, then the process died summarising (the old crash): --resume finishes."""
    import c3_core.evaluation.runner as runner_module

    data = _cohort(tmp_path / "controls", 3, lesion=False)
    out = tmp_path / "out"

    def killed(*args: object, **kwargs: object) -> None:  # what the summary used to do for this cohort
        raise UndefinedMetricError("the volume calibration slope needs at least two cases with different true volumes")

    with monkeypatch.context() as m:
        m.setattr(runner_module, "summarise", killed)
        first = _evaluate(data, weights, out)
    assert first.exit_code != 0 and not (out / "run.json").exists()
    resumed = runner.invoke(app, ["evaluate", "--quiet", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    summary = _strict_json(out / "mri" / "summary.json")
    assert summary["n_cases"] == 3 and summary["volume_slope"] is None
    assert "every lesion mask is empty" in summary["undefined"]["volume_slope"]


def test_resume_of_a_partial_run(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store stops after the first batch (as a full disk would); --resume scores the rest and
    summarises the whole cohort."""
    data = _cohort(tmp_path / "controls", 3, lesion=False)
    out = tmp_path / "out"
    original = ResultStore.commit_batch
    calls = {"n": 0}

    def full_after_one(self: ResultStore, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise StoreError(f"{self.path}: cannot write (database or disk is full)")
        original(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(ResultStore, "commit_batch", full_after_one)
        first = _evaluate(data, weights, out, "--batch-size", "1")
    assert first.exit_code != 0 and not (out / "run.json").exists()
    resumed = runner.invoke(app, ["evaluate", "--quiet", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    summary = _strict_json(out / "mri" / "summary.json")
    assert summary["n_cases"] == 3 and summary["volume_slope"] is None
    assert "every lesion mask is empty" in summary["undefined"]["volume_slope"]
    _assert_every_null_has_a_reason(summary)
