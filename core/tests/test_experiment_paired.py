"""Paired differences to standard augmentation, the powered size, and enlarged procedural splits."""

from __future__ import annotations

import pytest
import torch

from c3_core.experiments import tables
from c3_core.experiments.casemetrics import CaseTable, bootstrap_intervals, case_table, table_metrics
from c3_core.experiments.context import split_of
from c3_core.experiments.paired import paired_differences
from c3_core.experiments.sizes import POWERED, choose_size

KEYS = ("auroc_macro", "ece", "utility_p10")


def _rows(n: int, seed: int, noise: float, order: list[int] | None = None) -> list[dict[str, object]]:
    """A binary task: the label drives the score, ``noise`` blurs it (more noise, lower AUROC)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    base = torch.Generator().manual_seed(99)  # the shared part: the same case is hard for every model
    hard = torch.randn(n, generator=base)
    p = torch.sigmoid(2.0 * (y.double() - 0.5) * 2 + hard + noise * torch.randn(n, generator=g).double())
    rows = [{"exam_id": f"e{i:03d}", "utility": float(1 - abs(int(y[i]) - float(p[i]))), "n_admitted": 2,
             "n_flipped": 0, "prob_absent": float(1 - p[i]), "prob_present": float(p[i]), "label": int(y[i])}
            for i in range(n)]
    return [rows[i] for i in order] if order is not None else rows


def _table(rows: list[dict[str, object]]) -> CaseTable:
    return case_table("multiclass", ("absent", "present"), rows)


def test_the_point_estimate_is_the_mean_over_seeds_of_the_row_minus_the_baseline() -> None:
    pairs = [(_table(_rows(120, 10 + s, 0.3)), _table(_rows(120, 20 + s, 1.2))) for s in range(3)]
    got = paired_differences(pairs, KEYS, n_boot=50, seed=1)
    for key in KEYS:
        per_seed = [table_metrics(r)[key] - table_metrics(b)[key] for r, b in pairs]  # type: ignore[operator]
        assert got[key]["per_seed"] == pytest.approx(per_seed)
        assert got[key]["diff"] == pytest.approx(sum(per_seed) / 3)
        assert got[key]["seed_sd"] == pytest.approx(float(torch.tensor(per_seed).std()))
        lo, hi = got[key]["ci95"]
        assert lo <= hi
    assert got["auroc_macro"]["diff"] > 0 and got["auroc_macro"]["ci95"][0] > 0  # less noise: clearly better


def test_cases_are_matched_by_exam_id_not_by_position() -> None:
    base = _table(_rows(80, 1, 1.0))
    row = _rows(80, 2, 0.5)
    shuffled = list(reversed(range(80)))
    a = paired_differences([(_table(row), base)], KEYS, n_boot=40, seed=3)
    b = paired_differences([(_table([row[i] for i in shuffled]), base)], KEYS, n_boot=40, seed=3)
    assert a == b
    with pytest.raises(ValueError, match="different cases"):
        paired_differences([(_table(row[:79]), base)], KEYS, n_boot=5, seed=3)
    with pytest.raises(ValueError, match="no seed"):
        paired_differences([], KEYS, n_boot=5, seed=3)


def test_identical_rows_differ_by_exactly_zero_and_pairing_narrows_the_interval() -> None:
    t = _table(_rows(200, 5, 1.0))
    same = paired_differences([(t, t)], KEYS, n_boot=60, seed=2)
    for key in KEYS:
        assert same[key]["diff"] == 0.0 and same[key]["ci95"] == [0.0, 0.0]
    # two models that share which cases are hard: the paired interval is much narrower than the two
    # unpaired intervals would suggest (the case-to-case variance cancels in the difference)
    r, b = _table(_rows(200, 6, 0.1)), _table(_rows(200, 7, 0.2))
    paired = paired_differences([(r, b)], ("auroc_macro",), n_boot=200, seed=4)["auroc_macro"]["ci95"]
    ci_r = bootstrap_intervals(r, torch.Generator().manual_seed(8), n_boot=200)["auroc_macro"]
    ci_b = bootstrap_intervals(b, torch.Generator().manual_seed(9), n_boot=200)["auroc_macro"]
    unpaired_half = ((ci_r[1] - ci_r[0]) ** 2 + (ci_b[1] - ci_b[0]) ** 2) ** 0.5 / 2
    assert (paired[1] - paired[0]) / 2 < 0.6 * unpaired_half


def test_paired_cells_mark_intervals_that_exclude_zero() -> None:
    assert tables.paired_cell({"diff": 0.0123, "ci95": [0.004, 0.02], "seed_sd": 0.003}) == "**+0.012 (+0.004, +0.020)** sd 0.003"
    assert tables.paired_cell({"diff": -0.01, "ci95": [-0.03, 0.01], "seed_sd": None}) == "−0.010 (−0.030, +0.010)"
    assert tables.paired_cell(None) == "n/a"
    text = tables.paired_table({"C³": {"in_domain": {"seeds": 3, "metrics": {"ece": {"diff": -0.02, "ci95": [-0.03, -0.01], "seed_sd": 0.01}}},
                                       "held_out": {"seeds": 3, "metrics": {"ece": {"diff": 0.0, "ci95": [-0.01, 0.01], "seed_sd": 0.0}}}}})
    lines = text.splitlines()
    assert lines[0] == "| method − standard | seeds | ECE in-domain | ECE shifted |"
    assert lines[2].startswith("| C³ | 3 | **−0.020 (−0.030, −0.010)** sd 0.010 | +0.000")


def test_the_powered_size_trains_from_scratch_and_leaves_editor_only_to_rows() -> None:
    size = choose_size(quick=False, full=False, powered=True)
    assert size is POWERED and size.seeds == 3 and size.base.init is None and size.base.test_cases >= 1000
    assert "editors" in (size.left_out or {})
    with pytest.raises(ValueError, match="exclude each other"):
        choose_size(quick=True, full=False, powered=True)


class _Split:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def test_a_procedural_split_is_enlarged_only_when_asked_for_more_cases() -> None:
    calls: list[dict[str, object]] = []

    def with_n(split: str, n: int | None = None) -> _Split:
        calls.append({"split": split, "n": n})
        return _Split(10 if n is None else n)

    assert len(split_of(with_n, "train", None)) == 10 and len(split_of(with_n, "train", 8)) == 10
    assert len(split_of(with_n, "train", 25)) == 25 and calls[-1] == {"split": "train", "n": 25}

    def without_n(split: str) -> _Split:
        return _Split(10)

    assert len(split_of(without_n, "test", 25)) == 10  # no `n` option: the split as it is


def test_selected_metrics_equal_the_full_table_metrics() -> None:
    from c3_core.experiments.casemetrics import SELECTABLE, selected_metrics

    g = torch.Generator().manual_seed(3)
    names = ("g0", "g1", "g2", "g3")
    rows = []
    for i in range(60):
        p = torch.softmax(torch.randn(4, generator=g), 0)
        rows.append({"exam_id": f"e{i}", "utility": float(p.max()), "n_admitted": 1, "n_flipped": 0, "label": i % 4,
                     **{f"prob_{n}": float(p[j]) for j, n in enumerate(names)}})
    t = case_table("multiclass", names, rows)
    idx = torch.randint(0, 60, (60,), generator=g)
    full, some = table_metrics(t, idx), selected_metrics(t, idx, ("auroc_macro", "referable_auroc", "ece", "utility_p10"))
    assert some == {k: full[k] for k in some} and set(some) == {"auroc_macro", "referable_auroc", "ece", "utility_p10"}
    with pytest.raises(ValueError, match="not selectable"):
        selected_metrics(t, idx, ("brier",))
    assert "brier" not in SELECTABLE
