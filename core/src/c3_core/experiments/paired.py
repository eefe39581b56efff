"""Paired differences to standard augmentation: each row minus the standard row on the same test cases.

For a row r, a condition (in-domain, held-out shift) and a metric m, the effect is the mean over
seeds of ``m(r, seed s) − m(standard, seed s)``, both computed on the same test cases (every row
evaluates the same cases, matched by exam id). Its 95 % interval is a paired percentile
bootstrap: each replicate draws one resample of the cases, shared by every seed, row and metric,
and recomputes the mean difference on it, so the interval reflects which cases were tested
while the seeds (training randomness) are averaged. The spread over seeds is reported beside it:
the standard deviation of the per-seed differences, the run-to-run variation of the effect.

A difference is "clear" where the interval excludes 0. Metrics: the task's headline metric(s)
(AUROC; for multi-class also referable-DR AUROC; lesion Dice for segmentation), ECE (classification),
and the utility's 10th percentile U p10 — each in-domain and under the held-out shift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from c3_core.experiments.casemetrics import SELECTABLE, CaseTable, case_table, selected_metrics, table_metrics
from c3_core.experiments.failure_stats import percentile_interval
from c3_core.experiments.rows import BASELINE
from c3_core.reference_training import one_thread
from c3_core.seeding import derive_seed, generator_from_seed

PAIRED_METRICS: Mapping[str, tuple[str, ...]] = {
    "multilabel": ("auroc_macro", "ece", "utility_p10"),
    "multiclass": ("referable_auroc", "auroc_macro", "ece", "utility_p10"),
    "segmentation": ("lesion_dice", "dice", "utility_p10"),
}
LOWER_IS_BETTER = frozenset({"ece", "brier", "hd95_mm"})


def load_case_table(root: Path, modality: str, row: str, seed: int, condition: str, task: str,
                    class_names: Sequence[str]) -> CaseTable | None:
    """The per-case table of one finished evaluation (None where its store is missing)."""
    from c3_core.evaluation.store import STORE_NAME, ResultStore

    path = root / "runs" / modality / row / f"seed{seed}" / f"eval-{condition}" / STORE_NAME
    if not path.is_file():
        return None
    store = ResultStore(path, create=False)
    try:
        rows = list(store.iter_cases(modality))
    finally:
        store.close()
    return case_table(task, class_names, rows) if rows else None


def _aligned(base: CaseTable, other: CaseTable) -> Tensor:
    """Index into ``other`` giving ``base``'s exam order; raises ValueError if the cases differ."""
    where = {e: i for i, e in enumerate(other.exam_ids)}
    missing = [e for e in base.exam_ids if e not in where]
    if missing or len(where) != base.n:
        raise ValueError(f"paired difference: the two evaluations hold different cases ({len(missing)} missing)")
    return torch.tensor([where[e] for e in base.exam_ids], dtype=torch.long)


def _values(t: CaseTable, idx: Tensor, keys: Sequence[str]) -> Tensor:
    """The metrics ``keys`` on cases ``idx`` (NaN where undefined): the formulas of
    :func:`~c3_core.experiments.casemetrics.table_metrics`, computing only what is asked."""
    m = selected_metrics(t, idx, keys) if set(keys) <= SELECTABLE else table_metrics(t, idx)
    return torch.tensor([float("nan") if m.get(k) is None else float(m[k]) for k in keys], dtype=torch.float64)


def _interval(values: Tensor) -> list[float] | None:
    """The percentile 95 % interval of the defined replicates; None where fewer than two are defined."""
    return percentile_interval(values) if int((~torch.isnan(values)).sum()) >= 2 else None


