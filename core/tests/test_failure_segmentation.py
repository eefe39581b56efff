"""The segmentation arm of the failure-prediction study: its kernels against closed forms and
scikit-learn, its TTA views, its failure labels and its signals' direction ("higher = more likely
to fail"), and the report's handling of a continuous risk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from c3_core.experiments.failure_segmentation import (
    SAME_DICE,
    _consistency,
    apply_view,
    tta_plan,
    undo_view,
)
from c3_core.experiments.failure_signals import CLASSIFICATION, SEGMENTATION, for_task
from c3_core.experiments.failure_stats import aurc, bootstrap, scores
from c3_core.experiments.generic_neighbourhood import KINDS, VOLUME_KINDS, GenericNeighbourhood, kinds_for
from c3_core.metrics import margins as S


def _box(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_mask_dice_closed_forms_and_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    a = _box((1, 1, 6, 6, 4), (0, 0, 0, 0, 0), (1, 1, 4, 4, 4))  # 64 voxels
    b = _box((1, 1, 6, 6, 4), (0, 0, 2, 0, 0), (1, 1, 6, 4, 4))  # 64 voxels, 32 shared
    assert S.mask_dice(a, b).item() == pytest.approx(2 * 32 / 128)
    assert S.mask_dice(a, a).item() == 1.0
    empty = torch.zeros_like(a)
    assert S.mask_dice(empty, empty).item() == 1.0 and S.mask_dice(a, empty).item() == 0.0
    assert S.mask_dice(empty, empty, empty=0.0).item() == 0.0
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 1, 8, 8, 8, generator=g) < 0.3, torch.rand(5, 1, 8, 8, 8, generator=g) < 0.4
    want = [metrics.f1_score(y[i].flatten().numpy(), x[i].flatten().numpy()) for i in range(5)]  # Dice = F1
    assert np.allclose(S.mask_dice(x, y).numpy(), want)
    assert S.mask_dice(x, y).dtype == torch.float64
    assert torch.equal(S.mask_dice(x.float(), y.float()), S.mask_dice(x, y))  # numbers binarised at 0.5
    with pytest.raises(ValueError, match="same shape"):
        S.mask_dice(x, y[:, :, :4])


def test_pairwise_dice_is_the_mean_over_unordered_pairs() -> None:
    shape = (1, 1, 6, 6, 4)
    a = _box(shape, (0, 0, 0, 0, 0), (1, 1, 4, 4, 4))
    b = _box(shape, (0, 0, 2, 0, 0), (1, 1, 6, 4, 4))
    c = torch.zeros(shape, dtype=torch.bool)
    got = S.pairwise_dice(torch.stack([a, b, c]))
    assert got.item() == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    assert S.pairwise_dice(torch.stack([a, a, a])).item() == 1.0
    assert S.pairwise_dice(a.unsqueeze(0)).item() == 1.0  # one member: nothing to disagree with
    # per volume: the second volume's masks all agree
    two = torch.stack([torch.cat([a, a]), torch.cat([b, a])])
    assert S.pairwise_dice(two).tolist() == pytest.approx([0.5, 1.0])


def test_dice_drop_failure_labels_a_constructed_case() -> None:
    clean = torch.tensor([0.80, 0.80, 0.80, 0.30, 0.0])
    shifted = torch.tensor([0.70, 0.71, 0.95, 0.05, 0.0])
    # 0.10 exactly (float rounding absorbed), 0.09, an improvement, 0.25, nothing to lose
    assert S.dice_drop_failure(clean, shifted).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert S.dice_drop_failure(clean, shifted, min_drop=0.2).tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    # built from masks: a 64-voxel lesion predicted exactly, then with 16 voxels lost (Dice 48*2/112)
    gt = _box((1, 1, 6, 6, 4), (0, 0, 0, 0, 0), (1, 1, 4, 4, 4))
    lost = gt.clone()
    lost[0, 0, 3] = False
    d_clean, d_shift = S.mask_dice(gt, gt), S.mask_dice(lost, gt)
    assert d_shift.item() == pytest.approx(96 / 112)
    assert S.dice_drop_failure(d_clean, d_shift).item() == 1.0  # 1 - 0.857 = 0.143 >= 0.1


def test_region_uncertainty_and_entropy_closed_forms() -> None:
    p = torch.tensor([0.9, 0.6, 0.2, 0.5]).view(1, 1, 4)
    region = torch.tensor([True, True, False, False]).view(1, 1, 4)
    assert S.region_uncertainty(p, region).item() == pytest.approx(1 - (0.9 + 0.6) / 2)
    assert S.region_uncertainty(p, torch.ones_like(region)).item() == pytest.approx(1 - (0.9 + 0.6 + 0.8 + 0.5) / 4)
    assert S.region_uncertainty(p, torch.zeros_like(region)).item() == 0.5  # nothing predicted: most uncertain
    stats = pytest.importorskip("scipy.stats")
    want = np.mean([stats.entropy([q, 1 - q]) for q in (0.9, 0.6)])
    assert S.region_entropy(p, region).item() == pytest.approx(want)
    assert S.region_entropy(p, torch.zeros_like(region)).item() == pytest.approx(math.log(2))


def test_foreground_keeps_the_head_and_drops_the_noise_floor() -> None:
    g = torch.Generator().manual_seed(0)
    img = 0.02 * torch.rand(2, 1, 10, 10, 6, generator=g)
    img[:, :, 2:8, 2:8, 1:5] += 1.0
    fg = S.foreground(img)
    assert fg.shape == (2, 1, 10, 10, 6) and fg.dtype == torch.bool
    assert int(fg.sum()) == 2 * 6 * 6 * 4


def test_worst_self_consistency_and_changes_ignore_rejected_counterfactuals() -> None:
    shape = (1, 6, 6, 4)
    clean = _box(shape, (0, 0, 0, 0), (1, 4, 4, 4))
    half = _box(shape, (0, 2, 0, 0), (1, 6, 4, 4))  # Dice 0.5 to clean
    almost = clean.clone()
    almost[0, 0, 0, 0] = False  # Dice 126/127: unchanged
    pred_cf = torch.stack([clean, half, almost])  # one volume, K = 3
    moved = clean.unsqueeze(0).expand(3, *shape)
    verdict, changes, cons = _consistency(pred_cf, moved, torch.tensor([[True, True, True]]))
    assert cons.tolist()[0] == pytest.approx([1.0, 0.5, 126 / 127])
    assert verdict.item() == pytest.approx(0.5) and changes.item() == 1.0
    verdict, changes, _ = _consistency(pred_cf, moved, torch.tensor([[True, False, True]]))
    assert verdict.item() == pytest.approx(1 / 127) and changes.item() == 0.0
    verdict, changes, _ = _consistency(pred_cf, moved, torch.tensor([[False, False, False]]))
    assert verdict.item() == 0.0 and changes.item() == 0.0  # nothing admitted: the clean volume alone
    assert SAME_DICE == 0.9


def test_severity_margin_on_self_consistency_takes_the_mildest_change() -> None:
    # one volume, two operators at three levels: Dice to the clean prediction, mildest first
    dice = torch.tensor([[[0.97, 0.85, 0.6], [0.99, 0.95, 0.92]]], dtype=torch.float64)
    admitted = torch.ones(1, 2, 3, dtype=torch.bool)
    fractions = torch.tensor([[0.25, 0.5, 1.0], [0.2, 0.6, 1.0]], dtype=torch.float64)
    got = S.severity_margin(dice - SAME_DICE, admitted, fractions)
    assert got.item() == pytest.approx((0.5 + S.NEVER) / 2)


def test_signals_point_the_same_way_higher_is_more_likely_to_fail() -> None:
    """A volume whose prediction moves under the neighbourhood, disagrees across views and members,
    and sits on uncertain voxels scores higher on every signal than a stable, confident one."""
    shape = (1, 6, 6, 4)
    stable = _box(shape, (0, 0, 0, 0), (1, 4, 4, 4))
    moved = _box(shape, (0, 2, 0, 0), (1, 6, 4, 4))
    adm = torch.tensor([[True, True], [True, True]])
    pred_cf = torch.stack([stable, stable, stable, moved])  # volume 0 stable, volume 1 changes
    ref = torch.stack([stable] * 4)
    verdict, changes, _ = _consistency(pred_cf, ref, adm)
    assert verdict[1] > verdict[0] and changes[1] > changes[0]
    members = torch.stack([torch.stack([stable, stable]), torch.stack([stable, moved])])  # (M, B, ...)
    disagreement = 1 - S.pairwise_dice(members)
    assert disagreement[1] > disagreement[0]
    p_sure = torch.where(stable, 0.99, 0.01).unsqueeze(0)
    p_unsure = torch.where(stable, 0.6, 0.01).unsqueeze(0)
    probs = torch.cat([p_sure, p_unsure])
    pred = probs >= 0.5
    confidence = S.region_uncertainty(probs, pred)
    assert confidence[1] > confidence[0]
    # and a signal that ranks the failing volume first has AUROC 1 and the lowest AURC
    fail = torch.tensor([0.0, 1.0])
    assert scores(verdict, fail)["auroc"] == 1.0
    assert aurc(verdict, fail) < aurc(-verdict, fail)


def test_tta_views_are_undone_exactly() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 1, 9, 8, 5, generator=g)
    plan = tta_plan(x.shape[2:], 6, torch.Generator().manual_seed(1))
    assert plan[0] == (False, (0, 0, 0)) and [m for m, _ in plan] == [False, True, False, True, False, True]
    assert all(abs(s) <= max(1, round(0.03 * n)) for _, sh in plan for s, n in zip(sh, x.shape[2:]))
    for mirrored, shifts in plan:
        view = apply_view(x, mirrored, shifts)
        assert torch.equal(undo_view(view, mirrored, shifts), x)
    assert torch.equal(apply_view(x, True, (0, 0, 0)), x.flip(2))
    assert plan == tta_plan(x.shape[2:], 6, torch.Generator().manual_seed(1))  # seeded


def test_continuous_risk_gives_aurc_only() -> None:
    risk = torch.tensor([0.1, 0.2, 0.7, 0.9], dtype=torch.float64)
    signal = torch.tensor([0.0, 0.1, 0.8, 0.9])
    got = scores(signal, risk)
    assert math.isnan(got["auroc"]) and math.isnan(got["auprc"])
    assert got["aurc"] == pytest.approx((0.1 + 0.15 + 1.0 / 3 + 1.9 / 4) / 4)
    tables = [({"a": signal.double(), "b": -signal.double()}, risk, torch.arange(4))]
    out = bootstrap(tables, 50, torch.Generator().manual_seed(0), {"a - b": ("a", "b")})
    assert out["pairs"]["a - b"]["aurc"]["value"] > 0  # positive favours a, the better ranking


def test_generic_corruptions_leave_jpeg_out_for_volumes() -> None:
    assert kinds_for(torch.zeros(1, 1, 8, 8)) == KINDS
    assert kinds_for(torch.zeros(1, 1, 8, 8, 8)) == VOLUME_KINDS and "jpeg" not in VOLUME_KINDS
    g = torch.Generator().manual_seed(0)
    vol = torch.rand(2, 1, 12, 12, 8, generator=g) * 3
    nb = GenericNeighbourhood.matched(vol, 0.03, k=5, seed=2)
    assert set(nb.params) == set(VOLUME_KINDS) and nb.describe()["kinds"] == list(VOLUME_KINDS)
    from c3_core.batch import Batch

    batch = Batch(image=vol, exam_ids=("a", "b"), modality="x", domain="magnitude", spacing=((1.0, 1.0, 1.0),) * 2)
    imgs, labels = nb.draw(batch)
    assert imgs.shape == (10, 1, 12, 12, 8) and not any(lab.startswith("jpeg") for row in labels for lab in row)
    with pytest.raises(ValueError, match="unknown generic"):
        GenericNeighbourhood.matched(vol, 0.03, k=2, seed=0, kinds=("jpeg2000",))


def test_signal_sets_are_fixed_per_task() -> None:
    assert for_task("multilabel") is CLASSIFICATION and for_task("segmentation") is SEGMENTATION
    assert SEGMENTATION.verdict == "c3_consistency" and "ensemble_disagreement" in SEGMENTATION.alternatives
    assert SEGMENTATION.verdict not in SEGMENTATION.alternatives
    assert all(s.split("|")[0] in SEGMENTATION.c3 for s in SEGMENTATION.shipped)
    assert SEGMENTATION.label("c3_drop|all (incl. shift family)").endswith("(incl. shift family)")
    with pytest.raises(ValueError, match="regression"):
        for_task("regression")
