"""The shipped operator catalogues: in step with the classes, listed without torch, readable at 80 columns.

Regenerate the catalogues with `python scripts/write_catalogues.py` when this fails.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from cli_helpers import run_c3

from c3_core.plugins.catalogue import drift
from c3_core.plugins.host import PluginHost

ROOT = Path(__file__).resolve().parents[1]


def _repo_plugins(host: PluginHost) -> list[str]:
    spec = importlib.util.spec_from_file_location("write_catalogues", ROOT / "scripts" / "write_catalogues.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.repo_plugins(host)


def test_every_shipped_catalogue_matches_its_classes() -> None:
    host = PluginHost().load()
    plugins = _repo_plugins(host)
    assert {"cxr", "mri", "fundus", "us"} <= set(plugins)
    problems = [f"{p}: {msg}" for p in plugins for msg in drift(host, p)]
    assert not problems, "stale catalogue.json; run python scripts/write_catalogues.py\n" + "\n".join(problems)


def test_ops_imports_no_torch_and_no_operator_module() -> None:
    code = (
        "import sys; from c3_core.cli import app\n"
        "try:\n    app(['ops', '-m', 'mri', '--json'])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "sys.stderr.write(repr(sorted(m for m in sys.modules if m == 'torch' or '.operators' in m or '.editors' in m)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert {d["id"] for d in listed} >= {"mri.bias_field", "mri.lesion_removed"} and {d["modality"] for d in listed} == {"mri"}
    assert out.stderr == "[]"


def test_ops_table_keeps_every_id_whole_at_80_columns() -> None:
    ids = {d["id"] for d in json.loads(run_c3("ops", "--json").stdout)}
    result = run_c3("ops", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    assert ids <= {word for line in lines for word in line.split()}
