"""A broken and an incompatible plugin installed beside the real ones: both are reported, the
rest keep working."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import run_c3


def _dist(root: Path, name: str, module: str, source: str, requires: str) -> None:
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nRequires-Dist: {requires}\n")
    (info / "entry_points.txt").write_text(f"[c3]\n{name.split('-', 1)[1]} = {module}\n")
    (root / f"{module}.py").write_text(source)


def test_broken_and_incompatible_plugins_do_not_take_others_down(tmp_path: Path, cache_dir: str) -> None:
    _dist(tmp_path, "c3-exploding", "c3_exploding", "raise ImportError('missing native library')\n", "c3-core>=0.1")
    _dist(tmp_path, "c3-tomorrow", "c3_tomorrow", "raise SystemExit('must never be imported')\n", "c3-core>=5")
    env = {"PYTHONPATH": str(tmp_path), "C3_CACHE_DIR": cache_dir}
    listing = run_c3("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert plugins["c3-exploding"]["status"] == "error" and "missing native library" in plugins["c3-exploding"]["error"]
    assert plugins["c3-tomorrow"]["status"] == "incompatible" and "c3-core>=5" in plugins["c3-tomorrow"]["error"]
    assert plugins["c3-ultrasound"]["status"] == "loaded"
    result = run_c3("evaluate", "-m", "us", "--k", "2", "--limit", "4", "--out", str(tmp_path / "out"), "--quiet", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["us"]["n_cases"] == 4


def test_a_plugin_whose_operator_module_raises_is_degraded_not_loaded(tmp_path: Path, cache_dir: str) -> None:
    plugin = (
        "from c3_core.plugins.markers import hookimpl\n\n"
        "@hookimpl\n"
        "def c3_register_operators(registry):\n"
        "    registry.add('halfway.native', 'c3_halfway_native:NativeOp', 'needs a native library')\n"
    )
    _dist(tmp_path, "c3-halfway", "c3_halfway", plugin, "c3-core>=0.1")
    (tmp_path / "c3_halfway_native.py").write_text("raise ImportError('libnative.so: cannot open shared object file')\n")
    env = {"PYTHONPATH": str(tmp_path), "C3_CACHE_DIR": cache_dir, "COLUMNS": "200"}
    checked = run_c3("plugins", "--check", "--json", env=env)
    assert checked.returncode == 3, checked.stderr
    plugins = {p["name"]: p for p in json.loads(checked.stdout)["plugins"]}
    assert plugins["c3-halfway"]["status"] == "degraded"
    assert [f["id"] for f in plugins["c3-halfway"]["failures"]] == ["halfway.native"]
    assert "libnative.so" in plugins["c3-halfway"]["error"]
    assert all(p["status"] == "loaded" for name, p in plugins.items() if name != "c3-halfway")
    listing = run_c3("ops", "-m", "halfway", "-m", "us", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "us.speckle" in listing.stdout and "ImportError: libnative.so" in listing.stdout


def test_evaluate_across_modalities_runs_the_others_when_one_plugin_cannot_import_an_operator(tmp_path: Path, cache_dir: str) -> None:
    spec = tmp_path / "halfway.toml"
    spec.write_text('k = 2\nseed = 0\n[[members]]\nop = "halfway.native"\n')
    plugin = (
        "from c3_core.plugins.markers import hookimpl\n\n"
        "@hookimpl\n"
        "def c3_register_operators(registry):\n"
        "    registry.add('halfway.native', 'c3_halfway_native:NativeOp', 'needs a native library')\n\n"
        "@hookimpl\n"
        "def c3_register_datasets(registry):\n"
        f"    registry.add('halfway.demo', 'c3_halfway_native:make', 'demo', task='multiclass', demo=True,\n"
        f"                 default_model='halfway.model', default_neighbourhood={str(spec)!r})\n"
    )
    _dist(tmp_path, "c3-halfway", "c3_halfway", plugin, "c3-core>=0.1")
    (tmp_path / "c3_halfway_native.py").write_text("raise ImportError('libnative.so: cannot open shared object file')\n")
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(tmp_path), "C3_CACHE_DIR": cache_dir, "C3_PLUGINS": "c3-halfway,c3-ultrasound"}
    result = run_c3("evaluate", "--k", "2", "--limit", "4", "--out", str(out), "--quiet", env=env)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "halfway cannot be evaluated" in result.stderr and "libnative.so" in result.stderr
    assert json.loads((out / "summary.json").read_text())["us"]["n_cases"] == 4
    manifest = json.loads((out / "run-failed.json").read_text())
    assert "libnative.so" in manifest["unavailable_modalities"]["halfway"]
    assert "halfway" in (out / "report.html").read_text()
