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
