"""The operators' physical floors as the plugin benchmarks define them, for the benchmarks that
time whole runs (evaluation, training): ``FLOORS`` of ``plugins/<modality>/bench/bench_<modality>.py``
(operator id -> its :class:`c3_core.benchmarking.Floor`: a clone for element-wise work, the random
draws of noise, the FFTs, the interpolation of a resampling)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any


def operator_floors(modality: str) -> dict[str, Any]:
    """``FLOORS`` of the ``modality`` plugin's benchmark script (loaded from this checkout)."""
    path = Path(__file__).resolve().parents[2] / "plugins" / modality / "bench" / f"bench_{modality}.py"
    spec = importlib.util.spec_from_file_location(f"_floors_{modality}", path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise SystemExit(f"no operator floors for {modality}: {path.relative_to(path.parents[3])} is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FLOORS


def floor_of(floors: dict[str, Any], op: Any, severity: float) -> tuple[Any, bool]:
    """``(floor, registered)`` of operator ``op`` at ``severity``: its registered floor (made from
    the operator, and from the severity where the floor takes one), else a clone, the write of its
    output that every operator does (``registered`` False)."""
    from c3_core.benchmarking import clone_floor

    make = floors.get(op.id)
    if make is None:
        return clone_floor(), False
    return make(*(op, severity)[: len(inspect.signature(make).parameters)]), True
