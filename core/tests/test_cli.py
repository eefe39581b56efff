"""The c3 CLI: version, plugin listing with failures, operator catalogue, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_dists import populate, write_dist
from typer.testing import CliRunner

import c3_core
from c3_core.cli import app

TOY_MODULE = '''
from toy_plugin import c3_register_operators, c3_register_models  # noqa: F401
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True,
                 default_model="toy.model", default_neighbourhood=NEIGHBOURHOOD)
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


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    write_dist(tmp_path, "c3-toy", "c3_toy_entry", f"NEIGHBOURHOOD = {str(spec)!r}\n" + TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("C3_PLUGINS", raising=False)
    monkeypatch.delenv("C3_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return tmp_path


runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and c3_core.__version__ in result.output


def test_the_console_entry_point_keeps_freed_memory_before_any_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import c3_core.allocator
    from c3_core import cli

    calls: list[str] = []
    monkeypatch.setattr(c3_core.allocator, "keep_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(sys, "argv", ["c3", "--version"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0 and calls == ["kept"]


def test_plugins_json_lists_good_and_failed_plugins(site: Path) -> None:
    populate(site)
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["c3-toy"]["status"] == "loaded"
    assert by_name["c3-toy"]["modalities"] == ["toy"]
    assert by_name["c3-toy"]["contributions"]["operators"] == 3
    assert by_name["c3-fakebroken"]["status"] == "error" and "exploded" in by_name["c3-fakebroken"]["error"]
    assert by_name["c3-fakefuture"]["status"] == "incompatible"
    table = runner.invoke(app, ["plugins"])
    assert table.exit_code == 0 and "c3-toy" in table.output


def test_ops_catalogue(site: Path) -> None:
    result = runner.invoke(app, ["ops", "--modality", "toy", "--json"])
    assert result.exit_code == 0, result.output
    ops = {d["id"]: d for d in json.loads(result.output)}
    assert ops["toy.gain"]["severity"]["unit"] == "dB" and ops["toy.shift"]["spatial"] is True
    assert runner.invoke(app, ["ops", "-m", "toy", "--json"]).output == result.output  # -m like c3 evaluate
    bad = runner.invoke(app, ["ops", "-m", "toy", "-m", "nope"])
    assert bad.exit_code == 2 and "unknown modality 'nope'" in bad.output


HALFWAY_MODULE = '''
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_operators(registry):
    registry.add("halfway.native", "c3_halfway_native:NativeOp", "its module raises on import")
'''


def test_a_broken_operator_module_is_shown_not_fatal(site: Path) -> None:
    write_dist(site, "c3-halfway", "c3_halfway_entry", HALFWAY_MODULE)
    (site / "c3_halfway_native.py").write_text("raise ImportError('libnative.so: cannot open shared object file')\n")
    plain = json.loads(runner.invoke(app, ["plugins", "--json"]).output)
    assert {p["name"]: p["status"] for p in plain["plugins"]}["c3-halfway"] == "loaded"  # targets not imported
    checked = runner.invoke(app, ["plugins", "--check", "--json"])
    assert checked.exit_code == 3
    halfway = {p["name"]: p for p in json.loads(checked.output)["plugins"]}["c3-halfway"]
    assert halfway["status"] == "degraded"
    assert halfway["failures"][0]["id"] == "halfway.native" and "libnative.so" in halfway["failures"][0]["error"]
    table = runner.invoke(app, ["plugins", "--check"], env={"COLUMNS": "200"})
    assert "degraded" in table.output and "halfway.native: cannot import c3_halfway_native" in table.output
    listing = runner.invoke(app, ["ops", "-m", "halfway", "-m", "toy"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "toy.gain" in listing.output
    assert "halfway.native" in listing.output and "ImportError: libnative.so" in listing.output


def test_ops_table_never_cuts_an_id_at_80_columns(site: Path) -> None:
    listed = json.loads(runner.invoke(app, ["ops", "--json"]).output)
    result = runner.invoke(app, ["ops"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = {w for line in lines for w in line.split()}
    assert {d["id"] for d in listed} <= words


def test_gate_calibrate_cli(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.csv"
    rows = ["statistic,valid"] + [f"{i / 100:.2f},{1 if i < 30 else 0}" for i in range(60)]
    anchors.write_text("\n".join(rows) + "\n")
    out = tmp_path / "gate.json"
    result = runner.invoke(app, ["gate", "calibrate", str(anchors), "--target-precision", "1.0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["delta"] == pytest.approx(0.29)
    broken = tmp_path / "broken.csv"
    broken.write_text("statistic,valid\n0.1,1\nabc,0\n")
    result = runner.invoke(app, ["gate", "calibrate", str(broken), "--out", str(tmp_path / "g2.json")])
    assert result.exit_code == 2 and "broken.csv" in result.output and "row" in result.output
    assert not (tmp_path / "g2.json").exists()


def test_evaluate_toy_end_to_end(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3_PLUGINS", "c3-toy")  # other installed plugins (a dev venv) stay out of this run
    out = tmp_path / "run"
    result = runner.invoke(app, ["evaluate", "--out", str(out), "--quiet", "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "toy" / "summary.json").read_text())
    assert summary["n_cases"] == 12 and summary["k"] == 4
    assert summary["auroc_macro"] == pytest.approx(1.0)
    assert 0 <= summary["utility"]["p10"] <= summary["utility"]["mean"] <= summary["score_mean"]
    assert "operator checks only" in summary["gated_by"]
    assert set(summary["severity_response"]) == {"toy.gain", "toy.noise"}
    # the same run with another batch size gives the same per-case table
    out2 = tmp_path / "run2"
    assert runner.invoke(app, ["evaluate", "--out", str(out2), "--quiet", "--batch-size", "1"]).exit_code == 0
    assert (out / "toy" / "cases.csv").read_bytes() == (out2 / "toy" / "cases.csv").read_bytes()
    assert (out / "toy" / "counterfactuals.csv").read_bytes() == (out2 / "toy" / "counterfactuals.csv").read_bytes()
    # a finished folder is not overwritten
    again = runner.invoke(app, ["evaluate", "--out", str(out), "--quiet"])
    assert again.exit_code == 2 and "already holds a finished run" in again.output


def test_evaluate_bad_spec_writes_nothing(site: Path, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text("[[members]]\nop = 'toy.gain'\nseverity = [0, 60]\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--neighborhood", str(spec), "--out", str(out), "--quiet"])
    assert result.exit_code == 2
    assert "bad.toml" in result.output and "outside the admissible range" in result.output
    assert not any(out.rglob("*.*"))
