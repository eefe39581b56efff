"""Paths as generated documents and stored results show them: never an absolute path of the machine that ran.

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


def _packaged_label(path: Path) -> str | None:
    """``package/relative/path`` when ``path`` lies inside an importable package (a data folder
    within it included): relative to the parent of the outermost of the nearest run of parents
    holding an ``__init__.py``; else None."""
    top = None
    for parent in path.parents:
        if (parent / "__init__.py").is_file():
            top = parent
        elif top is not None:
            break
    return None if top is None else path.relative_to(top.parent).as_posix()


def portable_source(source: str | None, cwd: Path | None = None) -> str | None:
    """A neighbourhood spec's ``source`` as stored results record it, the same on every machine.

    The leading file path (up to its ``.toml``) becomes ``package/…/name.toml`` for a file shipped
    inside a package, else :func:`shown_path` of it; whatever the experiments appended
    (`` minus …``, `` plus editors …``, `` [physics]``) is kept. Labels such as ``--op`` pass unchanged.
    """
    if not source:
        return source
    end = source.find(".toml")
    if end < 0:
        return source
    end += len(".toml")
    head, tail = source[:end], source[end:]
    p = Path(head)
    if not p.is_absolute() and ".." not in p.parts:
        return source
    label = _packaged_label(p.resolve()) if p.is_file() else None
    return (label or shown_path(head, cwd)) + tail
