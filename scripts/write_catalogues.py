"""Write the catalogue.json of every plugin in this repository (`python scripts/write_catalogues.py`).

Run it after changing an operator or editor class (its describe()) or a plugin's registrations;
`--check` only reports drift. tests/test_catalogue_drift.py fails while a catalogue is stale.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from c3_core.plugins.catalogue import drift, write
from c3_core.plugins.host import PluginHost

ROOT = Path(__file__).resolve().parents[1]


def repo_plugins(host: PluginHost) -> list[str]:
    """Loaded plugins whose package lives in this repository (editable installs)."""
    names = []
    for record in host.plugins:
        if record.status != "loaded" or not record.package:
            continue
        if Path(str(resources.files(record.package))).resolve().is_relative_to(ROOT):
            names.append(record.name)
    return names


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1); write nothing")
    args = parser.parse_args(argv)
    host = PluginHost().load()
    problems = []
    for plugin in repo_plugins(host):
        if args.check:
            problems += drift(host, plugin)
        else:
            sys.stdout.write(f"wrote {write(host, plugin)}\n")
    sys.stdout.write("".join(f"{p}\n" for p in problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
