"""The operator and editor catalogue, listed without importing torch or any operator module.

A plugin ships ``catalogue.json`` in the package that holds its entry module: each operator's and
editor's ``describe()`` (plus ``probe_role`` where the class declares one), keyed by kind and id,
written from the classes by ``python -m c3_core.plugins.catalogue PLUGIN`` (first-party plugins:
``python scripts/write_catalogues.py``). Listings read that file; a contribution the file does
not hold (a plugin without a catalogue, or a stale one) is imported instead, and a failure is shown
in its entry and recorded on the host (the plugin becomes ``degraded``). :func:`drift` compares a
catalogue with the classes; the first-party files are kept in step by a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from c3_core.plugins.registry import Contribution, ContributionLoadError

CATALOGUE_FILE = "catalogue.json"
CATALOGUE_KINDS: tuple[str, ...] = ("operators", "editors")
FORMAT = 1
WRITE_COMMAND = "python -m c3_core.plugins.catalogue"


@dataclass(frozen=True)
class CatalogueEntry:
    """One operator or editor as listed: its catalogue ``info``, or the ``error`` that stopped it."""

    contribution: Contribution
    info: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""
    imported: bool = False  # True when read by importing the target rather than from a catalogue

    @property
    def id(self) -> str:
        return self.contribution.id

    def to_dict(self) -> dict[str, Any]:
        c = self.contribution
        if self.error:
            return {"id": c.id, "kind": c.kind[:-1], "modality": c.modality, "plugin": c.plugin, "error": self.error}
        return {**self.info, "id": c.id, "plugin": c.plugin}


def entry_for(cls: Any) -> dict[str, Any]:
    """A class's catalogue entry: ``describe()`` plus ``probe_role`` if it has one, as JSON reads it back."""
    info = dict(cls.describe())
    role = getattr(cls, "probe_role", "")
    if role:
        info["probe_role"] = role
    return json.loads(json.dumps(info, allow_nan=False))


def read(package: str) -> dict[str, Any] | None:
    """The catalogue shipped in ``package``, or None if it ships none (or an unreadable one)."""
    if not package:
        return None
    try:
        data = json.loads(resources.files(package).joinpath(CATALOGUE_FILE).read_text(encoding="utf-8"))
    except (ModuleNotFoundError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _package(host: Any, plugin: str) -> str:
    try:
        return host.plugin(plugin).package
    except LookupError:
        return ""


def _imported(c: Contribution) -> CatalogueEntry:
    try:
        return CatalogueEntry(c, entry_for(c.load()), imported=True)
    except ContributionLoadError as exc:
        return CatalogueEntry(c, error=exc.failure.error, imported=True)
    except Exception as exc:  # noqa: BLE001 - a target without a usable describe(): show it, keep listing
        return CatalogueEntry(c, error=f"describe() failed: {type(exc).__name__}: {exc}", imported=True)


def entries(host: Any, kinds: Iterable[str] = CATALOGUE_KINDS, modalities: Iterable[str] | None = None) -> list[CatalogueEntry]:
    """The catalogue of the loaded plugins (of ``modalities`` only, if given), operators first.

    Reads each plugin's ``catalogue.json``; imports only the targets a catalogue does not hold.
    """
    wanted = None if modalities is None else set(modalities)
    files: dict[str, dict[str, Any]] = {}
    out = []
    for kind in kinds:
        for c in host.registry(kind):
            if wanted is not None and c.modality not in wanted:
                continue
            if c.plugin not in files:
                files[c.plugin] = read(_package(host, c.plugin)) or {}
            info = files[c.plugin].get(kind, {}).get(c.id)
            out.append(CatalogueEntry(c, info) if isinstance(info, dict) else _imported(c))
    return out


def editor_roles(host: Any, modality: str, key: str = "probe_role") -> dict[str, Contribution]:
    """The ``modality``'s editors by the value of catalogue field ``key`` (the first id for each value).

    E.g. ``editor_roles(host, "mri")["removed"].load()`` imports only the editor that plays that
    probe role. Editors that cannot be listed are left out (their failure is on the host).
    """
    found: dict[str, Contribution] = {}
    for e in entries(host, ("editors",), [modality]):
        value = e.info.get(key) if not e.error else None
        if isinstance(value, str) and value and value not in found:
            found[value] = e.contribution
    return found


def build(host: Any, plugin: str) -> dict[str, Any]:
    """The catalogue of ``plugin``'s operators and editors, imported from their classes."""
    data: dict[str, Any] = {"format": FORMAT, "generated_by": WRITE_COMMAND, "plugin": plugin}
    for kind in CATALOGUE_KINDS:
        data[kind] = {c.id: entry_for(c.load()) for c in host.registry(kind).by_plugin(plugin)}
    return data


def write(host: Any, plugin: str) -> Path:
    """Write ``plugin``'s ``catalogue.json`` into the package that holds its entry module."""
    package = _package(host, plugin)
    if not package:
        raise LookupError(f"plugin {plugin!r} has no package to ship a catalogue in (its entry module is top-level)")
    target = Path(str(resources.files(package))) / CATALOGUE_FILE
    target.write_text(json.dumps(build(host, plugin), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def drift(host: Any, plugin: str) -> list[str]:
    """How ``plugin``'s shipped catalogue differs from its classes' ``describe()`` (empty: in step)."""
    shipped = read(_package(host, plugin))
    if shipped is None:
        return [f"{plugin}: no {CATALOGUE_FILE} (write it with {WRITE_COMMAND} {plugin})"]
    current = build(host, plugin)
    problems = []
    for kind in CATALOGUE_KINDS:
        have, want = shipped.get(kind, {}), current[kind]
        problems += [f"{i}: registered but not in {CATALOGUE_FILE}" for i in sorted(set(want) - set(have))]
        problems += [f"{i}: in {CATALOGUE_FILE} but not registered" for i in sorted(set(have) - set(want))]
        for i in sorted(set(have) & set(want)):
            keys = sorted(k for k in set(have[i]) | set(want[i]) if have[i].get(k) != want[i].get(k))
            if keys:
                problems.append(f"{i}: {', '.join(keys)} {'differs' if len(keys) == 1 else 'differ'} from describe()")
    return problems


def _plugin_name(host: Any, name: str) -> str:
    """An entry-point name from an entry-point or distribution name."""
    for record in host.load().plugins:
        if name in (record.name, record.distribution):
            return str(record.name)
    raise LookupError(f"no loaded plugin named {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m c3_core.plugins.catalogue [--check] PLUGIN...``: write (or check) catalogues."""
    from c3_core.plugins.host import PluginHost

    parser = argparse.ArgumentParser(prog=WRITE_COMMAND, description=main.__doc__)
    parser.add_argument("plugins", nargs="+", help="entry-point or distribution names")
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    args = parser.parse_args(argv)
    host = PluginHost().load()
    problems = []
    for name in args.plugins:
        plugin = _plugin_name(host, name)
        if args.check:
            problems += drift(host, plugin)
        else:
            sys.stdout.write(f"wrote {write(host, plugin)}\n")
    for p in problems:
        sys.stdout.write(f"{p}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
