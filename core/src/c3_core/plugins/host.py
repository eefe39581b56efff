"""Discovery and loading of ``c3`` plugins, each isolated from the others' failures.

Order of work for each entry point in group ``c3``:

1. skip it if autoloading is off (``C3_DISABLE_PLUGIN_AUTOLOAD=1``) or it is not on the
   allow-list (``C3_PLUGINS=name,name``: entry-point or distribution names);
2. read the distribution's declared ``c3-core`` range from its metadata and check it against
   the running c3-core *before importing anything*;
3. import the entry module inside a try, register it, validate its hook names;
4. call each registrar hook of that plugin inside a try; on failure the plugin is marked
   ``error`` and its partial contributions are dropped.

Contribution targets are not imported while loading (listing stays cheap, no torch). A target that
fails to import later, when a command loads it (:meth:`Contribution.load`) or when
:meth:`PluginHost.check` imports every target (``c3 plugins --check``), is recorded on the host:
its plugin becomes ``degraded`` and :meth:`PluginHost.failures` names the contribution and the
error, so a command can skip what cannot run and say why.

One host object owns one ``pluggy.PluginManager``; nothing is global and nothing happens at
import time.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import c3_core
from c3_core.domains import Domain, DomainRegistry
from c3_core.plugins import hookspecs
from c3_core.plugins.markers import PROJECT
from c3_core.plugins.registry import (
    KINDS,
    Contribution,
    ContributionFailure,
    ContributionLoadError,
    Registry,
    UnknownContributionError,
)

ENTRY_POINT_GROUP = "c3"
ENV_DISABLE_AUTOLOAD = "C3_DISABLE_PLUGIN_AUTOLOAD"
ENV_ALLOW = "C3_PLUGINS"
CORE_DISTRIBUTION = "c3-core"

STATUS_LOADED = "loaded"
STATUS_INCOMPATIBLE = "incompatible"
STATUS_ERROR = "error"
STATUS_DISABLED = "disabled"
STATUS_DEGRADED = "degraded"


@dataclass
class PluginRecord:
    """What ``c3 plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    core_range: str
    status: str
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    modalities: list[str] = field(default_factory=list)
    package: str = ""
    failures: list[ContributionFailure] = field(default_factory=list)

    def add_failure(self, failure: ContributionFailure) -> None:
        """Record a contribution that failed to import; a loaded plugin becomes ``degraded``."""
        if any(f.id == failure.id for f in self.failures):
            return
        self.failures.append(failure)
        if self.status in (STATUS_LOADED, STATUS_DEGRADED):
            self.status = STATUS_DEGRADED
            self.error = "; ".join(f"{f.id}: {f.error}" for f in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.distribution or self.name,
            "entry_point": self.name,
            "version": self.version,
            "core_range": self.core_range,
            "modalities": self.modalities,
            "contributions": self.counts,
            "status": self.status,
            "error": self.error,
            "failures": [f.to_dict() for f in self.failures],
        }


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _package_of(module: ModuleType) -> str:
    """The package holding a plugin's entry module ('' for a top-level module)."""
    spec = getattr(module, "__spec__", None)
    return (spec.parent if spec is not None else getattr(module, "__package__", "")) or ""


def declared_core_range(dist: metadata.Distribution | None) -> str | None:
    """The ``c3-core`` specifier a distribution requires, or None if it declares none."""
    if dist is None:
        return None
    for raw in dist.requires or []:
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        if req.name.lower().replace("_", "-") == CORE_DISTRIBUTION and not req.marker:
            return str(req.specifier)
    return None


