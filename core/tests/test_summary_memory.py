"""What the evaluation summary holds per case (issue 18, "memory flat"): counts are summed as the
cases stream by, the columns a metric needs are packed at 8 bytes a value and freed once it has
run, and the utility bootstrap cuts its chunks of resamples into pieces with the same numbers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from c3_core.evaluation import summary
from c3_core.evaluation.summary import _CaseTable, _columns, _neighbourhood, _probabilities_and_labels, summarise
from c3_core.metrics import utility_stats
from c3_core.metrics.undefined import Reasons, iter_reasons

NAN = math.nan


def _run(task: str, names: tuple[str, ...]) -> Any:
    return SimpleNamespace(modality="m", dataset="d", model="net", task=task, class_names=names,
                           spec=SimpleNamespace(k=3), gated_by="operator checks only")


def _cohort(n: int, seed: int, multilabel: bool = True) -> list[dict[str, Any]]:
    """``n`` case rows with varied values: some cases without an admitted counterfactual, some
    missing multi-label labels."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        u, p = torch.rand(2, generator=g, dtype=torch.float64).tolist()
        admitted = int(torch.randint(0, 4, (1,), generator=g))
        label: Any = [float(i % 2), None if i % 5 == 0 else float(i % 3 == 0)] if multilabel else i % 2
        rows.append({"utility": u, "score": p, "n_admitted": admitted, "n_flipped": min(admitted, i % 3),
                     "prob_a": p, "prob_b": 1.0 - p / 2, "label": label})
    return rows


def test_counts_are_summed_as_the_cases_stream_by_and_values_packed_at_eight_bytes() -> None:
    rows = _cohort(50, 0)
    table = _columns(_run("multilabel", ("a", "b")), iter(rows))
    assert set(table.columns) == {"utility", "score", "prob_a", "prob_b", "label"}  # no per-case count column
    assert {c.itemsize for c in table.columns.values()} == {8}
    assert table.n == 50 and len(table.columns["label"]) == 100 and math.isnan(table.columns["label"][1])
    assert table.sums == {"n_admitted": sum(r["n_admitted"] for r in rows), "n_flipped": sum(r["n_flipped"] for r in rows)}
    assert table.with_admitted == sum(r["n_admitted"] > 0 for r in rows)
    assert table.with_flip == sum(r["n_admitted"] > 0 and r["n_flipped"] > 0 for r in rows)
    seg_row = {"utility": 0.5, "score": 0.5, "n_admitted": 1, "n_flipped": 0, "dice": 0.5, "iou": 0.4, "lesion_dice": 1.0,
               "lesion_f1": 1.0, "hd95_mm": 0.0, "lesion_tp": 2, "lesion_fn": 1, "lesion_fp": 0, "small_lesions": 3,
               "small_detected": 1, "true_volume_mm3": 9.0, "pred_volume_mm3": None}
    seg = _columns(_run("segmentation", ("lesion",)), [seg_row, seg_row])
    assert not {"lesion_tp", "lesion_fn", "lesion_fp", "small_lesions", "small_detected", "n_admitted"} & set(seg.columns)
    assert seg.sums["lesion_tp"] == 4 and seg.sums["small_lesions"] == 6 and isinstance(seg.sums["lesion_tp"], int)
    assert math.isnan(seg.columns["pred_volume_mm3"][0])


def test_a_metric_takes_its_column_and_frees_it() -> None:
    table = _columns(_run("multiclass", ("a", "b")), _cohort(4, 1, multilabel=False))
    utility = table.take("utility", torch.float64)
    assert "utility" not in table.columns and utility.dtype == torch.float64 and utility.numel() == 4
    probs, labels = _probabilities_and_labels(_run("multiclass", ("a", "b")), table)
    assert set(table.columns) == {"score"} and labels.dtype == torch.long


@pytest.mark.parametrize("multilabel", [True, False])
def test_probabilities_and_labels_equal_tensors_built_from_the_rows(multilabel: bool) -> None:
    task = "multilabel" if multilabel else "multiclass"
    rows = _cohort(33, 2, multilabel)
    probs, labels = _probabilities_and_labels(_run(task, ("a", "b")), _columns(_run(task, ("a", "b")), rows))
    expected = torch.stack([torch.tensor([r[f"prob_{n}"] for r in rows], dtype=torch.float64) for n in ("a", "b")], 1)
    assert probs.is_contiguous() and probs.stride() == expected.stride() and torch.equal(probs, expected)
    if multilabel:
        want = torch.tensor([[NAN if x is None else x for x in r["label"]] for r in rows], dtype=torch.float64)
        assert torch.equal(labels.isnan(), want.isnan()) and torch.equal(labels.nan_to_num(-1), want.nan_to_num(-1))
    else:
        assert torch.equal(labels, torch.tensor([r["label"] for r in rows]))


def test_neighbourhood_rates_from_the_sums_equal_those_of_the_per_case_counts() -> None:
    rows = _cohort(200, 3)
    got = _neighbourhood(_columns(_run("multilabel", ("a", "b")), rows), Reasons())
    admitted = sum(r["n_admitted"] for r in rows)
    with_cf = [r["n_flipped"] for r in rows if r["n_admitted"] > 0]
    assert got["neighbourhood_agreement"] == (admitted - sum(r["n_flipped"] for r in rows)) / admitted
    assert got["flip_rate"] == sum(f > 0 for f in with_cf) / len(with_cf)


