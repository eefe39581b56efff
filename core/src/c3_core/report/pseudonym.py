"""Exam ids in the report: the results already name every exam by its keyed pseudonym.

``c3 evaluate`` writes ``case-`` + HMAC-SHA256(key, stable id) for every exam (see
:mod:`c3_core.pseudonyms`), with the user's key kept outside the results folder. The report
therefore shows the stored ids as they are (:class:`StoredIds`) and scrubs file paths out of
free text. Only the gallery, which re-reads exams from the data to replay a counterfactual,
needs the key: to check that the exam it re-read is the one the results name, it pseudonymises
the exam's stable id again with the user's key, and only if that key's fingerprint is the one
recorded in ``run.json``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from c3_core.pseudonyms import Pseudonymiser, PseudonymKeyError, load_key

__all__ = ["Pseudonymiser", "StoredIds", "matching_key_pseudonymiser"]

_PSEUDONYM = re.compile(r"case-[0-9a-f]{12}")


class StoredIds:
    """The report's id mapper for results that already hold pseudonyms: a stored pseudonym
    passes through; anything else (results from before ids were pseudonymised at write time,
    or written by other tools) is pseudonymised with a one-off key, so no raw id is shown."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._fallback = Pseudonymiser(secrets.token_bytes(32))

    def __call__(self, exam_id: str) -> str:
        return exam_id if _PSEUDONYM.fullmatch(exam_id) else self._fallback(exam_id)

    def scrub(self, text: str, ids: Iterable[str] | None = None) -> str:
        """``text`` with file paths replaced by ``<path>`` (and raw ids, see :meth:`__call__`)."""
        return self._fallback.scrub(text, [i for i in (ids or ()) if not _PSEUDONYM.fullmatch(i)])


def matching_key_pseudonymiser(manifest: Mapping[str, Any], key_file: str | None = None) -> Pseudonymiser | None:
    """A pseudonymiser with the user's key if it is the key the run was made with, else None."""
    wanted = manifest.get("pseudonym_key")
    if not wanted:
        return None
    try:
        key = load_key(key_file, create=False)
    except PseudonymKeyError:
        return None
    return Pseudonymiser(key) if key.fingerprint == wanted else None
