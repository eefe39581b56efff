"""Find a plugin's imports of c3-core modules other than the author API (deprecated from 0.2).

0.1's guide had authors import from many modules (``c3_core.batch``, ``c3_core.operator``,
``c3_core.plugins.markers`` …). Those modules stay importable until 1.0 — core and the
first-party plugins use them internally — so the deprecation cannot be a warning raised when the
module is imported (Python runs a module once, whoever imports it first). Instead the
conformance kit reads the plugin's own source files and warns, with a ``DeprecationWarning`` at
the importing file and line, for each import of a c3-core module other than :mod:`c3_core.api`
and :mod:`c3_core.testing`. The source is parsed, never imported.
"""

from __future__ import annotations

import ast
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PUBLIC = ("c3_core.api", "c3_core.testing")


@dataclass(frozen=True)
class LegacyImport:
    """One import statement that reaches past the author API."""

    path: str
    line: int
    module: str
    names: tuple[str, ...]

    def message(self) -> str:
        what = f"import {', '.join(self.names)} from c3_core.api" if self.names else "import from c3_core.api"
        return (
            f"{self.module} is internal from c3-core 1.0: {what} (this import keeps working until then; "
            f"a name c3_core.api does not list is not part of the author API and may change without notice)"
        )


def plugin_sources(plugin: ModuleType) -> list[Path]:
    """The ``.py`` files of the top-level package holding ``plugin`` (just its file for a lone module)."""
    root = sys.modules.get(plugin.__name__.split(".", 1)[0], plugin)
    folders = list(getattr(root, "__path__", []) or [])
    if folders:
        return sorted(p for folder in folders for p in Path(folder).rglob("*.py"))
    file = getattr(root, "__file__", None)
    return [Path(file)] if file else []


def legacy_imports(plugin: ModuleType) -> list[LegacyImport]:
    """Every import in ``plugin``'s package of a c3-core module other than the author API."""
    found: list[LegacyImport] = []
    for path in plugin_sources(plugin):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue  # the import itself reports a broken file
        for node in ast.walk(tree):
            found.extend(_legacy(node, str(path)))
    return found


def _legacy(node: ast.AST, path: str) -> list[LegacyImport]:
    if isinstance(node, ast.Import):
        return [
            LegacyImport(path, node.lineno, a.name, ())
            for a in node.names
            if a.name.startswith("c3_core.") and a.name not in PUBLIC
        ]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module == "c3_core":
            names = tuple(a.name for a in node.names if f"c3_core.{a.name}" not in PUBLIC and a.name != "__version__")
            return [LegacyImport(path, node.lineno, "c3_core", names)] if names else []
        if node.module.startswith("c3_core.") and node.module not in PUBLIC:
            return [LegacyImport(path, node.lineno, node.module, tuple(a.name for a in node.names))]
    return []


def warn_legacy_imports(plugin: ModuleType) -> list[LegacyImport]:
    """Warn (``DeprecationWarning`` at the importing line) for each legacy import; return them."""
    found = legacy_imports(plugin)
    for item in found:
        warnings.warn_explicit(item.message(), DeprecationWarning, item.path, item.line)
    return found
