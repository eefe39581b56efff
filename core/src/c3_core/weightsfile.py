"""safetensors bytes that depend only on the tensors and the metadata.

``safetensors`` writes its header's ``__metadata__`` map in an order that changes from process to
process (a hash map), so two saves of the same weights with two or more metadata keys differ in
bytes, and a weights file's SHA-256 — what a sign-off, a gate file or a model card records —
changes when nothing did. :func:`safetensors_bytes` writes the metadata keys sorted; the rest of
the header (the tensors' entries, in the order safetensors gives them) and the tensor data are as
safetensors writes them, and any safetensors reader reads the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

_HEADER_ALIGN = 8  # safetensors pads its JSON header with spaces to a multiple of 8 bytes


def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """``safetensors.torch.save(tensors, metadata)`` with the metadata keys in sorted order."""
    from safetensors.torch import save

    raw = save(dict(tensors), metadata=dict(metadata) if metadata else None)
    if not metadata or len(metadata) < 2:
        return raw  # one key or none: nothing to order
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % _HEADER_ALIGN)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]
