"""How well a signal predicts failure: AUROC, AUPRC, risk-coverage and AURC, with cluster bootstraps.

Signals are "higher = more likely to fail". Units (exams, or exam-finding pairs) belong to exams
(``groups``); bootstrap replicates resample exams, so the findings of one exam move together.

* :func:`risk_coverage`: sort units from the least to the most suspicious; the risk at coverage
  c is the failure rate among the first ceil(c n) units kept (Geifman & El-Yaniv 2017).
* :func:`aurc`: the mean risk over the n coverages 1/n, ..., 1 (as in Bungert et al. 2023);
  lower is better; a perfect ranking reaches (with failure rate r) about r^2/2 and a random one r.

A failure is 0/1, or a continuous risk in [0, 1] (segmentation: 1 - lesion Dice under shift, as
in Zenk et al. 2024); for a continuous risk only the risk-coverage curve and AURC are defined
(AUROC and AUPRC are NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from c3_core.metrics.classification import auprc, auroc
from c3_core.metrics.errors import UndefinedMetricError


def risk_coverage(signal: Tensor, failure: Tensor) -> tuple[Tensor, Tensor]:
    """``(coverage, risk)``, each ``(n,)``: units kept in order of increasing ``signal`` (ties: stable)."""
    order = torch.argsort(signal.double(), stable=True)
    f = failure.double()[order]
    n = f.numel()
    kept = torch.arange(1, n + 1, dtype=torch.float64)
    return kept / n, f.cumsum(0) / kept


def aurc(signal: Tensor, failure: Tensor) -> float:
    """Area under the risk-coverage curve (mean risk over the n coverages)."""
    return float(risk_coverage(signal, failure)[1].mean())


def _safe(fn: Any, s: Tensor, f: Tensor) -> float:
    try:
        return float(fn(s, f))
    except UndefinedMetricError:
        return float("nan")


def scores(signal: Tensor, failure: Tensor) -> dict[str, float]:
    """AUROC, AUPRC and AURC of ``signal`` for ``failure`` (NaN where a metric is undefined,
    AUROC and AUPRC also for a failure that is not 0/1: a continuous risk)."""
    s, f = signal.flatten().double(), failure.flatten().double()
    if not bool(((f == 0) | (f == 1)).all()):
        return {"auroc": float("nan"), "auprc": float("nan"), "aurc": aurc(s, f)}
    return {"auroc": _safe(auroc, s, f), "auprc": _safe(auprc, s, f), "aurc": aurc(s, f)}


def percentile_interval(values: Tensor) -> list[float]:
    """The 2.5th and 97.5th percentiles of the non-NaN ``values`` (NaN, NaN when there is none)."""
    v = values[~torch.isnan(values)]
    if v.numel() == 0:
        return [float("nan"), float("nan")]
    q = torch.quantile(v, torch.tensor([0.025, 0.975], dtype=v.dtype))
    return [float(q[0]), float(q[1])]


Table = tuple[Mapping[str, Tensor], Tensor, Tensor]  # (signals name -> (n,), failure (n,), exam index (n,))


def _mean_scores(tables: Sequence[Table], picks: Sequence[Tensor] | None) -> dict[str, dict[str, float]]:
    """Each signal's metrics averaged over the tables (seeds), on ``picks`` (unit indices) if given."""
    acc: dict[str, dict[str, list[float]]] = {}
    for t, (signals, failure, _g) in enumerate(tables):
        idx = None if picks is None else picks[t]
        f = failure if idx is None else failure[idx]
        for name, sig in signals.items():
            m = scores(sig if idx is None else sig[idx], f)
            for key, v in m.items():
                acc.setdefault(name, {}).setdefault(key, []).append(v)
    return {name: {k: float(torch.tensor(v, dtype=torch.float64).nanmean()) for k, v in m.items()} for name, m in acc.items()}


def bootstrap(
    tables: Sequence[Table], n_boot: int, generator: torch.Generator, pairs: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Seed-averaged point estimates and 95 % percentile intervals over ``n_boot`` exam resamples.

    ``tables``: one ``(signals, failure, groups)`` per seed, on the same exams (``groups`` holds
    each unit's exam index); one resample of exams applies to every seed and signal. ``pairs``
    name -> (a, b): the paired difference metric(a) - metric(b) (for AURC b - a, so that positive
    always favours ``a``).
    """
    n_groups = max(int(g.max()) + 1 for _s, _f, g in tables)
    members = [[torch.nonzero(g == e).flatten() for e in range(n_groups)] for _s, _f, g in tables]
    point = _mean_scores(tables, None)
    pairs = dict(pairs or {})
    keys = ("auroc", "auprc", "aurc")
    reps: dict[str, dict[str, list[float]]] = {name: {m: [] for m in keys} for name in point}
    diffs: dict[str, dict[str, list[float]]] = {p: {m: [] for m in keys} for p in pairs}

    def diff(got: Mapping[str, Mapping[str, float]], a: str, b: str, m: str) -> float:
        return got[b][m] - got[a][m] if m == "aurc" else got[a][m] - got[b][m]

    for _ in range(int(n_boot)):
        pick = torch.randint(0, n_groups, (n_groups,), generator=generator).tolist()
        picks = [torch.cat([mem[e] for e in pick]) for mem in members]
        got = _mean_scores(tables, picks)
        for name, m in got.items():
            for key, v in m.items():
                reps[name][key].append(v)
        for p, (a, b) in pairs.items():
            for m in keys:
                diffs[p][m].append(diff(got, a, b, m))
    failures = torch.cat([f for _s, f, _g in tables]).double()
    out: dict[str, Any] = {"signals": {}, "pairs": {}, "n_units": int(tables[0][1].numel()), "n_exams": n_groups,
                           "n_seeds": len(tables), "failure_rate": float(failures.mean()), "n_boot": int(n_boot)}
    for name in point:
        out["signals"][name] = {m: {"value": point[name][m], "ci": percentile_interval(torch.tensor(reps[name][m], dtype=torch.float64))}
                                for m in keys}
    for p, (a, b) in pairs.items():
        out["pairs"][p] = {"a": a, "b": b} | {
            m: {"value": diff(point, a, b, m), "ci": percentile_interval(torch.tensor(diffs[p][m], dtype=torch.float64))} for m in keys}
    return out
