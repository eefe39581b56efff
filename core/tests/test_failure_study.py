"""The failure-prediction study's kernels: signals, statistics, generic corruptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from c3_core.batch import Batch
from c3_core.experiments.failure_stats import aurc, bootstrap, risk_coverage, scores
from c3_core.experiments.generic_neighbourhood import GenericNeighbourhood, match_parameter, mean_display_change
from c3_core.functional import corruptions as C
from c3_core.metrics import margins as S


def test_decision_margin_multiclass_is_gap_to_the_runner_up() -> None:
    p = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    ref = torch.tensor([0, 0])
    m = S.decision_margin("multiclass", p, ref, 0.5)
    assert torch.allclose(m, torch.tensor([0.3, -0.3]))


def test_decision_margin_multilabel_is_signed_by_the_reference_side() -> None:
    p = torch.tensor([[0.8, 0.2, 0.45]])
    ref = torch.tensor([[True, False, True]])
    m = S.decision_margin("multilabel", p, ref, 0.5)
    assert torch.allclose(m, torch.tensor([[0.3, 0.3, -0.05]]))


def test_worst_margin_and_flips_ignore_rejected_counterfactuals() -> None:
    clean = torch.tensor([0.4, 0.4])
    cf = torch.tensor([[0.1, -0.2, 0.3], [0.2, 0.3, 0.35]])
    admitted = torch.tensor([[True, False, True], [True, True, True]])
    assert torch.allclose(S.worst_margin(clean, cf, admitted), torch.tensor([0.1, 0.2]))
    assert S.admitted_flips(cf, admitted).tolist() == [0.0, 0.0]
    assert S.admitted_flips(cf, torch.ones_like(admitted)).tolist() == [1.0, 0.0]


def test_severity_margin_takes_the_first_admitted_flip_per_operator() -> None:
    # one case, two operators, three levels
    margins = torch.tensor([[[0.2, -0.1, -0.3], [0.3, 0.2, 0.1]]])
    admitted = torch.tensor([[[True, True, True], [True, True, True]]])
    fractions = torch.tensor([[0.25, 0.5, 1.0], [0.2, 0.6, 1.0]], dtype=torch.float64)
    got = S.severity_margin(margins, admitted, fractions)
    assert got.item() == pytest.approx((0.5 + S.NEVER) / 2)
    admitted[0, 0, 1] = False  # the first flip rejected: the next one counts
    assert S.severity_margin(margins, admitted, fractions).item() == pytest.approx((1.0 + S.NEVER) / 2)


def test_entropy_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    p = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), 1)
    got = S.predictive_entropy("multiclass", p)
    assert np.allclose(got.numpy(), stats.entropy(p.numpy(), axis=1), atol=1e-6)
    q = torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    want = stats.entropy(np.stack([q.numpy(), 1 - q.numpy()]), axis=0)
    assert np.allclose(S.predictive_entropy("multilabel", q).numpy(), want, atol=1e-6)


def test_spread_is_the_population_variance() -> None:
    stack = torch.tensor([[[0.2, 0.8]], [[0.4, 0.6]]])
    assert torch.allclose(S.spread("multilabel", stack), torch.tensor([[0.01, 0.01]]))
    assert torch.allclose(S.spread("multiclass", stack), torch.tensor([0.02]))


def test_signals_refuse_segmentation() -> None:
    with pytest.raises(ValueError, match="classification"):
        S.reference_decision("segmentation", torch.rand(2, 1, 4, 4), 0.5)


def test_risk_coverage_and_aurc_closed_forms() -> None:
    fail = torch.tensor([0, 0, 1, 1], dtype=torch.float64)
    perfect = torch.tensor([0.0, 0.1, 0.8, 0.9])
    cov, risk = risk_coverage(perfect, fail)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == [0.0, 0.0, pytest.approx(1 / 3), 0.5]
    assert aurc(perfect, fail) == pytest.approx((0 + 0 + 1 / 3 + 0.5) / 4)
    worst = -perfect
    assert aurc(worst, fail) == pytest.approx((1 + 1 + 2 / 3 + 0.5) / 4)


def test_scores_agree_with_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(3)
    s = torch.rand(200, generator=g, dtype=torch.float64)
    f = (torch.rand(200, generator=g, dtype=torch.float64) < s).double()
    got = scores(s, f)
    assert got["auroc"] == pytest.approx(metrics.roc_auc_score(f.numpy(), s.numpy()))
    assert got["auprc"] == pytest.approx(metrics.average_precision_score(f.numpy(), s.numpy()))


def test_one_class_failure_gives_nan_not_an_error() -> None:
    got = scores(torch.rand(5), torch.zeros(5))
    assert math.isnan(got["auroc"]) and math.isnan(got["auprc"])


def _table(seed: int, informative: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    fail = (torch.rand(300, generator=g) < 0.3).double()
    good = fail + 0.5 * torch.randn(300, generator=g, dtype=torch.float64)
    noise = torch.randn(300, generator=g, dtype=torch.float64)
    return {"good": good if informative else noise, "noise": noise}, fail, torch.arange(300)


def test_bootstrap_is_deterministic_and_paired_difference_favours_the_informative_signal() -> None:
    tables = [_table(0, True), _table(1, True)]
    a = bootstrap(tables, 200, torch.Generator().manual_seed(0), {"good - noise": ("good", "noise")})
    b = bootstrap(tables, 200, torch.Generator().manual_seed(0), {"good - noise": ("good", "noise")})
    assert a == b
    pair = a["pairs"]["good - noise"]
    assert pair["auroc"]["ci"][0] > 0 and pair["aurc"]["ci"][0] > 0  # positive = favours "good" for both
    assert a["n_seeds"] == 2 and a["n_exams"] == 300
    lo, hi = a["signals"]["good"]["auroc"]["ci"]
    assert lo < a["signals"]["good"]["auroc"]["value"] < hi


def test_display_window_round_trip_and_kernel_properties() -> None:
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.rand(2, 1, 32, 32, generator=g)
    u, lo, hi = C.display_window(x)
    assert u.min() >= 0 and u.max() <= 1
    inside = (x >= lo) & (x <= hi)
    assert torch.allclose(C.from_display_window(u, lo, hi)[inside], x[inside], atol=1e-5)
    flat = torch.full((1, 1, 16, 16), 0.4)
    assert torch.allclose(C.gaussian_blur(flat, 2.0), flat, atol=1e-6)
    assert torch.allclose(C.contrast(u, 1.0), u, atol=1e-6)
    noisy = C.gaussian_noise(torch.full((1, 1, 256, 256), 0.5), 0.05, torch.Generator().manual_seed(1))
    assert float(noisy.std()) == pytest.approx(0.05, rel=0.05)


def test_jpeg_quality_orders_the_error() -> None:
    pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(0)
    u = C.gaussian_blur(torch.rand(1, 3, 64, 64, generator=g), 1.5)
    err_hi = float((C.jpeg(u, 95) - u).abs().mean())
    err_lo = float((C.jpeg(u, 5) - u).abs().mean())
    assert err_hi < err_lo
    vol = C.jpeg(torch.rand(1, 1, 3, 16, 16, generator=g), 50)
    assert vol.shape == (1, 1, 3, 16, 16)
    with pytest.raises(ValueError, match="quality"):
        C.jpeg(u, 0)


def test_generic_neighbourhood_matches_strength_and_is_seeded() -> None:
    pytest.importorskip("cv2")
    g = torch.Generator().manual_seed(0)
    img = C.gaussian_blur(torch.rand(4, 1, 32, 32, generator=g), 1.0) * 5
    u, _lo, _hi = C.display_window(img)
    target = 0.03
    p = match_parameter("gaussian_noise", u, target)
    effect = float((C.gaussian_noise(u, p, torch.Generator().manual_seed(0)) - u).abs().mean())
    assert effect == pytest.approx(target, rel=0.05)
    nb = GenericNeighbourhood.matched(img, target, k=3, seed=7)
    batch = Batch(image=img, exam_ids=("a", "b", "c", "d"), modality="x", domain="display", spacing=((1.0, 1.0),) * 4)
    a, labels = nb.draw(batch)
    b, _ = nb.draw(batch)
    assert torch.equal(a, b) and a.shape == (12, 1, 32, 32) and len(labels[0]) == 3
    assert 0.3 * target < mean_display_change(img, a, 3) < 3 * target


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_evaluate_verdict_is_negative_exactly_when_an_admitted_counterfactual_flips(task: str) -> None:
    from c3_core.evaluation.scoring import predictions, verdict_margins

    g = torch.Generator().manual_seed(5)
    b, k, c = 40, 6, 4
    if task == "multiclass":
        probs = torch.softmax(2 * torch.randn(b, c, generator=g), 1)
        probs_cf = torch.softmax(torch.log(probs).unsqueeze(1) + torch.randn(b, k, c, generator=g), 2)
    else:
        probs = torch.rand(b, c, generator=g)
        probs_cf = (probs.unsqueeze(1) + 0.3 * torch.randn(b, k, c, generator=g)).clamp(0, 1)
    admitted = torch.rand(b, k, generator=g) < 0.7
    margin, worst = verdict_margins(task, probs, probs_cf, admitted, 0.5)
    pred = predictions(task, probs, 0.5)
    pred_cf = predictions(task, probs_cf.reshape(b * k, c), 0.5).view(b, k, *pred.shape[1:])
    same = pred_cf == pred.unsqueeze(1)
    flipped = ((~same if task == "multiclass" else ~same.all(2)) & admitted).any(1)
    assert torch.all(worst <= margin)
    assert torch.equal(worst < 0, flipped)
    assert torch.all(margin >= 0)


def test_generated_commands_show_no_absolute_path(tmp_path) -> None:
    from c3_core.shown_paths import shown_args, shown_path

    inside = tmp_path / "repo"
    (inside / "docs").mkdir(parents=True)
    assert shown_path("docs/x.md", inside) == "docs/x.md"
    assert shown_path(str(inside / "docs" / "x.md"), inside) == "docs/x.md"
    assert shown_path(str(tmp_path / "elsewhere" / "out"), inside) == "<outside>/out"
    assert shown_path("../out", inside) == "<outside>/out"
    args = shown_args(["--out", str(tmp_path / "o"), "--threads", "1"], inside)
    assert args == ["--out", "<outside>/o", "--threads", "1"] and str(tmp_path) not in " ".join(args)


def test_two_d_records_and_checkpoint_keys_are_unchanged_by_the_segmentation_fields() -> None:
    from dataclasses import asdict

    from c3_core.experiments.failure_study import StudyConfig, cohort_size, config_record

    config = StudyConfig()
    old = {k: v for k, v in asdict(config).items() if k != "n_volumes"}  # the record before volumes existed
    assert config_record(config, "multilabel") == old == config_record(config, "multiclass")
    assert config_record(config, "segmentation") == asdict(config) and config.n_volumes >= 60
    assert cohort_size(config, "segmentation") == config.n_volumes and cohort_size(config, "multiclass") == 1000
    with pytest.raises(ValueError, match="n_volumes"):
        StudyConfig(n_volumes=0)


def test_only_known_tasks_are_studied() -> None:
    from c3_core.experiments.failure_study import StudyInputError, _check_task

    for task in ("multiclass", "multilabel", "segmentation"):
        _check_task("x", task)
    with pytest.raises(StudyInputError, match="'regression' is not supported"):
        _check_task("x", "regression")


def test_verdict_test_uses_each_tasks_signals_and_never_picks_an_undefined_alternative() -> None:
    from c3_core.experiments.failure_signals import SEGMENTATION
    from c3_core.experiments.failure_study import verdict_test

    def entry(v: float) -> dict:
        return {"auroc": {"value": v, "ci": [v - 0.1, v + 0.1]}}

    sig = {a: entry(0.6) for a in SEGMENTATION.alternatives} | {"tta_disagreement": entry(float("nan")), "confidence": entry(0.7)}
    pairs = {f"{SEGMENTATION.verdict} - {a}": {"auroc": {"value": 0.05, "ci": [0.01, 0.09]}} for a in SEGMENTATION.alternatives}
    result = {"modality": "mri", "task": "segmentation", "shifts": {"s": {"flip": {"signals": sig, "pairs": pairs}}}}
    got = verdict_test([result], ["mri"])
    assert got["rows"][0]["best_alternative"] == "confidence" and got["rows"][0]["verdict"] == "c3_consistency"
    assert got["rows"][0]["above_zero"] and verdict_test([result], [])["rows"] == []
