"""docs/hooks.md stays in step with the hook specifications (names, signatures, docstrings)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from c3_core.plugins import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
HOOKS = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("c3_")]


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not shipped with the sdist")
@pytest.mark.parametrize("hook", HOOKS, ids=lambda f: f.__name__)
def test_hook_is_documented_with_its_signature(hook) -> None:  # noqa: ANN001
    text = DOC.read_text(encoding="utf-8")
    assert f"## `{hook.__name__}`" in text, f"{hook.__name__} is missing from docs/hooks.md"
    assert f"def {hook.__name__}{inspect.signature(hook)}" in text, f"{hook.__name__}: documented signature differs"
    assert inspect.cleandoc(hook.__doc__) in text, f"{hook.__name__}: documented description differs"


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not shipped with the sdist")
def test_docs_list_no_hook_that_does_not_exist() -> None:
    names = {f.__name__ for f in HOOKS}
    documented = {line[4:].strip("`") for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("## `")}
    assert documented == names


# -- meta keys: c3_core.plugins.meta is the one declaration; the docs and the code follow it --------
def _documented_meta() -> dict[str, dict[str, tuple[str, bool]]]:
    """kind -> key -> (type name, required), from the table under '## Meta keys'."""
    section = DOC.read_text(encoding="utf-8").split("## Meta keys", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, tuple[str, bool]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[1].startswith("`"):
            rows.setdefault(cells[0], {})[cells[1].strip("`")] = (cells[2].strip("`"), cells[3] == "yes")
    return rows


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not shipped with the sdist")
def test_meta_key_table_matches_the_declarations() -> None:
    from typing import get_type_hints

    from c3_core.plugins.meta import meta_type
    from c3_core.plugins.registry import KINDS

    declared = {}
    for kind in KINDS:
        td = meta_type(kind)
        hints = get_type_hints(td)
        if hints:
            declared[kind] = {k: (t.__name__, k in td.__required_keys__) for k, t in hints.items()}
    assert _documented_meta() == declared


@pytest.mark.parametrize("kind", ["datasets", "models", "metrics"])
def test_each_hook_docstring_names_its_meta_keys(kind: str) -> None:
    from typing import get_type_hints

    from c3_core.plugins.meta import meta_type

    doc = getattr(hookspecs, f"c3_register_{kind}").__doc__
    missing = [k for k in get_type_hints(meta_type(kind)) if f"``{k}``" not in doc]
    assert missing == [], f"c3_register_{kind}'s docstring does not name {missing}"


def test_core_reads_only_declared_meta_keys() -> None:
    import re
    from typing import get_type_hints

    from c3_core.plugins.meta import meta_type
    from c3_core.plugins.registry import KINDS

    declared = {k for kind in KINDS for k in get_type_hints(meta_type(kind))}
    src = Path(hookspecs.__file__).resolve().parents[1]
    read = {
        (m.group(1), str(p.relative_to(src)))
        for p in src.rglob("*.py")
        for m in re.finditer(r"\.meta(?:\.get\(|\[)\"(\w+)\"", p.read_text(encoding="utf-8"))
    }
    assert {(key, where) for key, where in read if key not in declared} == set()
    assert {"default_model", "demo"} <= {key for key, _ in read}
