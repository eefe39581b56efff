"""The installed `c3` command end to end: discovery, the demo evaluation, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_helpers import run_c3

MODALITIES = {"cxr", "mri", "fundus", "us"}


def test_plugins_json_lists_first_party_plugins() -> None:
    result = run_c3("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    for name, modality in [("c3-cxr", "cxr"), ("c3-mri", "mri"), ("c3-fundus", "fundus"), ("c3-ultrasound", "us")]:
        assert plugins[name]["status"] == "loaded", plugins[name]
        assert modality in plugins[name]["modalities"]
        assert plugins[name]["version"] and plugins[name]["core_range"]


def test_allow_list_limits_modalities() -> None:
    result = run_c3("plugins", "--json", env={"C3_PLUGINS": "c3-mri"})
    loaded = [p for p in json.loads(result.stdout)["plugins"] if p["status"] == "loaded"]
    assert [p["name"] for p in loaded] == ["c3-mri"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: str) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("demo") / "results"
    result = run_c3("evaluate", "--out", str(out), "--quiet", env={"C3_CACHE_DIR": cache_dir})
    return out, result


def test_demo_evaluation_writes_every_modality(demo_run: tuple[Path, object]) -> None:
    out, result = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == MODALITIES
    for modality, s in summary.items():
        assert s["n_cases"] > 0
        assert 0.0 <= s["utility"]["p10"] <= s["utility"]["mean"] <= 1.0
        with (out / modality / "cases.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == s["n_cases"]
        assert all(float(r["utility"]) <= float(r["score"]) + 1e-9 for r in rows)
        with (out / modality / "counterfactuals.csv").open() as fh:
            cfs = list(csv.DictReader(fh))
        assert len(cfs) == s["n_cases"] * s["k"]
        assert json.loads(cfs[0]["provenance"])["steps"]
    assert "auroc_macro" in summary["cxr"] and "lesion_dice_mean" in summary["mri"]
    assert "referable_auroc" in summary["fundus"]


def test_finished_folder_is_not_overwritten(demo_run: tuple[Path, object]) -> None:
    out, _ = demo_run
    before = (out / "summary.json").read_bytes()
    result = run_c3("evaluate", "-m", "us", "--out", str(out), "--quiet")
    assert result.returncode == 2 and "already holds a finished run" in result.stderr
    assert (out / "summary.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "spec", "message"),
    [
        (["-m", "nope"], None, "unknown modality nope"),
        (["-m", "us"], "k = 2\n[[members]\nop='us.gain'", "not valid TOML"),
        (["-m", "us"], "[[members]]\nop = 'us.gain'\nseverity = [0.0, 500.0]", "outside the admissible range"),
        (["-m", "us"], "[[members]]\nop = 'us.warp_drive'", "unknown operator id 'us.warp_drive'"),
        (["-m", "us"], "[[members]]\nop = 'mri.bias_field'", "not us"),
        (["-m", "us", "--model", "nowhere.safetensors"], None, "file not found"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], spec: str | None, message: str) -> None:
    out = tmp_path / "out"
    extra: list[str] = []
    if spec is not None:
        (tmp_path / "spec.toml").write_text(spec)
        extra = ["--neighborhood", str(tmp_path / "spec.toml")]
    result = run_c3("evaluate", *args, *extra, "--out", str(out), "--quiet")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.rglob("*.*"))


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_c3("evaluate", "-m", "us", "--out", str(blocker / "sub"), "--quiet")
    assert result.returncode == 2 and "cannot create output folder" in result.stderr


def test_editor_fit_refuses_a_non_diffusion_editor_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    res = run_c3("editor", "fit", "cxr.lesion_removed", "--out", str(out))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "cxr.lesion_removed is not a diffusion editor" in res.stdout + res.stderr
    assert not list(tmp_path.iterdir())


def test_editor_fit_trains_a_small_denoiser_the_editor_loads(tmp_path: Path) -> None:
    out = tmp_path / "cxr-diffusion.safetensors"
    res = run_c3("editor", "fit", "cxr.diffusion", "--out", str(out), "--epochs", "1", "--limit", "8", "--size", "32", "--batch-size", "4")
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.is_file() and out.with_suffix(".json").is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert "cases" in json.dumps(meta) and "cxr.diffusion" in json.dumps(meta)
    again = run_c3("editor", "fit", "cxr.diffusion", "--out", str(out), "--epochs", "1")
    assert again.returncode == 2 and "already exists" in again.stdout + again.stderr
