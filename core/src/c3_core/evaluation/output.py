"""Atomic, contained writes into a run's output folder.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted run never leaves a half-written file that looks whole. Relative paths are
resolved inside the output folder and refused if they would escape it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


class OutputError(OSError):
    """The output folder cannot be created or written."""


def prepare_output_dir(path: str | Path) -> Path:
    """Create ``path`` if needed and check that it is a writable folder."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{p}: cannot create output folder ({exc.strerror})") from None
    if not p.is_dir():
        raise OutputError(f"{p}: exists and is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: output folder is not writable")
    return p.resolve()


def contained(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refusing any path that leaves ``root``."""
    target = (root / relative).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise OutputError(f"{relative}: refusing to write outside the output folder {root}")
    return target


def write_atomic(root: Path, relative: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``root/relative`` atomically; returns the final path."""
    target = contained(root, relative)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise OutputError(f"{target.parent}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def write_json(root: Path, relative: str | Path, obj: Any) -> Path:
    return write_atomic(root, relative, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_csv(root: Path, relative: str | Path, rows: Sequence[Mapping[str, Any]], fields: Iterable[str] | None = None) -> Path:
    """Write dict rows as CSV; columns are ``fields`` or the union of keys in first-seen order."""
    if fields is None:
        seen: dict[str, None] = {}
        for r in rows:
            seen.update(dict.fromkeys(r))
        fields = list(seen)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(v) for k, v in r.items()})
    return write_atomic(root, relative, buf.getvalue())


def write_csv_stream(root: Path, relative: str | Path, rows: Iterable[Mapping[str, Any]]) -> tuple[Path, int]:
    """Write dict rows to CSV as they come (constant memory), atomically; the columns are the
    first row's keys and every later row must have no others. Returns the path and row count."""
    target = contained(root, relative)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise OutputError(f"{target.parent}: cannot write ({exc.strerror})") from None
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            writer: csv.DictWriter[str] | None = None
            for r in rows:
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(r), extrasaction="raise", lineterminator="\n")
                    writer.writeheader()
                writer.writerow({k: _cell(v) for k, v in r.items()})
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target, n


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(round(value, 8))
    return value
