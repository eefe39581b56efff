"""Write docs/operators.md from the installed plugins (`python scripts/operator_catalogue.py`).

`--check` only reports whether the file is stale (exit 1). tests/test_docs_catalogue.py fails
when the file and the installed operators disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from c3_core.plugins.host import PluginHost

HEADER = """# Operator catalogue

Generated from the installed plugins by `python scripts/operator_catalogue.py`; a test keeps it in
step. Severity runs from the *identity* value (no change) to the most severe value still considered
label-preserving, in the operator's physical units. `c3 ops --json` prints the same with the
parameter names.

**Severity sources.** Every physics operator says where its admissible range comes from: a
`SeveritySource` next to its `Severity` declaration gives the physical quantity the severity
measures, a reference (paper, standard or vendor specification; DOI or URL where one was checked)
and/or a short derivation from physics, why the extreme is still an acquisition a site could
plausibly make, and, where the range was cut to what the source supports, the old range. The
conformance kit (`c3_core.testing.plugin_checks`, check `severity_has_source`) fails a physics
operator without one, so a third-party plugin is held to the same rule. Editors are not physics
operators and are listed without sources. The sources are listed [below the table](#severity-sources).

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
    return HEADER + "\n".join(rows) + "\n" + _sources(host)


def _sources(host: PluginHost) -> str:
    """One section per physics operator: quantity, range, reference / derivation, why the extreme."""
    out = ["", "## Severity sources", ""]
    for c in host.registry("operators"):
        d = c.load().describe()
        s = d["severity"]
        src = s.get("source")
        out.append(f"### `{d['id']}`")
        out.append("")
        out.append(f"- **range**: {s['name']} {s['identity']:g} → {s['extreme']:g} ({s['unit']})")
        if not src:
            out += ["- **source**: none declared", ""]
            continue
        out.append(f"- **quantity**: {src['quantity']}")
        for key, label in (
            ("reference", "reference"),
            ("derivation", "derivation"),
            ("extreme_rationale", "why the extreme is plausible"),
            ("narrowed", "narrowed"),
        ):
            if src.get(key):
                out.append(f"- **{label}**: {src[key]}")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report whether docs/operators.md is stale; write nothing")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    target = root / "docs" / "operators.md"
    text = render()
    if args.check:
        stale = not target.is_file() or target.read_text(encoding="utf-8") != text
        sys.stdout.write(f"{target.relative_to(root)}: {'stale' if stale else 'up to date'}\n")
        return 1 if stale else 0
    target.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {target.relative_to(root)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
