"""Keyed pseudonyms of exam ids, and the key that makes them, kept away from the results.

An exam's **stable id** is what its loader derives from the data: the image path relative to the
data root, or a declared id column (the embedded demos use their own ids). It seeds the exam's
counterfactuals and is never written out. Everything C3 writes names an exam by its **pseudonym**,
``case-`` plus 12 hex digits of HMAC-SHA256(key, stable id): whoever holds only the results
cannot reverse it by hashing likely file names, because they lack the key.

The key is 32 random bytes in a user-level file, never in an output folder:

1. the file given by ``--key-file``, else
2. the file named by the environment variable ``C3_PSEUDONYM_KEY_FILE``, else
3. ``$XDG_CONFIG_HOME/c3/pseudonym.key`` (``~/.config/c3/pseudonym.key``).

A key file that does not exist yet is created on first use with mode 0600 (its folder 0700).

The same key gives the same pseudonym for the same exam across runs and on ``--resume``. Results
record only the key's fingerprint (:attr:`PseudonymKey.fingerprint`), which names the key
without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

KEY_ENV = "C3_PSEUDONYM_KEY_FILE"
KEY_BYTES = 32
_PATH = re.compile(r"(?:[A-Za-z]:)?[^\s\\/:,;'\"()\[\]{}<>]*(?:[\\/][^\s\\/:,;'\"()\[\]{}<>]+)+[\\/]?")
_FILE_NAME = re.compile(
    r"[^\s'\"()\[\]{}<>,;:]+\.(?:png|jpe?g|tiff?|bmp|dcm|dicom|nii(?:\.gz)?|nrrd|mha|npy|npz|csv|h5|safetensors|pth?|ts)\b",
    re.IGNORECASE,
)


class PseudonymKeyError(ValueError):
    """The pseudonym key cannot be read, created or used where it was asked for."""


@dataclass(frozen=True)
class PseudonymKey:
    """The HMAC key of a run's pseudonyms and the file it came from (never written out)."""

    secret: bytes
    path: Path | None = None

    @property
    def fingerprint(self) -> str:
        """``sha256:`` + 16 hex digits: names the key in run.json without revealing it."""
        return "sha256:" + hashlib.sha256(b"c3-pseudonym-key\x00" + self.secret).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the secret
        return f"PseudonymKey(fingerprint={self.fingerprint!r})"


def default_key_path() -> Path:
    """Where the key lives when no file is named: ``C3_PSEUDONYM_KEY_FILE`` or the user's config folder."""
    named = os.environ.get(KEY_ENV)
    if named:
        return Path(named).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "c3" / "pseudonym.key"


def load_key(path: str | Path | None = None, *, create: bool = True, outside: Iterable[str | Path] = ()) -> PseudonymKey:
    """The pseudonym key in ``path`` (default :func:`default_key_path`), created if missing.

    ``outside`` lists folders the key must not sit in (the output folder: the key must not
    travel with the results). Raises :class:`PseudonymKeyError` naming the file.
    """
    p = Path(path).expanduser() if path is not None else default_key_path()
    resolved = p.resolve()
    for folder in outside:
        f = Path(folder).resolve()
        if resolved == f or f in resolved.parents:
            raise PseudonymKeyError(
                f"{p}: the pseudonym key must not be kept inside the output folder {folder} "
                "(whoever receives the results would receive the key); keep it elsewhere"
            )
    try:
        return PseudonymKey(_read(p), p)
    except FileNotFoundError:
        if not create:
            raise PseudonymKeyError(f"{p}: pseudonym key file not found") from None
    except PermissionError:
        raise PseudonymKeyError(f"{p}: permission denied reading the pseudonym key") from None
    return PseudonymKey(_create(p), p)


def _read(p: Path) -> bytes:
    text = p.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise PseudonymKeyError(f"{p}: not a pseudonym key (expected hex digits)") from None
    if len(key) < 16:
        raise PseudonymKeyError(f"{p}: a pseudonym key needs at least 16 bytes, found {len(key)}")
    return key


def _create(p: Path) -> bytes:
    """Write a new random key with owner-only permissions (or read the one a racing process wrote)."""
    try:
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(p)
    except OSError as exc:
        raise PseudonymKeyError(f"{p}: cannot create the pseudonym key ({exc.strerror}); name one with --key-file") from None
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex() + "\n")
    return key


class Pseudonymiser:
    """Maps stable exam ids to keyed pseudonyms and scrubs ids and paths out of free text."""

    def __init__(self, key: bytes | PseudonymKey, source: str = "") -> None:
        secret = key.secret if isinstance(key, PseudonymKey) else key
        if len(secret) < 16:
            raise ValueError("a pseudonym key needs at least 16 bytes")
        self._key = secret
        self.source = source
        self._known: dict[str, str] = {}

    def __call__(self, exam_id: str) -> str:
        """The pseudonym of ``exam_id`` (remembered, so :meth:`scrub` can replace it in text)."""
        known = self._known.get(exam_id)
        if known is None:
            digest = hmac.new(self._key, exam_id.encode("utf-8"), hashlib.sha256).hexdigest()
            known = self._known[exam_id] = f"case-{digest[:12]}"
        return known

    def scrub(self, text: str, ids: Iterable[str] | None = None) -> str:
        """``text`` with exam ids (of 3+ characters) replaced by their pseudonyms — the ``ids``
        given, else every id seen so far — and then file paths by ``<path>``."""
        out = text
        candidates = self._known if ids is None else ids
        for raw in sorted((r for r in candidates if len(r) >= 3 and r in out), key=len, reverse=True):
            out = out.replace(raw, self(raw))
        return scrub_paths(out)


def scrub_paths(text: str) -> str:
    """``text`` with file paths (two or more components) and file names with an image, volume,
    table or weights extension replaced by ``<path>``."""
    return _FILE_NAME.sub("<path>", _PATH.sub("<path>", text))
