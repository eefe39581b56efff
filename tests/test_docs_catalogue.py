"""docs/operators.md matches the installed operators (regenerate with scripts/operator_catalogue.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operator_catalogue_is_current() -> None:
    spec = importlib.util.spec_from_file_location("operator_catalogue", ROOT / "scripts" / "operator_catalogue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "operators.md").read_text(encoding="utf-8") == module.render(), (
        "docs/operators.md is stale: run python scripts/operator_catalogue.py"
    )


README_OF_PLUGIN = {
    "cxr": "plugins/cxr/README.md",
    "mri": "plugins/mri/README.md",
    "fundus": "plugins/fundus/README.md",
    "ultrasound": "packages/ultrasound/README.md",
}


def _readme_ranges(text: str) -> dict[str, tuple[str, str]]:
    """Operator rows of a README table, ``| `id` | units | identity → extreme | model |``: id -> the two ends."""
    ranges = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and "→" in cells[2]:
            low, high = (part.strip().split()[0] for part in cells[2].split("→", 1))
            ranges[cells[0].strip("`")] = (low, high)
    return ranges


def test_each_plugin_readme_lists_its_operators_with_their_installed_ranges() -> None:
    from c3_core.plugins.host import PluginHost

    host = PluginHost().load()
    problems = []
    for c in host.registry("operators"):
        readme = README_OF_PLUGIN.get(c.plugin)
        if readme is None or not (ROOT / readme).exists():
            continue
        severity = c.load().describe()["severity"]
        listed = _readme_ranges((ROOT / readme).read_text(encoding="utf-8")).get(c.id)
        if listed is None:
            problems.append(f"{readme}: no row for {c.id}")
        elif (float(listed[0]), float(listed[1])) != (float(severity["identity"]), float(severity["extreme"])):
            problems.append(f"{readme}: {c.id} listed {listed[0]} → {listed[1]}, installed {severity['identity']:g} → {severity['extreme']:g}")
    assert not problems, "\n".join(problems)
