"""Seeds derived from stable keys, so a case's randomness never depends on batch order or workers."""

from __future__ import annotations

import hashlib

import torch

_SEED_BITS = 63


def derive_seed(base_seed: int, *keys: object) -> int:
    """A 63-bit seed from ``base_seed`` and keys (e.g. exam id, counterfactual index).

    Uses BLAKE2b over the keys' ``repr`` so it is the same in every process and Python version
    (unlike ``hash()``, which is salted per process).
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((int(base_seed), *keys)).encode("utf-8"))
    return int.from_bytes(h.digest(), "little") >> (64 - _SEED_BITS)


def derive_seeds(base_seed: int, key: object, count: int) -> list[int]:
    """``[derive_seed(base_seed, key, i) for i in range(count)]``, hashing the shared prefix once.

    The hashed text is the same (``repr`` of a 3-tuple is the ``repr`` of its items joined by
    ``", "`` in parentheses), so the seeds are equal to :func:`derive_seed`'s.
    """
    prefix = hashlib.blake2b(digest_size=8)
    prefix.update(f"({int(base_seed)!r}, {key!r}, ".encode())
    out = []
    for i in range(count):
        h = prefix.copy()
        h.update(f"{i!r})".encode())
        out.append(int.from_bytes(h.digest(), "little") >> (64 - _SEED_BITS))
    return out


def generator_from_seed(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def draw_seed(generator: torch.Generator) -> int:
    """Draw a 62-bit integer seed from ``generator`` (for noise realisations stored in params)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high) with ``generator``."""
    u = float(torch.rand((), generator=generator, device=generator.device).item())
    return low + (high - low) * u
