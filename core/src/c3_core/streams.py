"""Counter-based random streams for planning counterfactuals (Philox4x32-10).

A counter-based generator maps (counter, key) to random words with a fixed function, so any
draw of any case is computed directly, in any order, many at once, with no generator state:
the planner draws a whole batch's parameters in one vectorised pass instead of seeding a
generator per counterfactual. Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random
numbers: as easy as 1, 2, 3", SC 2011, doi:10.1145/2063384.2063405) is the generator of
Random123, cuRAND and PyTorch's CUDA backend; :func:`philox4x32` reproduces the published
known-answer vectors of Random123 (tested).

Layout of a neighbourhood's draws (stream version :data:`STREAM_VERSION`):

* **key** (64 bits): BLAKE2b of ``repr((base seed, exam id))`` (:func:`stream_key`), split
  into two 32-bit words: the same in every process and Python version;
* **counter** ``(k, slot, block, 0)``: ``k`` the counterfactual's index, ``slot`` 0 for the plan
  (word 0 picks the member), ``s + 1`` for its step ``s`` (word 0 picks the severity, words 1, 2,
  ... are the operator's draws, :class:`StepStream`), ``block`` 0, 1, ... four words each.

So counterfactual k of exam e depends only on (base seed, e, k), whatever the batch, its order
or the number of workers, and a step's draws do not depend on how many the steps before it took.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

STREAM_VERSION = "philox4x32-10/1"  # recorded in a run's fingerprint: a resume must not mix streams

_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 round multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments (golden ratio, sqrt(3) - 1)
_MASK32 = 0xFFFFFFFF
_ROUNDS = 10
WORDS_PER_BLOCK = 4
UNIT = 2.0**-32  # a 32-bit word w as the uniform draw w / 2^32 on [0, 1)


def philox4x32(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32-10 of ``counter (..., 4)`` under ``key (..., 2)`` (32-bit words, any unsigned or
    non-negative integer dtype): the ``(..., 4)`` uint32 output block, vectorised over the leading
    dimensions (which broadcast)."""
    c = np.asarray(counter, dtype=np.uint64)
    k = np.asarray(key, dtype=np.uint64)
    if c.shape[-1] != 4 or k.shape[-1] != 2:
        raise ValueError(f"philox4x32 takes counters (..., 4) and keys (..., 2), got {c.shape} and {k.shape}")
    c0, c1, c2, c3 = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    k0, k1 = k[..., 0], k[..., 1]
    m0, m1, mask, shift = np.uint64(_M0), np.uint64(_M1), np.uint64(_MASK32), np.uint64(32)
    w0, w1 = np.uint64(_W0), np.uint64(_W1)
    for r in range(_ROUNDS):
        if r:
            k0 = (k0 + w0) & mask
            k1 = (k1 + w1) & mask
        p0 = c0 * m0  # < 2^64: 32-bit by 32-bit products never wrap in uint64
        p1 = c2 * m1
        c0, c1, c2, c3 = (p1 >> shift) ^ c1 ^ k0, p1 & mask, (p0 >> shift) ^ c3 ^ k1, p0 & mask
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3), axis=-1).astype(np.uint32)


def philox4x32_block(counter: Sequence[int], key: Sequence[int]) -> tuple[int, int, int, int]:
    """One Philox4x32-10 block in plain Python integers (the same function as :func:`philox4x32`,
    without numpy's per-call cost: for the occasional draw beyond the precomputed blocks)."""
    c0, c1, c2, c3 = (int(v) & _MASK32 for v in counter)
    k0, k1 = (int(v) & _MASK32 for v in key)
    for r in range(_ROUNDS):
        if r:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & _MASK32
    return c0, c1, c2, c3


def stream_key(base_seed: int, exam_id: object) -> tuple[int, int]:
    """The 64-bit Philox key of an exam's streams, as two 32-bit words (low, high)."""
    h = hashlib.blake2b(repr((int(base_seed), exam_id)).encode("utf-8"), digest_size=8).digest()
    v = int.from_bytes(h, "little")
    return v & _MASK32, v >> 32


def stream_words(keys: np.ndarray, k: np.ndarray, slot: np.ndarray, blocks: int) -> np.ndarray:
    """Words ``0 .. 4·blocks − 1`` of the streams ``(key, k, slot)``: ``keys (n, 2)``, ``k (n,)``,
    ``slot (n,)`` → ``(n, 4·blocks)`` uint32, in one vectorised pass."""
    n = len(k)
    counter = np.zeros((n, blocks, 4), dtype=np.uint64)
    counter[..., 0] = np.asarray(k, dtype=np.uint64)[:, None]
    counter[..., 1] = np.asarray(slot, dtype=np.uint64)[:, None]
    counter[..., 2] = np.arange(blocks, dtype=np.uint64)[None, :]
    return philox4x32(counter, np.asarray(keys, dtype=np.uint64)[:, None, :]).reshape(n, blocks * 4)


class StepStream:
    """The draws of one planned step: words 1, 2, ... of stream ``(key, k, slot)`` (word 0 chose
    the step's severity). ``words`` are the precomputed ones; later blocks are computed on demand.

    Operators draw from it through :mod:`c3_core.seeding` (``uniform``, ``uniform_tensor``,
    ``draw_seed``, ``random_sign``), which also accept a ``torch.Generator``."""

    __slots__ = ("_key", "_k", "_slot", "_words", "_next")
    counter_based = True  # what c3_core.seeding's helpers test (cheaper than isinstance on torch.Generator)

    def __init__(self, key: tuple[int, int], k: int, slot: int, words: Sequence[int]) -> None:
        self._key, self._k, self._slot = key, int(k), int(slot)
        self._words = list(words)  # words 0 .. len - 1 of the stream
        self._next = 1

    def word(self) -> int:
        """The next 32-bit word."""
        i = self._next
        while i >= len(self._words):
            block = len(self._words) // WORDS_PER_BLOCK
            self._words.extend(philox4x32_block((self._k, self._slot, block, 0), self._key))
        self._next = i + 1
        return self._words[i]

    def unit(self) -> float:
        """A uniform draw on [0, 1) (32-bit resolution)."""
        return self.word() * UNIT

    def units(self, n: int) -> list[float]:
        """``n`` uniform draws on [0, 1)."""
        return [self.unit() for _ in range(n)]

    def integer(self, bits: int) -> int:
        """A uniform integer on [0, 2^bits), ``bits`` ≤ 64, from two words."""
        if not 0 < bits <= 64:
            raise ValueError(f"bits must be in 1..64, got {bits}")
        return ((self.word() << 32) | self.word()) >> (64 - bits)
