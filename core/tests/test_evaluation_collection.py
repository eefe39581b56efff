"""The evaluation loop's garbage-collection thresholds: raised inside, restored after, never lowered."""

from __future__ import annotations

import gc

import pytest

from c3_core.evaluation.collection import fewer_collections


def test_thresholds_are_raised_inside_and_restored_after_an_error() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with pytest.raises(RuntimeError):
            with fewer_collections(5_000):
                assert gc.get_threshold() == (5_000, 10, 10)
                raise RuntimeError("boom")
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(20_000, 5, 5)  # a caller's own higher threshold is kept
        with fewer_collections(5_000):
            assert gc.get_threshold() == (20_000, 5, 5)
        assert gc.get_threshold() == (20_000, 5, 5)
    finally:
        gc.set_threshold(*before)
