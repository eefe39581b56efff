"""Run the installed `c3` command as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

C3 = str(Path(sys.executable).with_name("c3"))


def run_c3(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([C3, *args], capture_output=True, text=True, env=full_env, timeout=timeout)
