"""The causal probe finds its editors from the shipped catalogues, importing no other editor (issue 19 §4)."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, sys
from c3_core.evaluation.probe import find_probe_editors
from c3_core.plugins.host import PluginHost

host = PluginHost().load()
found = {m: find_probe_editors(host, m).ids() for m in ("cxr", "mri", "fundus")}
heavy = sorted(m for m in sys.modules if m == "diffusers" or m.startswith("diffusers.")
               or m.endswith((".editors.diffusion", ".editors.concepts", ".editors.structure")))
print(json.dumps({"found": found, "heavy": heavy}))
"""


def test_find_probe_editors_reads_roles_from_the_catalogue_and_imports_only_those_editors() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for modality, ids in result["found"].items():
        assert ids == {role: f"{modality}.lesion_{role}" if role != "control" else f"{modality}.healthy_control"
                       for role in ("removed", "only", "control")}
    assert result["heavy"] == []  # neither diffusers nor any other editor family was imported
