"""Consistency losses: the three distances, their wrappers and the Eq. 1 objective."""

from __future__ import annotations

import pytest
import torch
from scipy.special import rel_entr
from torch.nn import functional as F

from c3_core.losses import (
    BernoulliKL,
    CategoricalKL,
    ConsistencyObjective,
    ConsistencyTerms,
    SoftDiceDistance,
    admitted_mean,
    bernoulli_kl,
    categorical_kl,
    distance_for_task,
    soft_dice_distance,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


# -- categorical KL -----------------------------------------------------------------------------
def test_categorical_kl_zero_for_identical_and_shift_invariant() -> None:
    a = _randn(8, 5, seed=0)
    assert torch.allclose(categorical_kl(a, a), torch.zeros(8), atol=1e-6)
    # softmax ignores a per-case constant: same distribution, zero divergence
    assert torch.allclose(categorical_kl(a, a + _randn(8, 1, seed=1) * 3), torch.zeros(8), atol=1e-6)


def test_categorical_kl_positive_and_asymmetric() -> None:
    a, b = _randn(8, 5, seed=2), _randn(8, 5, seed=3)
    kl_ab, kl_ba = categorical_kl(a, b), categorical_kl(b, a)
    assert kl_ab.shape == (8,) and (kl_ab > 0).all() and (kl_ba > 0).all()
    assert not torch.allclose(kl_ab, kl_ba, atol=1e-4)


def test_categorical_kl_agrees_with_torch_and_scipy() -> None:
    a, b = _randn(16, 6, seed=4, dtype=torch.float64), _randn(16, 6, seed=5, dtype=torch.float64)
    ours = categorical_kl(a, b)
    log_p, log_q = F.log_softmax(a, 1), F.log_softmax(b, 1)
    torch_ref = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(1)
    scipy_ref = torch.from_numpy(rel_entr(log_p.exp().numpy(), log_q.exp().numpy()).sum(1))
    assert torch.allclose(ours, torch_ref, atol=1e-12)
    assert torch.allclose(ours, scipy_ref, atol=1e-10)


def test_categorical_kl_stable_for_extreme_logits() -> None:
    a = torch.tensor([[200.0, -200.0, 0.0]])
    b = torch.tensor([[-200.0, 200.0, 0.0]])
    kl = categorical_kl(a, b)
    assert torch.isfinite(kl).all() and kl.item() == pytest.approx(400.0, rel=1e-5)


def test_categorical_kl_dense_is_mean_over_positions() -> None:
    a, b = _randn(2, 3, 4, 4, seed=6), _randn(2, 3, 4, 4, seed=7)
    flat = categorical_kl(a.permute(0, 2, 3, 1).reshape(-1, 3), b.permute(0, 2, 3, 1).reshape(-1, 3))
    assert torch.allclose(categorical_kl(a, b), flat.view(2, 16).mean(1), atol=1e-6)


# -- Bernoulli KL -------------------------------------------------------------------------------
def test_bernoulli_kl_zero_for_identical_positive_otherwise() -> None:
    a, b = _randn(6, 5, seed=8), _randn(6, 5, seed=9)
    assert torch.allclose(bernoulli_kl(a, a), torch.zeros(6), atol=1e-6)
    assert (bernoulli_kl(a, b) > 0).all()
    assert not torch.allclose(bernoulli_kl(a, b), bernoulli_kl(b, a), atol=1e-4)


def test_bernoulli_kl_agrees_with_direct_formula_and_scipy() -> None:
    a, b = _randn(10, 5, seed=10, dtype=torch.float64), _randn(10, 5, seed=11, dtype=torch.float64)
    p, q = torch.sigmoid(a), torch.sigmoid(b)
    direct = (p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))).sum(1)
    pn, qn = p.numpy(), q.numpy()
    scipy_ref = torch.from_numpy((rel_entr(pn, qn) + rel_entr(1 - pn, 1 - qn)).sum(1))
    assert torch.allclose(bernoulli_kl(a, b), direct, atol=1e-12)
    assert torch.allclose(bernoulli_kl(a, b), scipy_ref, atol=1e-10)


