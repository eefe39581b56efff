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
