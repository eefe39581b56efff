"""Utility summaries and the percentile bootstrap: determinism, references and coverage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from c3_core.metrics import utility_stats
from c3_core.metrics.utility_stats import bootstrap_ci, percentile, utility_summary


def test_percentile_is_numpy_linear() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 50):
        v = torch.rand(n, generator=g, dtype=torch.float64)
        for q in (0, 10, 50, 95, 100):
            assert float(percentile(v, q)) == pytest.approx(np.percentile(v.numpy(), q), abs=1e-12)


def test_bootstrap_ci_equals_explicit_resampling() -> None:
    v = torch.rand(60, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lo, hi = bootstrap_ci(v, lambda x: x.mean(-1), torch.Generator().manual_seed(9), n_boot=500, ci=0.9)
    idx = torch.randint(0, 60, (500, 60), generator=torch.Generator().manual_seed(9)).numpy()
    means = v.numpy()[idx].mean(1)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])), abs=1e-12)


def test_same_seed_same_ci_and_other_seed_differs() -> None:
    u = torch.rand(200, generator=torch.Generator().manual_seed(0))
    a = utility_summary(u, torch.Generator().manual_seed(1), n_boot=300)
    b = utility_summary(u, torch.Generator().manual_seed(1), n_boot=300)
    c = utility_summary(u, torch.Generator().manual_seed(2), n_boot=300)
    assert a == b and a["mean_ci"] != c["mean_ci"]
    assert a["mean"] == pytest.approx(float(u.double().mean()))
    assert a["p10"] == pytest.approx(np.percentile(u.double().numpy(), 10))
    assert a["mean_ci"][0] <= a["mean"] <= a["mean_ci"][1]  # type: ignore[index,operator]
    assert a["p10_ci"][0] <= a["p10"] <= a["p10_ci"][1]  # type: ignore[index,operator]
    assert a["n"] == 200 and a["n_boot"] == 300 and a["ci_level"] == 0.95


def test_chunked_bootstrap_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(utility_stats, "_MAX_ELEMENTS_PER_CHUNK", 1000)  # 300 replicates in chunks of 5
    u = torch.rand(200, generator=torch.Generator().manual_seed(3))
    a = bootstrap_ci(u, lambda x: percentile(x, 10), torch.Generator().manual_seed(4), n_boot=300)
    b = bootstrap_ci(u, lambda x: percentile(x, 10), torch.Generator().manual_seed(4), n_boot=300)
    assert a == b and a[0] < float(percentile(u, 10)) < a[1]


def test_mean_ci_coverage_is_near_nominal() -> None:
    g = torch.Generator().manual_seed(5)
    hits = 0
    trials = 200
    for _ in range(trials):
        x = torch.randn(80, generator=g, dtype=torch.float64) + 2.0
        lo, hi = bootstrap_ci(x, lambda s: s.mean(-1), g, n_boot=400, ci=0.9)
        hits += lo <= 2.0 <= hi
    assert 0.8 <= hits / trials <= 0.97


def test_validation() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="zero cases"):
        bootstrap_ci(torch.tensor([]), lambda x: x.mean(-1), g)
    with pytest.raises(ValueError, match="finite"):
        utility_summary(torch.tensor([0.1, float("nan")]), g)
    with pytest.raises(ValueError, match="reduce the last axis"):
        bootstrap_ci(torch.rand(5), lambda x: x.mean(), g, n_boot=10)
    with pytest.raises(ValueError, match="ci"):
        bootstrap_ci(torch.rand(5), lambda x: x.mean(-1), g, ci=1.5)