def test_severity_edges_equal_those_of_a_tensor_built_from_a_list() -> None:
    g = torch.Generator().manual_seed(4)
    drawn = [("many", float(torch.rand(1, generator=g)), True, 0.1, False, "") for _ in range(40)]
    drawn += [("few", float(i % 3), i % 2 == 0, 0.2, i % 4 == 0, "gate x") for i in range(10)]
    by_op = summary._collect(iter(drawn), summary._GateCounts())
    edges = summary._severity_edges(by_op)
    many = torch.tensor([d[1] for d in drawn[:40]], dtype=torch.float64)
    assert edges["many"] == (torch.quantile(many, torch.linspace(0, 1, 6, dtype=torch.float64))[1:-1].tolist(), True)
    assert edges["few"] == ([0.0, 1.0, 2.0], False)


def _undefined_cohort(task: str) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """A cohort leaving metrics of every part undefined: one case, one class, no admitted counterfactual."""
    if task == "segmentation":
        row = {"utility": 0.8, "score": 0.9, "n_admitted": 0, "n_flipped": 0, "dice": 1.0, "iou": 1.0, "lesion_dice": 1.0,
               "lesion_f1": 1.0, "hd95_mm": 0.0, "lesion_tp": 0, "lesion_fn": 0, "lesion_fp": 0, "small_lesions": 0,
               "small_detected": 0, "true_volume_mm3": 0.0, "pred_volume_mm3": 0.0}
        return ("lesion",), [row]
    label: Any = [1.0, None, 0.0] if task == "multilabel" else 0
    return ("a", "b", "c"), [{"utility": 0.8, "score": 0.9, "n_admitted": 0, "n_flipped": 0, "prob_a": 0.8,
                              "prob_b": 0.1, "prob_c": 0.1, "label": label}]


@pytest.mark.parametrize("task", ["multilabel", "graded", "segmentation"])
def test_undefined_reasons_are_listed_in_the_order_of_the_summary_keys(task: str) -> None:
    """The metrics no longer run in the order of their keys (each frees its columns first), but
    the ``undefined`` tree keeps that order."""
    names, rows = _undefined_cohort(task)
    drawn = [("op.a", 1.0, False, 0.0, False, "gate x")]
    s = summarise(_run(task, names), rows, lambda: iter(drawn), seed=0)
    top = list(dict.fromkeys(path[0] for path, _ in iter_reasons(s["undefined"])))
    assert len(top) >= 6 and {"utility", "flip_rate", "severity_response"} <= set(top)
    assert top == [key for key in s if key in top]


def _replicates(u: torch.Tensor, n_boot: int) -> torch.Tensor:
    return utility_stats._replicates(u, [utility_stats._mean, utility_stats._p10], torch.Generator().manual_seed(9), n_boot)


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a row reduced alone is then split between threads
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("two_threads")
def test_bootstrap_pieces_give_the_replicates_of_whole_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 40_000  # above the size at which torch splits one row's reduction between threads
    u = torch.rand(n, generator=torch.Generator().manual_seed(5), dtype=torch.float64) ** 3
    monkeypatch.setattr(utility_stats, "_MAX_ELEMENTS_PER_CHUNK", 3 * n)  # chunks of 3 rows; 7 = 3 + 3 + 1
    monkeypatch.setattr(utility_stats, "_MAX_ELEMENTS_PER_PIECE", 1 << 40)  # whole chunks
    whole = _replicates(u, 7)
    monkeypatch.setattr(utility_stats, "_MAX_ELEMENTS_PER_PIECE", n)  # pieces of at least 2 rows
    assert torch.equal(_replicates(u, 7), whole)
    monkeypatch.setattr(utility_stats, "_MAX_ELEMENTS_PER_CHUNK", 1 << 40)  # one chunk of 7: pieces 2 + 2 + 3
    whole = _replicates(u, 7)
    assert list(utility_stats._pieces(0, 7, n, torch.Generator())) == [(0, 2), (2, 4), (4, 7)]
    assert torch.equal(_replicates(u, 7), whole)
    assert utility_stats.utility_summary(u, torch.Generator().manual_seed(1), n_boot=7) == utility_stats.utility_summary(
        u, torch.Generator().manual_seed(1), n_boot=7)


@pytest.mark.parametrize("n", [1, 7, 100, 1000, 5000, 40_000])
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 37, 1000])
def test_pieces_cover_a_chunk_with_no_lone_row_and_bounded_size(n: int, rows: int) -> None:
    pieces = list(utility_stats._pieces(10, 10 + rows, n, torch.Generator()))
    assert pieces[0][0] == 10 and pieces[-1][1] == 10 + rows
    assert all(a == b0 for (_, a), (b0, _) in zip(pieces, pieces[1:]))
    assert all(b - a >= 2 for a, b in pieces) or pieces == [(10, 11)]
    size = max(2, utility_stats._MAX_ELEMENTS_PER_PIECE // n)
    assert all(b - a < 2 * size for a, b in pieces)
    cuda = SimpleNamespace(device=torch.device("cuda"))  # draws that depend on the shape: whole chunks
    assert list(utility_stats._pieces(10, 10 + rows, n, cuda)) == [(10, 10 + rows)]  # type: ignore[arg-type]


def test_the_case_table_is_what_summarise_reads() -> None:
    assert isinstance(_columns(_run("multilabel", ("a", "b")), _cohort(3, 6)), _CaseTable)
