"""The demo cohorts are gated by default: an independent teacher per plugin, thresholds calibrated
on reproducible anchors by scripts/calibrate_demo_gates.py, and real-data cohorts left ungated
(and told so) rather than judged by a phantom-trained teacher."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cli_helpers import run_c3

from c3_core.evaluation.runner import read_gate_file, resolve_resource
from c3_core.gate import calibrate, load_anchors_csv
from c3_core.plugins.host import PluginHost

MODALITIES = ("cxr", "fundus", "mri")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "calibrate_demo_gates.py"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost().load()


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("calibrate_demo_gates", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _gate(host: PluginHost, modality: str) -> tuple[dict, Path]:
    ref = host.demo_dataset(modality).meta["default_gate"]
    path = resolve_resource(ref)
    return json.loads(path.read_text(encoding="utf-8")), path


@pytest.mark.parametrize("modality", MODALITIES)
def test_the_demo_names_an_independent_teacher_and_a_gate_that_loads(host: PluginHost, modality: str) -> None:
    demo = host.demo_dataset(modality)
    models = host.registry("models")
    teacher, model = models.get(demo.meta["default_teacher"]), models.get(demo.meta["default_model"])
    assert teacher.id != model.id and teacher.meta.get("demo") is True
    assert teacher.meta["architecture"] != model.meta["architecture"]
    settings, record = read_gate_file(demo.meta["default_gate"])
    assert record["teacher"] == teacher.id and record["teacher_weights_sha256"]
    key = "tau" if demo.meta["task"] == "segmentation" else "delta"
    stored, _ = _gate(host, modality)
    assert getattr(settings, key) == stored[key] and 0.0 < stored[key] < 1.0
    assert record["calibration"][next(iter(record["calibration"]))]["target_precision"] == 0.95
    assert 0.0 < record["planted_rejected"]["share"] <= 1.0


@pytest.mark.parametrize("modality", MODALITIES)
def test_real_data_loaders_declare_no_phantom_teacher(host: PluginHost, modality: str) -> None:
    readers = [c for c in host.registry("datasets").for_modality(modality) if c.meta.get("accepts_path")]
    assert readers
    for c in readers:
        assert "default_teacher" not in c.meta and "default_gate" not in c.meta, c.id


@pytest.mark.parametrize("modality", MODALITIES)
def test_the_shipped_anchors_reproduce_the_calibration(host: PluginHost, modality: str) -> None:
    import hashlib

    record, path = _gate(host, modality)
    anchors = path.parent / record["anchors"]["file"]
    assert hashlib.sha256(anchors.read_bytes()).hexdigest() == record["anchors"]["sha256"]
    kind, stored = next(iter(record["calibration"].items()))
    result = calibrate(load_anchors_csv(anchors), target_precision=0.95, kind=kind)  # what `c3 gate calibrate` does
    assert result.to_dict() == stored
    rows = list(csv.DictReader(anchors.open(encoding="utf-8")))
    invalid = [float(r["statistic"]) for r in rows if r["valid"] == "0"]
    assert len(invalid) == record["planted_rejected"]["n"] == record["anchors"]["n_invalid"]
    beyond = sum(s < result.threshold for s in invalid) if kind == "segmentation" else sum(s > result.threshold for s in invalid)
    # the full gate rejects at least the planted edits past the threshold (classification adds the class test)
    assert beyond <= record["planted_rejected"]["rejected"]
    if kind == "segmentation":
        assert beyond == record["planted_rejected"]["rejected"]


@pytest.mark.parametrize("modality", ["cxr", "fundus"])
def test_planted_edits_are_rejected_at_the_calibrated_threshold(host: PluginHost, script: ModuleType, modality: str) -> None:
    """On a handful of calibration cases the teacher gives the shipped anchors' statistics again,
    and the calibrated gate rejects every planted edit past δ."""
    from c3_core.evaluation.runner import resolve_model
    from c3_core.evaluation.scoring import GateSettings

    record, path = _gate(host, modality)
    demo = host.demo_dataset(modality)
    teacher, _ = resolve_model(host, modality, demo, demo.meta["default_teacher"], "cpu", role="--teacher")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the script runs
    try:
        got, _ = script.collect(host, modality, teacher, 6, 1, 3)
    finally:
        torch.set_num_threads(threads)
    shipped = {(r["exam_id"], r["operator"]): r["statistic"] for r in csv.DictReader((path.parent / record["anchors"]["file"]).open())
               if r["valid"] == "0"}
    planted = [r for r in got.rows if r["valid"] == 0]
    assert planted
    for r in planted:
        assert abs(float(r["statistic"]) - float(shipped[(r["exam_id"], r["operator"])])) < 1e-5
    effect = script.effect(teacher.task, GateSettings(delta=record["delta"]), teacher.class_names, got)
    beyond = sum(float(r["statistic"]) > record["delta"] for r in planted)
    assert effect.planted == len(planted) and beyond <= effect.planted_rejected <= effect.planted


def test_the_calibration_script_writes_the_same_anchors_twice(script: ModuleType, tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert script.main(["--modality", "cxr", "--cases", "6", "--k", "4", "--out-dir", str(out)]) == 0
    assert (outs[0] / "demo_anchors.csv").read_bytes() == (outs[1] / "demo_anchors.csv").read_bytes()
    assert (outs[0] / "demo.json").read_bytes() == (outs[1] / "demo.json").read_bytes()
    record = json.loads((outs[0] / "demo.json").read_text())
    assert record["command"].endswith("--modality cxr --cases 6 --k 4") and "/" not in record["equivalent"].split()[3]


def test_the_embedded_default_is_gated_by_the_demo_teachers(tmp_path: Path, cache_dir: str) -> None:
    out = tmp_path / "run"
    res = run_c3("evaluate", "-m", "cxr", "-m", "fundus", "--limit", "16", "--out", str(out), "--quiet",
                 env={"C3_CACHE_DIR": cache_dir})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARNING" not in res.stderr
    run = json.loads((out / "run.json").read_text())
    for modality in ("cxr", "fundus"):
        s = json.loads((out / modality / "summary.json").read_text())
        assert s["gated_by"].startswith(f"teacher {modality}.demo_teacher (δ = ")
        assert f"c3_{modality}:gates/demo.json" in s["gated_by"]
        assert s["gate"]["admitted"] < s["gate"]["counterfactuals"]  # the teacher rejects some (cxr: 8 of 128)
        assert s["gate"]["calibration"]["planted_rejected"]["share"] > 0
        assert run["gate"][f"{modality}.delta"] == s["gate"]["thresholds"]["delta"]


def test_mri_default_is_gated_by_its_teacher_masks(tmp_path: Path, cache_dir: str) -> None:
    out = tmp_path / "run"
    res = run_c3("evaluate", "-m", "mri", "--limit", "1", "--out", str(out), "--quiet", env={"C3_CACHE_DIR": cache_dir})
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((out / "mri" / "summary.json").read_text())
    assert s["gated_by"].startswith("teacher mri.demo_teacher (τ = ") and "warning" not in s["gate"]