def test_bernoulli_kl_is_sum_of_per_finding_terms() -> None:
    a, b = _randn(4, 3, seed=12), _randn(4, 3, seed=13)
    per_finding = torch.stack([bernoulli_kl(a[:, c : c + 1], b[:, c : c + 1]) for c in range(3)], 1)
    assert torch.allclose(bernoulli_kl(a, b), per_finding.sum(1), atol=1e-6)


def test_bernoulli_kl_stable_for_extreme_logits() -> None:
    a, b = torch.tensor([[60.0, -60.0]]), torch.tensor([[-60.0, 60.0]])
    kl = bernoulli_kl(a, b)
    # KL(Bern(1−e) || Bern(e)) ≈ log(1/e) = 60 per finding; naive log(sigmoid) would give inf
    assert torch.isfinite(kl).all() and kl.item() == pytest.approx(120.0, rel=1e-4)


# -- soft Dice distance -------------------------------------------------------------------------
def test_soft_dice_distance_matches_eq2() -> None:
    a = torch.rand(3, 2, 5, 5, generator=_gen(14), dtype=torch.float64)
    b = torch.rand(3, 2, 5, 5, generator=_gen(15), dtype=torch.float64)
    for eps in (0.0, 1.0, 1e-3):
        expected = torch.stack(
            [1 - (2 * (a[i] * b[i]).sum() + eps) / (a[i].sum() + b[i].sum() + eps) for i in range(3)]
        )
        assert torch.allclose(soft_dice_distance(a, b, eps), expected, atol=1e-12)


def test_soft_dice_distance_zero_identical_positive_different_symmetric() -> None:
    m = (torch.rand(4, 1, 6, 6, generator=_gen(16)) > 0.5).float()
    m[:, 0, 0, 0] = 1.0
    assert torch.allclose(soft_dice_distance(m, m, eps=0.0), torch.zeros(4), atol=1e-6)
    assert torch.allclose(soft_dice_distance(m, m, eps=1.0), torch.zeros(4), atol=1e-6)
    a, b = torch.rand(4, 1, 6, 6, generator=_gen(17)), torch.rand(4, 1, 6, 6, generator=_gen(18))
    assert (soft_dice_distance(a, b) > 0).all()
    assert torch.allclose(soft_dice_distance(a, b), soft_dice_distance(b, a), atol=1e-7)


def test_soft_dice_distance_disjoint_and_empty_masks() -> None:
    a = torch.zeros(1, 1, 2, 2)
    b = torch.zeros(1, 1, 2, 2)
    a[0, 0, 0, 0] = 1.0
    b[0, 0, 1, 1] = 1.0
    assert soft_dice_distance(a, b, eps=0.0).item() == pytest.approx(1.0)
    empty = torch.zeros(2, 1, 3, 3)
    for eps in (0.0, 1.0):  # both empty: distance 0, never NaN
        assert soft_dice_distance(empty, empty, eps).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="eps"):
        soft_dice_distance(a, b, eps=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        soft_dice_distance(a, b[:, :, :1])


# -- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "shape"),
    [
        (categorical_kl, (3, 4)),
        (bernoulli_kl, (3, 4)),
        (lambda a, b: soft_dice_distance(torch.sigmoid(a), torch.sigmoid(b)), (2, 1, 3, 3)),
    ],
    ids=["categorical_kl", "bernoulli_kl", "soft_dice"],
)
def test_kernels_gradcheck(fn, shape) -> None:  # noqa: ANN001
    a = torch.randn(shape, generator=_gen(19), dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape, generator=_gen(20), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (a, b))


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (CategoricalKL(), (3, 4)),
        (BernoulliKL(reduction="sum"), (3, 4)),
        (SoftDiceDistance(), (2, 1, 3, 3)),
        (SoftDiceDistance(eps=0.5), (2, 3, 3, 3)),
    ],
    ids=["categorical", "bernoulli", "dice-sigmoid", "dice-softmax"],
)
def test_modules_gradcheck(module: torch.nn.Module, shape: tuple[int, ...]) -> None:
    a = torch.randn(shape, generator=_gen(21), dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape, generator=_gen(22), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: module(x, y), (a, b))


