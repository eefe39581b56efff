"""Core names no plugin: no first-party id, modality, package or plugin-only domain in core/src code.

Docstrings, bare string statements and comments may give examples (they are not code). A string
literal in code is flagged when it *is* a first-party name: the whole literal is a modality or a
plugin-only intensity domain (``"mri"``, ``"envelope"``), or a literal without spaces contains a
first-party contribution id or package (``"cxr.tone"``, ``"c3_mri:neighbourhoods/default.toml"``).
A sentence in a message that mentions one as an example (``"an operator id like 'mri.bias_field'"``)
is not flagged. Importing a first-party package, or an attribute named like a modality or a
plugin-only domain (``IntensityDomain.ENVELOPE``), is flagged too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

CORE_SRC = Path(__file__).resolve().parents[1] / "src" / "c3_core"
MODALITIES = {"cxr", "ct", "mri", "fundus", "us"}  # the first-party plugins' modalities
PACKAGES = {"c3_cxr", "c3_mri", "c3_fundus", "c3_ultrasound"}
PLUGIN_DOMAINS = {"envelope", "b_mode"}  # domains a first-party plugin registers (not shared by core)


def _installed_names() -> tuple[set[str], set[str]]:
    """Ids and plugin-registered domains of the installed first-party plugins (listing only: no torch)."""
    from c3_core.plugins.host import PluginHost

    host = PluginHost().load()
    ids = {c.id for reg in host.registries.values() for c in reg if c.modality in MODALITIES}
    domains = {str(d) for d in host.domains if host.domains.owner(str(d)) != "c3-core"}
    return ids, domains


def _documentation(tree: ast.AST) -> set[int]:
    """ids of string constants that are statements of their own (docstrings, attribute docs)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def offences(source: str, ids: Iterable[str] = (), domains: Iterable[str] = ()) -> list[tuple[int, str]]:
    """``(line, what)`` for every first-party name the code of ``source`` uses."""
    exact = MODALITIES | PLUGIN_DOMAINS | set(domains)
    id_like = re.compile(r"(?<![\w.])(?:" + "|".join(sorted(MODALITIES)) + r")\.[a-z_][a-z0-9_]*")
    package = re.compile(r"(?<![\w])(?:" + "|".join(sorted(PACKAGES)) + r")(?![\w])")
    known_ids = set(ids)
    tree = ast.parse(source)
    docs = _documentation(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [(node.lineno, f"imports {n}") for n in names if n.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.Attribute) and node.attr.lower() in exact:
            found.append((node.lineno, f"attribute .{node.attr}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if text.strip() in exact:
                found.append((node.lineno, repr(text)))
            elif text and not any(ch.isspace() for ch in text):
                hits = set(id_like.findall(text)) | set(package.findall(text))
                hits |= {i for i in known_ids if re.search(r"(?<![\w.])" + re.escape(i) + r"(?![\w])", text)}
                found += [(node.lineno, f"{text!r} names {h}") for h in sorted(hits)]
    return found


def test_core_source_names_no_first_party_plugin() -> None:
    ids, domains = _installed_names()
    report = []
    for path in sorted(CORE_SRC.rglob("*.py")):
        for line, what in offences(path.read_text(encoding="utf-8"), ids, domains):
            report.append(f"{path.relative_to(CORE_SRC.parent)}:{line}: {what}")
    assert not report, "core/src names first-party plugins (declare it in the plugin instead):\n" + "\n".join(report)


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ('SHIFTS = {"cxr": 1}', True),
        ('x = ("cxr.tone", 0.75)', True),
        ('ref = "c3_mri:neighbourhoods/default.toml"', True),
        ('if domain == "envelope":\n    pass', True),
        ("import c3_fundus.colour", True),
        ("d = IntensityDomain.B_MODE", True),
        ('def f():\n    """e.g. ``cxr.tone`` or "mri"."""\n', False),
        ('raise ValueError("an operator id like \'mri.bias_field\'")', False),
        ('x = "us"', True),
        ('x = "muscle.tone"', False),
    ],
)
def test_the_checker_flags_code_not_documentation(source: str, flagged: bool) -> None:
    assert bool(offences(source)) is flagged
