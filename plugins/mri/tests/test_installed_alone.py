"""With only c3-core and c3-mri installed, `c3` lists mri alone and evaluates mri alone.

This is what `nox -s "tests(package='mri')"` proves: that session installs nothing but c3-core
and this plugin. In a development environment with other C3 plugins installed the test is
skipped (the integration session covers the everything-installed case).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

C3 = str(Path(sys.executable).with_name("c3"))


def _c3(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("C3_PLUGINS", "C3_DISABLE_PLUGIN_AUTOLOAD")}
    return subprocess.run([C3, *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module", autouse=True)
def _only_mri_installed() -> None:
    others = sorted(ep.name for ep in entry_points(group="c3") if ep.name != "mri")
    if others:
        pytest.skip(f"other C3 plugins are installed here ({others}); run in the tests(package='mri') nox session")


def test_plugins_lists_mri_alone() -> None:
    result = _c3("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = json.loads(result.stdout)["plugins"]
    assert [(p["name"], p["status"], p["modalities"]) for p in plugins] == [("c3-mri", "loaded", ["mri"])]


def test_evaluate_runs_mri_alone(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = _c3("evaluate", "--k", "2", "--limit", "3", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["mri"]
    assert summary["mri"]["n_cases"] == 3 and summary["mri"]["k"] == 2
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["mri"]
