"""docs/operators.md matches the installed operators (regenerate with scripts/operator_catalogue.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operator_catalogue_is_current() -> None:
    spec = importlib.util.spec_from_file_location("operator_catalogue", ROOT / "scripts" / "operator_catalogue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "operators.md").read_text(encoding="utf-8") == module.render(), (
        "docs/operators.md is stale: run python scripts/operator_catalogue.py"
    )
