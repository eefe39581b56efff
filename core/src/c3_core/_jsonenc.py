"""``json.dumps`` without its per-call set-up, for the rows an evaluation writes.

``json.dumps`` builds an encoder object and a C encoder for every call; a few microseconds, paid
for each of the K+1 rows and each provenance record of every case. The encoders here are made
once from the same C encoder (``json.encoder.c_make_encoder``) with the arguments ``json.dumps``
gives it, so the text is the same byte for byte; without the C encoder (another Python
implementation) they are ``json.dumps`` itself. The one difference: no check for circular
references (rows are trees; a cycle would raise RecursionError instead of ValueError).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

try:
    from json.encoder import c_make_encoder as _c_make_encoder
except ImportError:  # pragma: no cover - CPython always has it
    _c_make_encoder = None


def _unserialisable(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _make(sort_keys: bool) -> Callable[[Any], str]:
    if _c_make_encoder is None:  # pragma: no cover
        return lambda obj: json.dumps(obj, sort_keys=sort_keys)
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
    # allow_nan): json.dumps's defaults, as JSONEncoder.iterencode passes them
    encode = _c_make_encoder(None, _unserialisable, json.encoder.encode_basestring_ascii, None,
                             ": ", ", ", sort_keys, False, True)

    def dumps(obj: Any) -> str:
        if isinstance(obj, str):  # JSONEncoder.encode's own path for a bare string
            return json.encoder.encode_basestring_ascii(obj)
        return "".join(encode(obj, 0))

    return dumps


dumps: Callable[[Any], str] = _make(False)
"""``json.dumps(obj)``."""

dumps_sorted: Callable[[Any], str] = _make(True)
"""``json.dumps(obj, sort_keys=True)``."""