def paired_over_rows(
    baseline: Sequence[CaseTable], rows: Mapping[str, Sequence[CaseTable]], keys: Sequence[str], *,
    n_boot: int, seed: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{row: {metric: {diff, ci95, seed_sd, per_seed}}}``: per row, the mean over seeds of (row −
    baseline), its paired bootstrap interval and the spread over seeds. ``baseline[s]`` and
    ``rows[r][s]`` are seed s's tables; every replicate's case resample is shared by all rows and
    seeds, and the baseline's metrics are computed once per replicate and seed."""
    if not baseline or any(len(tabs) != len(baseline) for tabs in rows.values()):
        raise ValueError("paired difference: no seed has both evaluations" if not baseline
                         else "paired difference: every row needs a table for each baseline seed")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = baseline[0].n
    if any(b.n != n for b in baseline):
        raise ValueError("paired difference: seeds evaluated different numbers of cases")
    orders = {r: [_aligned(b, t) for b, t in zip(baseline, tabs)] for r, tabs in rows.items()}
    full = torch.arange(n)
    g = generator_from_seed(seed)
    with one_thread():
        base_full = [_values(b, full, keys) for b in baseline]
        per_seed = {r: torch.stack([_values(t, o, keys) - bf for t, o, bf in zip(rows[r], orders[r], base_full)])
                    for r in rows}
        reps = {r: torch.empty((n_boot, len(keys)), dtype=torch.float64) for r in rows}
        for i in range(n_boot):
            idx = torch.randint(0, n, (n,), generator=g)
            base_i = [_values(b, idx, keys) for b in baseline]
            for r in rows:
                reps[r][i] = torch.stack([_values(t, o[idx], keys) - bi
                                          for t, o, bi in zip(rows[r], orders[r], base_i)]).mean(0)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        out[r] = {}
        for j, key in enumerate(keys):
            d = per_seed[r][:, j]
            defined = d[~torch.isnan(d)]
            out[r][key] = {
                "diff": float(defined.mean()) if defined.numel() else None,
                "ci95": _interval(reps[r][:, j]),
                "seed_sd": float(defined.std(unbiased=True)) if defined.numel() >= 2 else None,
                "per_seed": [None if x != x else float(x) for x in d.tolist()],
            }
    return out


def paired_differences(
    pairs: Sequence[tuple[CaseTable, CaseTable]], keys: Sequence[str], *, n_boot: int, seed: int,
) -> dict[str, dict[str, Any]]:
    """One row's :func:`paired_over_rows` result; ``pairs`` holds a (row, baseline) table pair per seed."""
    if not pairs:
        raise ValueError("paired difference: no seed has both evaluations")
    return paired_over_rows([b for _, b in pairs], {"row": [r for r, _ in pairs]}, keys, n_boot=n_boot, seed=seed)["row"]


def modality_paired(root: Path, modality: str, task: str, class_names: Sequence[str], rows: Sequence[str],
                    seeds: int, *, n_boot: int, conditions: Sequence[str] = ("in_domain", "held_out")
                    ) -> dict[str, Any]:
    """``{row: {condition: {"seeds": k, "metrics": {metric: result}}}}`` for every row but the
    baseline, over the seeds where the baseline and that row both have a store (``{}`` when none)."""
    keys = PAIRED_METRICS[task]
    out: dict[str, Any] = {}
    for condition in conditions:
        base = {s: load_case_table(root, modality, BASELINE, s, condition, task, class_names) for s in range(seeds)}
        by_seed_count: dict[tuple[int, ...], dict[str, list[CaseTable]]] = {}
        for row in rows:
            if row == BASELINE:
                continue
            tabs = {s: load_case_table(root, modality, row, s, condition, task, class_names) for s in range(seeds)}
            have = tuple(s for s in range(seeds) if base[s] is not None and tabs[s] is not None)
            if have:
                by_seed_count.setdefault(have, {})[row] = [tabs[s] for s in have]  # type: ignore[misc]
        for have, row_tables in by_seed_count.items():
            result = paired_over_rows([base[s] for s in have], row_tables, keys, n_boot=n_boot,  # type: ignore[misc]
                                      seed=derive_seed(0, "experiment-paired", modality, condition))
            for row, metrics in result.items():
                out.setdefault(row, {})[condition] = {"seeds": len(have), "metrics": metrics}
    return out