@pytest.mark.parametrize("module", [CategoricalKL, BernoulliKL, SoftDiceDistance])
def test_detach_reference_stops_gradient_through_reference(module: type[torch.nn.Module]) -> None:
    shape = (2, 1, 4, 4) if module is SoftDiceDistance else (2, 3)
    a = torch.randn(shape, generator=_gen(23), requires_grad=True)
    b = torch.randn(shape, generator=_gen(24), requires_grad=True)
    module(detach_reference=True)(a, b).backward()
    assert a.grad is None
    assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    a2 = a.detach().clone().requires_grad_(True)
    module()(a2, b).backward()
    assert a2.grad is not None and a2.grad.abs().sum() > 0


# -- wrappers -----------------------------------------------------------------------------------
def test_reductions() -> None:
    a, b = _randn(5, 3, seed=25), _randn(5, 3, seed=26)
    per_case = categorical_kl(a, b)
    assert torch.allclose(CategoricalKL(reduction="none")(a, b), per_case)
    assert torch.allclose(CategoricalKL(reduction="sum")(a, b), per_case.sum())
    assert torch.allclose(CategoricalKL()(a, b), per_case.mean())
    with pytest.raises(ValueError, match="reduction"):
        CategoricalKL(reduction="max")  # type: ignore[arg-type]


def test_soft_dice_module_from_logits() -> None:
    one = _randn(2, 1, 4, 4, seed=27)
    one_cf = _randn(2, 1, 4, 4, seed=28)
    module = SoftDiceDistance(reduction="none")
    expected = soft_dice_distance(torch.sigmoid(one), torch.sigmoid(one_cf))
    assert torch.allclose(module(one, one_cf), expected)
    multi, multi_cf = _randn(2, 3, 4, 4, seed=29), _randn(2, 3, 4, 4, seed=30)
    expected = soft_dice_distance(torch.softmax(multi, 1)[:, 1:], torch.softmax(multi_cf, 1)[:, 1:])
    assert torch.allclose(module(multi, multi_cf), expected)
    probs = torch.rand(2, 1, 4, 4, generator=_gen(31))
    raw = SoftDiceDistance(from_logits=False, reduction="none")
    assert torch.allclose(raw(probs, probs.flip(-1)), soft_dice_distance(probs, probs.flip(-1)))


def test_distance_for_task() -> None:
    assert isinstance(distance_for_task("multiclass"), CategoricalKL)
    assert isinstance(distance_for_task("multilabel"), BernoulliKL)
    seg = distance_for_task("segmentation", reduction="none", from_logits=False)
    assert isinstance(seg, SoftDiceDistance) and seg.reduction == "none" and not seg.from_logits
    with pytest.raises(ValueError, match="task must be one of"):
        distance_for_task("detection")


# -- the objective ------------------------------------------------------------------------------
def _objective(lam: float = 0.5, average: str = "pairs") -> ConsistencyObjective:
    return ConsistencyObjective(torch.nn.CrossEntropyLoss(), CategoricalKL(reduction="none"), lam=lam, average=average)  # type: ignore[arg-type]


def test_objective_equals_eq1_with_all_admitted() -> None:
    ref = _randn(3, 4, seed=32)
    cf = _randn(3, 2, 4, seed=33)
    y = torch.tensor([0, 3, 1])
    out = _objective(lam=0.7)(ref, y, cf)
    assert isinstance(out, ConsistencyTerms)
    kl = torch.stack([categorical_kl(ref, cf[:, k]) for k in range(2)], 1)
    sup = F.cross_entropy(ref, y)
    assert torch.allclose(out.supervised, sup)
    assert torch.allclose(out.consistency, kl.mean(), atol=1e-6)
    assert torch.allclose(out.total, sup + 0.7 * kl.mean(), atol=1e-6)


