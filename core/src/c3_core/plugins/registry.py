"""Registries of lazy contributions (``"modality.name"`` -> ``"package.module:attr"``)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
KINDS: tuple[str, ...] = ("operators", "editors", "datasets", "models", "metrics")


class ContributionError(ValueError):
    """A malformed or conflicting contribution."""


class UnknownContributionError(LookupError):
    """An id that no installed plugin registered."""


@dataclass(frozen=True)
class ContributionFailure:
    """A contribution whose target could not be imported: which plugin, which id, what went wrong."""

    plugin: str
    kind: str
    id: str
    target: str
    error: str

    @property
    def modality(self) -> str:
        return self.id.split(".", 1)[0]

    def __str__(self) -> str:
        return f"{self.id} (plugin {self.plugin}): {self.error}"

    def to_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "kind": self.kind, "id": self.id, "target": self.target, "error": self.error}


class ContributionLoadError(ContributionError):
    """A registered contribution whose target failed to import; ``failure`` says which and why.

    The underlying exception is ``__cause__`` (None for a missing attribute).
    """

    def __init__(self, failure: ContributionFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure

    @property
    def plugin(self) -> str:
        return self.failure.plugin

    @property
    def contribution(self) -> str:
        return self.failure.id


@dataclass(frozen=True)
class Contribution:
    """One registered thing, pointed at lazily.

    ``on_failure`` (set by the registry) is told of every failed :meth:`load`, so the host can
    report the plugin as degraded.
    """

    kind: str
    id: str
    target: str
    summary: str
    plugin: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    on_failure: Callable[[ContributionFailure], None] | None = field(default=None, repr=False, compare=False)

    @property
    def modality(self) -> str:
        return self.id.split(".", 1)[0]

    def load(self) -> Any:
        """Import and return the target object; raise :class:`ContributionLoadError` if that fails."""
        module_name, attr = self.target.split(":", 1)
        try:
            obj: Any = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - report which contribution failed
            raise self._failed(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise self._failed(f"{self.target} has no attribute {part!r}") from None
        return obj

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and deep-copied without ``on_failure``, so the host does not travel with it."""
        return {**self.__dict__, "on_failure": None}

    def _failed(self, error: str) -> ContributionLoadError:
        failure = ContributionFailure(self.plugin, self.kind, self.id, self.target, error)
        if self.on_failure is not None:
            self.on_failure(failure)
        return ContributionLoadError(failure)


class Registry:
    """The typed registry a registrar hook receives; one per contribution kind."""

    def __init__(self, kind: str, on_failure: Callable[[ContributionFailure], None] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown contribution kind {kind!r}")
        self.kind = kind
        self._items: dict[str, Contribution] = {}
        self._plugin = "<host>"
        self._on_failure = on_failure

    def _set_plugin(self, name: str) -> None:
        self._plugin = name

    def add(self, id: str, target: str, summary: str = "", **meta: Any) -> None:  # noqa: A002
        """Register ``id`` -> lazy ``target`` (``"package.module:attr"``) with a one-line summary."""
        if not ID_PATTERN.match(id):
            raise ContributionError(f"{self.kind} id {id!r} must look like 'modality.name' (lower-case)")
        if not TARGET_PATTERN.match(target):
            raise ContributionError(f"{id}: target {target!r} must look like 'package.module:attr'")
        if id in self._items:
            other = self._items[id].plugin
            raise ContributionError(f"{id} is already registered by plugin {other}")
        self._items[id] = Contribution(self.kind, id, target, summary, self._plugin, dict(meta), self._on_failure)

    def _drop_plugin(self, name: str) -> None:
        for key in [k for k, c in self._items.items() if c.plugin == name]:
            del self._items[key]

    def get(self, id: str) -> Contribution:  # noqa: A002
        try:
            return self._items[id]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none installed"
            raise UnknownContributionError(f"unknown {self.kind[:-1]} id {id!r} (known: {known})") from None

    def __contains__(self, id: object) -> bool:  # noqa: A002
        return id in self._items

    def __iter__(self) -> Iterator[Contribution]:
        return iter(sorted(self._items.values(), key=lambda c: c.id))

    def __len__(self) -> int:
        return len(self._items)

    def by_plugin(self, name: str) -> list[Contribution]:
        return [c for c in self if c.plugin == name]

    def for_modality(self, modality: str) -> list[Contribution]:
        return [c for c in self if c.modality == modality]
