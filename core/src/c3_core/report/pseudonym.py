"""Keyed pseudonyms for exam ids, and scrubbing of free text that may carry identifiers.

A report never shows a raw exam id: each becomes ``case-`` plus 12 hex digits of
HMAC-SHA256(key, exam id). The key is 32 random bytes kept in the results folder
(``pseudonym.key``, mode 0600), so re-rendering a run gives the same pseudonyms while nobody
holding only the report can recover an id by hashing guesses (which a key derived from the
public seed would allow). Whoever holds the results folder (and so the raw ``cases.csv``) can
map pseudonyms back with :meth:`Pseudonymiser.__call__`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

KEY_FILE = "pseudonym.key"
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/:,;'\"()\[\]{}<>]+){2,}[\\/]?")


class Pseudonymiser:
    """Maps exam ids to stable keyed pseudonyms and scrubs ids and paths out of free text."""

    def __init__(self, key: bytes, source: str = "") -> None:
        if len(key) < 16:
            raise ValueError("a pseudonym key needs at least 16 bytes")
        self._key = key
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
        """``text`` with file paths replaced by ``<path>`` and exam ids (of 3+ characters)
        replaced by their pseudonyms: the ``ids`` given (cheap: a counterfactual's reason can
        only name its own exam), else every id seen so far."""
        out = _PATH.sub("<path>", text)
        candidates = self._known if ids is None else ids
        for raw in sorted((r for r in candidates if len(r) >= 3 and r in out), key=len, reverse=True):
            out = out.replace(raw, self(raw))
        return out


def load_key(results_dir: Path) -> tuple[bytes, str]:
    """The run's pseudonym key and where it came from.

    Order: ``run.json``'s ``pseudonym_key`` (hex) if the evaluation wrote one, else the
    results folder's ``pseudonym.key``, created on first use. A read-only folder without a key
    gets a one-off random key (pseudonyms then differ between renderings; said in the report).
    """
    run = results_dir / "run.json"
    if run.is_file():
        try:
            value = json.loads(run.read_text(encoding="utf-8")).get("pseudonym_key")
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, str) and len(value) >= 32:
            try:
                return bytes.fromhex(value), "run.json (pseudonym_key)"
            except ValueError:
                pass
    path = results_dir / KEY_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
        if len(key) >= 16:
            return key, KEY_FILE
    except (OSError, ValueError):
        pass
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key.hex() + "\n")
        return key, KEY_FILE
    except FileExistsError:  # written concurrently (or unreadable): try once more, then fall through
        try:
            return bytes.fromhex(path.read_text(encoding="ascii").strip()), KEY_FILE
        except (OSError, ValueError):
            pass
    except OSError:
        pass
    return key, "a one-off key (the results folder is not writable): pseudonyms differ between renderings"
