"""Fewer cyclic garbage collections while an evaluation streams its cases.

An evaluation allocates thousands of short-lived container objects per batch (plans, params,
rows); at CPython's default first-generation threshold (700 allocations) they trigger a young
collection every few hundred counterfactuals and, every hundred of those, a full one that walks
every object torch, the plugins and the models hold. On the 2-core development machine that was
0.03-0.07 ms per case at K = 8 (tests/bench/bench_evaluation.py, 2026-12-05), as much as all of the
planning. Raising the first threshold for the loop's duration keeps reference counting (which
frees almost everything here) and lets the collector run ~15x less often; the thresholds are
restored afterwards, whatever happens.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 10_000  # allocations between young collections inside the loop (CPython default: 700)


@contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Within the block, a young collection runs after ``young`` net allocations of container
    objects (never more often than the thresholds already set); the previous thresholds return
    on exit."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], young), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
