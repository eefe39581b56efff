"""Write docs/operators.md from the installed plugins (`python scripts/operator_catalogue.py`).

tests/test_docs_catalogue.py fails when the file and the installed operators disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from c3_core.plugins.host import PluginHost

HEADER = """# Operator catalogue

Generated from the installed plugins by `python scripts/operator_catalogue.py`; a test keeps it in
step. Severity runs from the *identity* value (no change) to the most severe value still considered
label-preserving, in the operator's physical units. `c3 ops --json` prints the same with the
parameter names.

| id | plugin | domain | spatial | severity | unit | identity → extreme | summary |
|---|---|---|---|---|---|---|---|
"""


def render() -> str:
    host = PluginHost().load()
    rows = []
    for kind in ("operators", "editors"):
        for c in host.registry(kind):
            d = c.load().describe()
            s = d["severity"]
            rows.append(
                f"| `{d['id']}` | {c.plugin} | {d['domain']} | {'yes' if d['spatial'] else 'no'} | {s['name']} | {s['unit']} "
                f"| {s['identity']:g} → {s['extreme']:g} | {d['summary']} |"
            )
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "docs" / "operators.md"
    target.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
