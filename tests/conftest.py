"""Integration tests: every package installed, the `c3` command run as a user would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("C3_CACHE_DIR") or str(tmp_path_factory.mktemp("c3-cache"))
