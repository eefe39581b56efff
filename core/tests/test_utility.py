"""Shift-stable utility and the per-case score functions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from c3_core.utility import (
    UtilityResult,
    builtin_score_functions,
    dice_score,
    one_minus_brier,
    shift_stable_utility,
    true_class_probability,
)

# -- scores -------------------------------------------------------------------------------------


def test_true_class_probability() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert true_class_probability(p, torch.tensor([1, 2])).tolist() == pytest.approx([0.2, 0.8])
    with pytest.raises(ValueError, match="out of range"):
        true_class_probability(p, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"probs \(B, C\) and target \(B,\)"):
        true_class_probability(p, torch.tensor([0]))


def test_one_minus_brier_multiclass() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    expected = [1 - (0.09 + 0.04 + 0.01) / 2, 1.0, 0.0]  # confident right -> 1, confident wrong -> 0
    assert one_minus_brier(p, y).tolist() == pytest.approx(expected)
    g = torch.Generator().manual_seed(0)
    rand = torch.softmax(torch.randn(100, 5, generator=g) * 4, 1)
    s = one_minus_brier(rand, torch.randint(0, 5, (100,), generator=g))
    assert ((s >= 0) & (s <= 1)).all()


def test_one_minus_brier_multilabel_ignores_nan() -> None:
    p = torch.tensor([[0.8, 0.3, 0.5], [0.2, 0.9, 0.4]])
    y = torch.tensor([[1.0, float("nan"), 0.0], [float("nan"), float("nan"), float("nan")]])
    s = one_minus_brier(p, y)
    assert s.tolist() == pytest.approx([1 - (0.04 + 0.25) / 2, 1.0])
    assert one_minus_brier(p, y, unlabelled_score=0.0)[1].item() == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\] or NaN"):
        one_minus_brier(p, torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="multi-label"):
        one_minus_brier(p, torch.zeros(2, 2))


def test_dice_score_rules() -> None:
    pred = torch.zeros(4, 1, 3, 3, dtype=torch.bool)
    true = torch.zeros(4, 1, 3, 3, dtype=torch.bool)
    pred[1, 0, 0, :2] = True
    true[1, 0, 0, 1:] = True  # overlap 1 of 2 + 2 -> 0.5
    pred[2, 0, 1, 1] = True  # one empty -> 0
    pred[3], true[3] = True, True  # identical -> 1
    assert dice_score(pred, true).tolist() == [1.0, 0.5, 0.0, 1.0]  # case 0: both empty -> 1
    assert dice_score(pred, true, empty_score=0.0)[0].item() == 0.0
    probs = pred.float() * 0.9
    assert torch.equal(dice_score(probs, true.float()), dice_score(pred, true))
    with pytest.raises(ValueError, match="same shape"):
        dice_score(pred, true[:, :, :2])


def test_builtin_score_functions_is_fresh() -> None:
    a = builtin_score_functions()
    assert set(a) == {"true_class_probability", "one_minus_brier", "dice"}
    a["mine"] = dice_score
    del a["dice"]
    b = builtin_score_functions()
    assert "mine" not in b and "dice" in b
    p = torch.tensor([[0.6, 0.4]])
    assert b["true_class_probability"](p, torch.tensor([0])).item() == pytest.approx(0.6)


# -- utility ------------------------------------------------------------------------------------


def test_utility_min_over_admitted_including_original() -> None:
    s0 = torch.tensor([0.9, 0.6, 0.8, 0.7])
    scf = torch.tensor([[0.5, 0.95], [0.7, 0.2], [0.85, 0.9], [0.1, 0.0]])
    adm = torch.tensor([[False, True], [True, True], [True, True], [False, False]])
    r = shift_stable_utility(s0, scf, adm)
    assert isinstance(r, UtilityResult)
    # case 0: the 0.5 is rejected; case 3: everything rejected -> U = s(x)
    assert r.utility.tolist() == pytest.approx([0.9, 0.2, 0.8, 0.7])
    assert r.argmin.tolist() == [-1, 1, -1, -1]


def test_utility_ties_and_empty_neighbourhood() -> None:
    s0 = torch.tensor([0.5, 0.8])
    scf = torch.tensor([[0.5, 0.5], [0.3, 0.3]])
    r = shift_stable_utility(s0, scf, torch.ones(2, 2, dtype=torch.bool))
    assert r.argmin.tolist() == [-1, 0]  # the original wins ties, then the lowest k
    none = shift_stable_utility(s0, torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool))
    assert torch.equal(none.utility, s0) and none.argmin.tolist() == [-1, -1]


def test_utility_ignores_nan_on_rejected_but_refuses_it_on_admitted() -> None:
    s0 = torch.tensor([0.9])
    scf = torch.tensor([[float("nan"), 0.4]])
    r = shift_stable_utility(s0, scf, torch.tensor([[False, True]]))
    assert r.utility.tolist() == pytest.approx([0.4]) and r.argmin.tolist() == [1]
    with pytest.raises(ValueError, match="NaN"):
        shift_stable_utility(s0, scf, torch.tensor([[True, True]]))


def test_utility_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"score_orig \(B,\), score_cf \(B, K\), admitted \(B, K\)"):
        shift_stable_utility(torch.zeros(2), torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="score_orig"):
        shift_stable_utility(torch.zeros(3), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 5), st.integers(0, 2**31 - 1))
def test_utility_properties(b: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    s0 = torch.rand(b, generator=g)
    scf = torch.rand(b, k, generator=g)
    adm = torch.rand(b, k, generator=g) > 0.5
    r = shift_stable_utility(s0, scf, adm)
    assert (r.utility <= s0).all()
    for i in range(b):
        candidates = [float(s0[i])] + [float(scf[i, j]) for j in range(k) if adm[i, j]]
        assert float(r.utility[i]) == min(candidates)
        j = int(r.argmin[i])
        assert j == -1 or (bool(adm[i, j]) and float(scf[i, j]) == float(r.utility[i]))
        assert j != -1 or float(s0[i]) == float(r.utility[i])
    # rejected scores do not matter: overwrite them and nothing changes
    garbage = torch.where(adm, scf, torch.full_like(scf, -5.0))
    assert torch.equal(shift_stable_utility(s0, garbage, adm).utility, r.utility)


def test_utility_end_to_end_with_scores() -> None:
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    probs_cf = torch.tensor([[[0.7, 0.3], [0.1, 0.9]], [[0.45, 0.55], [0.3, 0.7]]])
    y = torch.tensor([0, 1])
    s0 = true_class_probability(probs, y)
    scf = true_class_probability(probs_cf.reshape(4, 2), y.repeat_interleave(2)).view(2, 2)
    adm = torch.tensor([[True, False], [True, True]])  # the label-flipping cf of case 0 is rejected
    r = shift_stable_utility(s0, scf, adm)
    assert r.utility.tolist() == pytest.approx([0.7, 0.55]) and r.argmin.tolist() == [0, 0]
