"""Seeds derived from stable keys, so a case's randomness never depends on batch order or workers.

The draw helpers (:func:`uniform`, :func:`uniform_tensor`, :func:`draw_seed`, :func:`random_sign`)
take either a ``torch.Generator`` or the counter-based :class:`c3_core.streams.StepStream` the
neighbourhood planner gives operators that declare ``stream_sampling = True``: an operator's
``_sample`` that draws only through them works with both.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Union

import torch

if TYPE_CHECKING:
    from c3_core.streams import StepStream

Draws = Union[torch.Generator, "StepStream"]  # what ``Operator._sample`` draws from

_SEED_BITS = 63


def derive_seed(base_seed: int, *keys: object) -> int:
    """A 63-bit seed from ``base_seed`` and keys (e.g. exam id, counterfactual index).

    Uses BLAKE2b over the keys' ``repr`` so it is the same in every process and Python version
    (unlike ``hash()``, which is salted per process).
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((int(base_seed), *keys)).encode("utf-8"))
    return int.from_bytes(h.digest(), "little") >> (64 - _SEED_BITS)


def generator_from_seed(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def draw_seed(generator: Draws) -> int:
    """Draw a 62-bit integer seed from ``generator`` (for noise realisations stored in params)."""
    if getattr(generator, "counter_based", False):
        return generator.integer(62)  # type: ignore[union-attr]
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def uniform(generator: Draws, low: float, high: float) -> float:
    """One float drawn uniformly from [low, high) with ``generator``."""
    if getattr(generator, "counter_based", False):
        return low + (high - low) * generator.unit()  # type: ignore[union-attr]
    u = float(torch.rand((), generator=generator, device=generator.device).item())
    return low + (high - low) * u


def uniform_tensor(generator: Draws, n: int) -> torch.Tensor:
    """``n`` draws uniform on [0, 1) as a float64 CPU tensor (``torch.rand(n, dtype=float64)`` with a
    generator)."""
    if getattr(generator, "counter_based", False):
        return torch.tensor(generator.units(n), dtype=torch.float64)  # type: ignore[union-attr]
    return torch.rand(n, generator=generator, dtype=torch.float64, device=generator.device).cpu()


def random_sign(generator: Draws) -> float:
    """+1.0 or −1.0 with equal probability."""
    return 1.0 if uniform(generator, 0.0, 1.0) < 0.5 else -1.0
