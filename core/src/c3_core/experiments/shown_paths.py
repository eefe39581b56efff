"""Paths as generated documents show them: never an absolute path of the machine that ran.

A results file records the command that made it; a folder given as an absolute path (or one
outside the working directory) would put this machine's layout into a file meant to be
committed and shared. :func:`shown_path` keeps a path relative to the working directory and
replaces anything else by a placeholder naming only the last component.
"""

from __future__ import annotations

import os
from pathlib import Path


def shown_path(value: str, cwd: Path | None = None) -> str:
    """``value`` relative to ``cwd`` (default: the working directory) when it lies inside it,
    else ``<outside>/NAME``; a relative path that stays inside is returned as written."""
    here = (cwd or Path.cwd()).resolve()
    p = Path(value)
    if not p.is_absolute() and ".." not in p.parts:
        return value
    try:
        return (here / p).resolve().relative_to(here).as_posix() or "."
    except ValueError:
        return f"<outside>/{p.name}"


def shown_args(args: list[str], cwd: Path | None = None) -> list[str]:
    """Every argument that looks like a filesystem path (contains a separator) passed through :func:`shown_path`."""
    return [shown_path(a, cwd) if (os.sep in a or "/" in a) and not a.startswith("-") else a for a in args]