def test_objective_ignores_rejected_counterfactuals() -> None:
    ref = _randn(2, 3, seed=34).requires_grad_(True)
    cf = _randn(2, 3, 3, seed=35)
    cf[1, 2] = float("nan")  # garbage on a rejected counterfactual must not leak
    y = torch.tensor([0, 2])
    adm = torch.tensor([[True, False, True], [True, False, False]])
    out = _objective()(ref, y, cf, adm)
    pairs = torch.stack(
        [categorical_kl(ref[:1], cf[0, :1]), categorical_kl(ref[:1], cf[0, 2:3]), categorical_kl(ref[1:], cf[1, :1])]
    )
    assert torch.allclose(out.consistency, pairs.mean(), atol=1e-6)
    by_case = _objective(average="cases")(ref, y, cf, adm)
    assert torch.allclose(by_case.consistency, (pairs[:2].mean() + pairs[2]) / 2, atol=1e-6)
    out.total.backward()
    assert ref.grad is not None and torch.isfinite(ref.grad).all()


def test_objective_none_admitted_is_zero_with_gradient() -> None:
    ref = _randn(2, 3, seed=36).requires_grad_(True)
    cf = _randn(2, 4, 3, seed=37).requires_grad_(True)
    y = torch.tensor([1, 0])
    out = _objective()(ref, y, cf, torch.zeros(2, 4, dtype=torch.bool))
    assert out.consistency.item() == 0.0
    assert torch.equal(out.total, out.supervised)
    out.total.backward()
    assert ref.grad is not None and torch.isfinite(ref.grad).all()
    assert cf.grad is not None and (cf.grad == 0).all()


def test_objective_segmentation_shapes() -> None:
    ref = _randn(2, 1, 4, 4, seed=38)
    cf = _randn(2, 3, 1, 4, 4, seed=39)
    target = (torch.rand(2, 1, 4, 4, generator=_gen(40)) > 0.5).float()
    obj = ConsistencyObjective(torch.nn.BCEWithLogitsLoss(), distance_for_task("segmentation", reduction="none"), 1.0)
    out = obj(ref, target, cf, torch.tensor([[True, True, False], [False, True, True]]))
    assert out.total.ndim == 0 and torch.isfinite(out.total)


def test_objective_validation() -> None:
    with pytest.raises(ValueError, match="reduction='none'"):
        ConsistencyObjective(torch.nn.CrossEntropyLoss(), CategoricalKL(), 1.0)
    with pytest.raises(ValueError, match="lam"):
        ConsistencyObjective(torch.nn.CrossEntropyLoss(), CategoricalKL(reduction="none"), -1.0)
    obj = _objective()
    with pytest.raises(ValueError, match="out_cf"):
        obj(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="admitted"):
        obj(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 4, 3), torch.ones(2, 3, dtype=torch.bool))


def test_admitted_mean_weights() -> None:
    d = torch.tensor([1.0, 5.0, 7.0])
    w = torch.tensor([1.0, 0.5, 0.5])
    case = torch.tensor([0, 1, 1])
    assert admitted_mean(d, w, case, 3).item() == pytest.approx((1 + 2.5 + 3.5) / 2)
    assert admitted_mean(d, w, case, 3, "cases").item() == pytest.approx((1 + 6 + 0) / 3)
    empty = torch.zeros(0, requires_grad=True)
    zero = admitted_mean(empty, empty.detach(), torch.zeros(0, dtype=torch.long), 2, "cases")
    assert zero.item() == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match="average"):
        admitted_mean(d, w, case, 3, "median")  # type: ignore[arg-type]


def test_objective_rejects_negative_weights() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        _objective()(torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1, 2, 2), torch.tensor([[1.0, -1.0]]))
