"""Claiming an output folder: never clobber what a user keeps, never let two runs write at once.

A command that writes a folder (``evaluate``, ``generate``, ``train``) claims it first:

* a missing or empty folder is created and claimed;
* a folder that holds anything else is refused unless it is an output of the *same* command (a
  marker file ``.c3-output.json`` says which command wrote it) — the command then decides
  whether it can continue it (``--resume``) — or the user passes ``--overwrite``, which lets the
  command replace the files it writes and deletes nothing else;
* the claim holds an operating-system lock (``fcntl.flock`` / ``msvcrt.locking``) on
  ``.c3.lock`` for as long as the process writes: a second run on the same folder is refused
  at start, and a run killed with ``kill -9`` leaves no stale lock (the OS drops it with the
  process), so ``--resume`` is never blocked by a dead run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MARKER = ".c3-output.json"
LOCK = ".c3.lock"


class OutputFolderError(OSError):
    """The output folder cannot be claimed (not ours, busy, or not writable)."""


class OutputBusyError(OutputFolderError):
    """Another process holds the folder's lock."""


@dataclass
class OutputClaim:
    """A claimed output folder; :meth:`release` (or the process ending) frees it."""

    path: Path
    command: str
    existing: bool  # the folder already held an output of this command
    _lock: IO[str] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._lock is not None:
            _unlock(self._lock)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def written_by(path: Path) -> str | None:
    """The command whose output ``path`` holds (from its marker), or None."""
    try:
        return str(json.loads((path / MARKER).read_text(encoding="utf-8"))["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _contents(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir() if p.name not in (LOCK, MARKER))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        if path.exists():
            raise OutputFolderError(f"{path}: exists and is not a folder") from None
        raise OutputFolderError(f"{path}: cannot create output folder (a parent is not a folder)") from None
    except PermissionError:
        raise OutputFolderError(f"{path}: permission denied listing the output folder") from None


def check_claimable(path: str | Path, command: str, *, overwrite: bool = False, signature: tuple[str, ...] = ()) -> bool:
    """Refuse (``OutputFolderError``) a non-empty folder that is not this command's output,
    unless ``overwrite``. Returns whether it already holds this command's output. Writes nothing.

    ``signature`` names files that mark an output of this command written before markers
    existed (e.g. ``results.sqlite``).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputFolderError(f"{p}: exists and is not a folder")
    names = _contents(p)
    if not names:
        return written_by(p) == command
    ours = written_by(p) == command or (written_by(p) is None and any(n in names for n in signature))
    if not ours and not overwrite:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise OutputFolderError(
            f"{p}: the output folder is not empty ({shown}) and is not a `c3 {command}` output; "
            f"choose a new or empty folder, or pass --overwrite (it replaces only the files c3 {command} "
            "writes and deletes nothing else)"
        )
    return ours


def busy(path: str | Path) -> str | None:
    """Who holds ``path``'s lock (e.g. ``"pid 123"``), or None when no process writes there.
    Creates nothing."""
    lock = Path(path) / LOCK
    try:
        fh = open(lock, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    try:
        if _try_lock(fh):
            _unlock(fh)
            return None
        return fh.read().strip() or "another process"
    finally:
        fh.close()


def claim(path: str | Path, command: str, *, overwrite: bool = False, signature: tuple[str, ...] = ()) -> OutputClaim:
    """Create (if needed), lock and mark ``path`` as ``command``'s output folder.

    Raises :class:`OutputBusyError` if another process holds it and :class:`OutputFolderError`
    if it holds something else (see :func:`check_claimable`).
    """
    p = Path(path)
    existing = check_claimable(p, command, overwrite=overwrite, signature=signature)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"{p}: cannot create output folder ({exc.strerror})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{p}: output folder is not writable")
    try:
        fh = open(p / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held for the claim's lifetime
    except OSError as exc:
        raise OutputFolderError(f"{p}: cannot create its lock file ({exc.strerror})") from None
    if not _try_lock(fh):
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise OutputBusyError(
            f"{p}: another c3 process ({holder}) is writing to this folder; wait for it to finish or choose another --out"
        )
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    marker: dict[str, Any] = {"command": command}
    if written_by(p) != command:
        tmp = p / f".{MARKER}.part"
        tmp.write_text(json.dumps(marker) + "\n", encoding="utf-8")
        os.replace(tmp, p / MARKER)
    return OutputClaim(p.resolve(), command, existing, fh)


def _try_lock(fh: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fh: IO[str]) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            pass
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
