"""Integration tests: every package installed, the `c3` command run as a user would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def _pseudonym_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never touch the user's own pseudonym key (~/.config/c3/pseudonym.key)."""
    path = tmp_path_factory.mktemp("c3-key") / "pseudonym.key"
    os.environ["C3_PSEUDONYM_KEY_FILE"] = str(path)
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("C3_CACHE_DIR") or str(tmp_path_factory.mktemp("c3-cache"))