class PluginHost:
    """Finds, checks and loads plugins; holds their registries.

    ``autoload`` / ``allow`` default to the environment. ``entry_points`` replaces discovery
    (tests); ``modules`` registers in-process plugin modules by name (always allowed).
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        allow: Iterable[str] | None = None,
        entry_points: Iterable[metadata.EntryPoint] | None = None,
        modules: Mapping[str, ModuleType] | None = None,
    ) -> None:
        env_allow = os.environ.get(ENV_ALLOW)
        self.autoload = (not _truthy(os.environ.get(ENV_DISABLE_AUTOLOAD))) if autoload is None else autoload
        if allow is None and env_allow:
            allow = [a.strip() for a in env_allow.split(",") if a.strip()]
        self.allow = None if allow is None else {a.lower() for a in allow}
        self._entry_points = entry_points
        self._modules = dict(modules or {})
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry] = {kind: Registry(kind, self._record_failure) for kind in KINDS}
        self.domains = DomainRegistry()  # filled by c3_register_domains, before the other registrars
        self.plugins: list[PluginRecord] = []
        self._loaded = False

    # -- discovery ------------------------------------------------------------------------
    def _discover(self) -> list[metadata.EntryPoint]:
        if self._entry_points is not None:
            return list(self._entry_points)
        if not self.autoload:
            return []
        return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)

    def load(self) -> PluginHost:
        """Discover and load every plugin once (idempotent)."""
        if self._loaded:
            return self
        self._loaded = True
        core_version = Version(c3_core.__version__)
        for ep in self._discover():
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ""
            record = PluginRecord(
                name=ep.name,
                distribution=dist_name,
                version=dist.version if dist is not None else "",
                core_range="",
                status=STATUS_LOADED,
            )
            self.plugins.append(record)
            if self.allow is not None and not ({ep.name.lower(), dist_name.lower()} & self.allow):
                record.status = STATUS_DISABLED
                record.error = f"not in {ENV_ALLOW}"
                continue
            core_range = declared_core_range(dist)
            record.core_range = core_range or ""
            if core_range is None:
                record.status = STATUS_INCOMPATIBLE
                record.error = f"declares no {CORE_DISTRIBUTION} requirement, so compatibility is unknown"
                continue
            if not SpecifierSet(core_range).contains(core_version, prereleases=True):
                record.status = STATUS_INCOMPATIBLE
                record.error = f"needs {CORE_DISTRIBUTION}{core_range}, installed is {core_version}"
                continue
            try:
                module = importlib.import_module(ep.value.split(":", 1)[0])
                record.package = _package_of(module)
                if ":" in ep.value:
                    module = getattr(module, ep.value.split(":", 1)[1])
            except Exception as exc:  # noqa: BLE001 - isolate any import failure
                record.status = STATUS_ERROR
                record.error = f"import failed: {type(exc).__name__}: {exc}"
                continue
            self._register(record, module)
        for name, module in self._modules.items():
            record = PluginRecord(name=name, distribution=name, version="", core_range="", status=STATUS_LOADED)
            record.package = _package_of(module)
            self.plugins.append(record)
            self._register(record, module)
        self._call_registrars()
        for record in self.plugins:
            if record.status == STATUS_LOADED:
                self._summarise(record)
        return self

    def _register(self, record: PluginRecord, module: Any) -> None:
        try:
            self._pm.register(module, name=record.name)
            self._pm.check_pending()
        except Exception as exc:  # noqa: BLE001 - a misspelt hook or bad signature
            if self._pm.is_registered(module):
                self._pm.unregister(module)
            record.status = STATUS_ERROR
            record.error = f"invalid plugin: {type(exc).__name__}: {exc}"

    def _call_registrars(self) -> None:
        by_name = {r.name: r for r in self.plugins}
        registrars: list[tuple[str, Registry | DomainRegistry]] = [("domains", self.domains)]
        for kind, registry in registrars + [(k, self.registries[k]) for k in KINDS]:
            caller = getattr(self._pm.hook, f"c3_register_{kind}")
            for impl in caller.get_hookimpls():
                record = by_name.get(impl.plugin_name)
                if record is None or record.status != STATUS_LOADED:
                    continue
                registry._set_plugin(record.name)
                try:
                    impl.function(**{a: registry for a in impl.argnames})
                except Exception as exc:  # noqa: BLE001 - isolate a failing plugin
                    record.status = STATUS_ERROR
                    record.error = f"c3_register_{kind} failed: {type(exc).__name__}: {exc}"
                    for reg in (self.domains, *self.registries.values()):
                        reg._drop_plugin(record.name)
                finally:
                    registry._set_plugin("<host>")

    def _record_failure(self, failure: ContributionFailure) -> None:
        for record in self.plugins:
            if record.name == failure.plugin:
                record.add_failure(failure)

    def _summarise(self, record: PluginRecord) -> None:
        mods: set[str] = set()
        for kind, reg in self.registries.items():
            items = reg.by_plugin(record.name)
            record.counts[kind] = len(items)
            mods.update(c.modality for c in items)
        record.modalities = sorted(mods)

    # -- queries --------------------------------------------------------------------------
    def domain(self, value: str | Domain) -> Domain:
        """The registered intensity domain ``value`` names (ValueError naming the known ones)."""
        self.load()
        return self.domains.parse(value)

    def registry(self, kind: str) -> Registry:
        self.load()
        return self.registries[kind]

    def plugin(self, name: str) -> PluginRecord:
        """The record of the plugin registered as ``name`` (its entry-point name)."""
        self.load()
        for record in self.plugins:
            if record.name == name:
                return record
        raise LookupError(f"no plugin named {name!r}")

    def failures(self, modalities: Iterable[str] | None = None) -> list[ContributionFailure]:
        """Contributions whose target failed to import so far (optionally of ``modalities`` only).

        Filled as targets are loaded (by any command, or by :meth:`check`); nothing is imported here.
        """
        wanted = None if modalities is None else set(modalities)
        return [f for r in self.plugins for f in r.failures if wanted is None or f.modality in wanted]

    def check(self, kinds: Iterable[str] = KINDS, modalities: Iterable[str] | None = None) -> list[ContributionFailure]:
        """Import every target of the loaded plugins (of ``kinds`` / ``modalities``); return the failures.

        Slow (it imports torch and every operator module): ``c3 plugins --check`` calls it,
        plain ``c3 plugins`` does not.
        """
        self.load()
        wanted = None if modalities is None else set(modalities)
        for kind in kinds:
            for c in self.registries[kind]:
                if wanted is None or c.modality in wanted:
                    try:
                        c.load()
                    except ContributionLoadError:
                        pass  # recorded on the plugin by the registry's on_failure
        return self.failures(wanted)

    def modalities(self) -> list[str]:
        """Modalities with a demo or any dataset registered by a loaded plugin."""
        self.load()
        return sorted({c.modality for c in self.registries["datasets"]})

    def contribution(self, kind: str, id: str) -> Contribution:  # noqa: A002
        return self.registry(kind).get(id)

    def make_operator(self, op_id: str, options: Mapping[str, Any] | None = None) -> Any:
        """Instantiate an operator or editor by id with constructor ``options``."""
        self.load()
        for kind in ("operators", "editors"):
            if op_id in self.registries[kind]:
                cls = self.registries[kind].get(op_id).load()
                return cls(**dict(options or {}))
        known = sorted(c.id for k in ("operators", "editors") for c in self.registries[k])
        raise UnknownContributionError(
            f"unknown operator id {op_id!r} (known: {', '.join(known) or 'none installed'})"
        )

    def demo_dataset(self, modality: str) -> Contribution:
        """The dataset a plugin marked ``demo=True`` for ``modality``."""
        for c in self.registry("datasets").for_modality(modality):
            if c.meta.get("demo"):
                return c
        raise LookupError(f"no demo dataset registered for modality {modality!r}")
