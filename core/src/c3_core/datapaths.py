"""Paths a cohort file names, kept inside its data root, and the exam ids derived from them.

A loader that reads user files resolves every name a CSV row (or a folder scan) gives with
:func:`resolve_inside` before it reads any image: symlinks are followed, and a name that ends up
outside the data root — ``../x.png``, an absolute path elsewhere, a symlink leading out — is a
:class:`CohortPathError` naming the file, the 1-based CSV row (header = row 1) and the column.
An absolute name that resolves inside the root is accepted. The check only looks at the file
system's names (``lstat``/``readlink``); it never opens the file. Loaders then read ``root / name``
as named — the system resolves it exactly as the check did, and a reader that goes by the file
name (``.nii.gz``, ``.dcm``) still sees it behind a symlink into a content store.

:func:`stable_id` gives an exam its id: the path relative to the root with ``/`` separators, so
``sub-01/anat/FLAIR.nii.gz`` and ``sub-02/anat/FLAIR.nii.gz`` stay distinct and the id does not
depend on where the data is mounted. Ids are raw (they may quote a file name); the core replaces
them with keyed pseudonyms before anything is written. :func:`refuse_duplicate_ids` refuses a
cohort in which two rows would share an id, listing every clash.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePath

ROOT_HINT = "give --data-option image_root=... if the images live elsewhere"


class CohortPathError(ValueError):
    """A cohort names a file outside its data root, or two rows share an exam id."""


def _where(source: str | Path, row: int | None, column: str | None) -> str:
    parts = [f"row {row}" if row is not None else "", f"column {column!r}" if column is not None else ""]
    detail = ", ".join(p for p in parts if p)
    return f"{source}: {detail}" if detail else str(source)


def _inside(path: str, base: str) -> bool:
    """Whether normalised absolute ``path`` is ``base`` or below it (both plain strings)."""
    return path == base or path.startswith(base if base.endswith(os.sep) else base + os.sep)


def resolve_inside(root: str | Path, name: str | Path, *, source: str | Path, row: int | None = None, column: str | None = None) -> Path:
    """The real path (symlinks resolved) of ``name`` taken relative to ``root``.

    ``name`` may be relative to ``root`` or absolute; either way its real path must lie inside
    the real path of ``root``, else :class:`CohortPathError` (``source``, ``row`` and ``column``
    say where the name came from; ``row`` is 1-based with the CSV header as row 1, ``None`` for a
    folder scan). Whether the file exists is not checked here, and nothing is opened.
    """
    text = os.fspath(name)
    where = _where(source, row, column)
    if not text.strip():
        raise CohortPathError(f"{where}: empty path")
    if "\x00" in text:
        raise CohortPathError(f"{where}: path {text!r} contains a NUL character")
    try:
        real_root = os.path.realpath(root)
        real = os.path.realpath(os.path.join(real_root, text))  # an absolute ``text`` replaces the root
    except (OSError, ValueError) as exc:
        raise CohortPathError(f"{where}: cannot resolve {text!r} ({exc})") from None
    if os.path.normpath(real) != real:  # realpath leaves a symlink loop and what follows it unresolved
        raise CohortPathError(f"{where}: {text!r} cannot be resolved (a symlink loop)")
    if not _inside(real, real_root):
        hint = f" ({ROOT_HINT})" if row is not None else ""
        raise CohortPathError(f"{where}: {text!r} resolves outside the data root {real_root}{hint}")
    return Path(real)


def stable_id(root: str | Path, path: str | Path) -> str:
    """``path`` relative to ``root`` with POSIX separators (a relative ``path`` is taken under ``root``).

    The relation is first taken by name (both made absolute, ``.`` and ``..`` collapsed), so a
    symlinked file keeps the name the cohort gives it; a path that is inside ``root`` only once
    symlinks are resolved is related through the real paths. A path outside ``root`` either way,
    or the root itself, is a :class:`CohortPathError`.
    """
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(base, path))
    if not _inside(full, base):
        base, full = os.path.realpath(base), os.path.realpath(full)
        if not _inside(full, base):
            raise CohortPathError(f"{path}: not inside the data root {base}")
    if full == base:
        raise CohortPathError(f"{path}: is the data root {base} itself, not a file inside it")
    return PurePath(os.path.relpath(full, base)).as_posix()


def refuse_duplicate_ids(pairs: Iterable[tuple[str, int]], source: str | Path) -> None:
    """Raise :class:`CohortPathError` if two ``(exam id, 1-based row)`` pairs share an id.

    The message lists every clashing id with all its rows, e.g.
    ``cohort.csv: ids collide: 'a/1.png' rows 2, 5; 'b' rows 3, 4``.
    """
    rows: dict[str, list[int]] = {}
    for exam_id, row in pairs:
        rows.setdefault(exam_id, []).append(row)
    clashes = [f"{exam_id!r} rows {', '.join(str(r) for r in rs)}" for exam_id, rs in rows.items() if len(rs) > 1]
    if clashes:
        raise CohortPathError(f"{source}: ids collide: {'; '.join(clashes)} (each exam needs its own id)")
