"""The validity gate by default: the dataset's teacher and calibrated thresholds gate its cohort;
a cohort without a teacher runs with operator checks only and says so loudly (console, summary,
report); the experiment's teacher is never the rows' starting point."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_dists import write_dist
from typer.testing import CliRunner

from c3_core.cli import app

TOY_MODULE = '''
from toy_plugin import c3_register_operators  # noqa: F401
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True,
                 default_model="toy.model", default_neighbourhood=NEIGHBOURHOOD,
                 default_teacher="toy.teacher", default_gate=GATE)
    registry.add("toy.files", "toy_plugin:make_dataset", "a user's cohort", task="multiclass",
                 default_model="toy.model", default_neighbourhood=NEIGHBOURHOOD)

@hookimpl
def c3_register_models(registry):
    registry.add("toy.model", "toy_plugin:make_model", "toy model", task="multiclass", spatial_dims=2)
    registry.add("toy.teacher", "toy_plugin:make_model", "toy teacher", task="multiclass", spatial_dims=2, demo=True)
'''

SPEC = """k = 4
seed = 2
[[members]]
op = "toy.gain"
levels = [1.0, 3.0, 6.0]
[[members]]
op = "toy.noise"
severity = [0.05, 0.3]
"""

GATE = {"delta": 0.05, "threshold": 0.5, "teacher": "toy.teacher",
        "planted_rejected": {"n": 10, "rejected": 9, "share": 0.9}}

runner = CliRunner()


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    spec, gate = tmp_path / "toy.toml", tmp_path / "toy_gate.json"
    spec.write_text(SPEC)
    gate.write_text(json.dumps(GATE))
    source = f"NEIGHBOURHOOD = {str(spec)!r}\nGATE = {str(gate)!r}\n" + TOY_MODULE
    write_dist(tmp_path, "c3-toy", "c3_toy_gate_entry", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("C3_PLUGINS", "c3-toy")
    monkeypatch.delenv("C3_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return tmp_path


def _evaluate(out: Path, *args: str) -> tuple[str, dict, dict]:
    result = runner.invoke(app, ["evaluate", "--out", str(out), "--quiet", *args])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "toy" / "summary.json").read_text())
    return result.output, summary, json.loads((out / "run.json").read_text())


def test_the_demo_cohort_is_gated_by_its_teacher_at_the_calibrated_threshold(site: Path, tmp_path: Path) -> None:
    output, s, run = _evaluate(tmp_path / "demo")
    assert "WARNING" not in output
    assert s["gated_by"].startswith("teacher toy.teacher (δ = 0.05,") and "toy_gate.json" in s["gated_by"]
    assert s["gate"]["thresholds"]["delta"] == 0.05 and s["gate"]["teacher"] == "toy.teacher"
    assert s["gate"]["calibration"]["planted_rejected"]["share"] == 0.9  # the gate file's record travels along
    assert "warning" not in s["gate"]  # absent, not null
    assert s["gate"]["admitted"] < s["gate"]["counterfactuals"]  # the tight δ rejects some
    assert run["gate"] == {"toy.delta": 0.05, "toy.threshold": 0.5}
    assert run["gates"]["toy"]["teacher"] == "toy.teacher"
    output, named, _ = _evaluate(tmp_path / "named", "--teacher", "toy.teacher")  # naming the default changes nothing
    assert "WARNING" not in output and named["gated_by"] == s["gated_by"]


def test_a_cohort_without_a_teacher_warns_on_the_console_and_in_the_report(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "own"
    output, s, _ = _evaluate(out, "--data", "toy.files")
    assert "WARNING: toy: operator checks only" in output
    assert "--teacher" in output and "c3 gate calibrate" in output
    assert s["gated_by"] == "operator checks only (no teacher model)"
    assert s["gate"]["admitted"] == s["gate"]["counterfactuals"]
    assert "--teacher" in s["gate"]["warning"] and "teacher" not in s["gate"]
    pytest.importorskip("matplotlib")
    html = (out / "report.html").read_text(encoding="utf-8")
    overview = html.split('<section id="overview">', 1)[1].split("</section>", 1)[0]
    assert 'class="banner"' in overview and "operator checks only" in overview and "c3 gate calibrate" in overview


def test_a_users_teacher_and_gate_file_gate_their_cohort(site: Path, tmp_path: Path) -> None:
    gate = tmp_path / "mine.json"
    gate.write_text(json.dumps({"delta": 0.3}))
    output, s, _ = _evaluate(tmp_path / "gated", "--data", "toy.files", "--teacher", "toy.teacher", "--gate", str(gate))
    assert "WARNING" not in output
    assert s["gated_by"] == "teacher toy.teacher (δ = 0.3, --gate mine.json) + operator checks"
    # a teacher without calibrated thresholds, or the evaluated model as its own teacher: said loudly too
    output, s, _ = _evaluate(tmp_path / "uncal", "--data", "toy.files", "--teacher", "toy.teacher")
    assert "WARNING: toy: teacher toy.teacher gates with uncalibrated default thresholds" in output
    output, _, _ = _evaluate(tmp_path / "self", "--data", "toy.files", "--teacher", "toy.model", "--gate", str(gate))
    assert "WARNING: toy: the teacher is the evaluated model toy.model" in output


def test_the_experiment_teacher_is_never_the_rows_starting_point(site: Path) -> None:
    from c3_core.experiments.context import experiment_teacher
    from c3_core.experiments.sizes import Budget
    from c3_core.plugins.host import PluginHost

    host = PluginHost().load()
    made: list[str | None] = []

    def make_model(weights: str | None) -> object:
        made.append(weights)
        return SimpleNamespace(class_names=("absent", "present"))

    demo = host.registry("datasets").get("toy.demo")
    teacher, teacher_id, gate = experiment_teacher(host, demo, "toy.model", make_model, Budget(init="demo"), "cpu")
    assert teacher_id == "toy.teacher" and teacher is not None and gate.delta == 0.05 and made == []
    files = host.registry("datasets").get("toy.files")  # declares no teacher
    teacher, teacher_id, _ = experiment_teacher(host, files, "toy.model", make_model, Budget(init="demo"), "cpu")
    assert teacher is None and teacher_id is None  # the demo model is the rows' start: it must not gate them
    teacher, teacher_id, _ = experiment_teacher(host, files, "toy.model", make_model, Budget(init=None), "cpu")
    assert teacher_id == "toy.model[demo]" and made == ["demo"]  # rows start at random: the demo model may judge
