"""Score one batch: originals and their counterfactuals, gated, into per-case and per-cf rows."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.gate import ClassificationGate, GateDecision, SegmentationGate
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Plan, PlannedStep
from c3_core.provenance import params_json_writer, record_json, step_head, step_json_text
from c3_core.utility import dice_score, one_minus_brier, shift_stable_utility, true_class_probability


@dataclass(frozen=True)
class GateSettings:
    """Thresholds of the validity gate; a teacher model is needed for the learned tests."""

    delta: float = 0.2
    tau: float = 0.7
    threshold: float = 0.5

    def to_dict(self) -> dict[str, float]:
        return {"delta": self.delta, "tau": self.tau, "threshold": self.threshold}

    @classmethod
    def from_file(cls, path: str | Path) -> GateSettings:
        """Thresholds from the JSON `c3 gate calibrate` writes (missing keys keep their defaults).

        Raises ValueError naming the file when it cannot be read or holds no JSON object.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls(
                delta=float(data.get("delta", cls.delta)),
                tau=float(data.get("tau", cls.tau)),
                threshold=float(data.get("threshold", cls.threshold)),
            )
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"--gate {path}: cannot read gate thresholds ({exc})") from None


def _forward(bundle: ModelBundle, image: Tensor, chunk: int | None) -> Tensor:
    """Probabilities for ``image``: one forward, or forwards of ``chunk`` inputs to bound memory."""
    if chunk is None or image.shape[0] <= chunk:
        return bundle.probabilities(bundle.logits(image))
    outs = [bundle.logits(image[i : i + chunk]) for i in range(0, image.shape[0], chunk)]
    return bundle.probabilities(torch.cat(outs, 0))


def case_scores(task: str, probs: Tensor, batch: Batch, threshold: float) -> Tensor:
    """Per-case score s(f(x), y) in [0, 1] for the task (higher is better)."""
    if task == "multiclass":
        return true_class_probability(probs, batch.label.long())  # type: ignore[union-attr]
    if task == "multilabel":
        return one_minus_brier(probs, batch.label.float())  # type: ignore[union-attr]
    if batch.mask is None:
        raise ValueError("segmentation scoring needs ground-truth masks")
    return dice_score(probs[:, :1] >= threshold, batch.mask[:, :1] >= 0.5)


def predictions(task: str, probs: Tensor, threshold: float) -> Tensor:
    """Class index (multiclass), positive set (multilabel) or binary mask (segmentation)."""
    if task == "multiclass":
        return probs.argmax(1)
    return probs >= threshold if task == "multilabel" else probs[:, :1] >= threshold


def _same_prediction(task: str, a: Tensor, b: Tensor) -> Tensor:
    if task == "multiclass":
        return a == b
    if task == "multilabel":
        return (a == b).all(dim=1)
    inter = (a & b).flatten(1).sum(1).float()
    total = a.flatten(1).sum(1).float() + b.flatten(1).sum(1).float()
    dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
    return dice >= 0.9


def verdict_margins(task: str, probs: Tensor, probs_cf: Tensor, admitted: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Each exam's clean decision margin and its worst margin over the admitted neighbourhood.

    ``probs (B, C)``, ``probs_cf (B, K, C)``, ``admitted (B, K)``. The margin is the distance of the
    probabilities to the boundary of the clean decision (multi-class: p[pred] minus the runner-up;
    multi-label: |p - threshold| on the clean side, the smallest over findings); the worst margin is
    the smallest over the clean image and its admitted counterfactuals, negative when one of them
    changes the decision. docs/failure-study.md measures how well each predicts failure under a
    held-out shift (on the demo cohorts the clean margin does better on three of four shifts).
    """
    from c3_core.metrics.margins import decision_margin, reference_decision, worst_margin

    b, k = probs_cf.shape[:2]
    ref = reference_decision(task, probs, threshold)
    m0 = decision_margin(task, probs, ref, threshold)
    mcf = decision_margin(task, probs_cf.reshape(b * k, -1), ref.repeat_interleave(k, 0), threshold).view(b, k, *m0.shape[1:])
    worst = worst_margin(m0, mcf, admitted.to(m0.device))
    if task == "multilabel":
        return m0.amin(1), worst.amin(1)
    return m0, worst


def score_batch(
    bundle: ModelBundle,
    batch: Batch,
    cf: Batch,
    plans: Sequence[Sequence[Plan]],
    operator_rejections: Sequence[Sequence[str | None]],
    gate: GateSettings,
    teacher: ModelBundle | None,
    chunk: int | None = None,
    written_ids: Sequence[str] | None = None,
    stacked: Tensor | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Tensor]]:
    """Rows for this batch plus the raw tensors the modality summary needs.

    Rows and provenance name each exam by ``written_ids`` (its pseudonym) when given, never by
    the stable id the counterfactuals were seeded from.

    The neighbourhood N(x) of each case is the original plus its *admitted* counterfactuals.
    Without a teacher, only operator-declared checks gate; with one, the learned tests
    (probability shift and class change, or teacher-mask IoU) gate too. The originals and their
    counterfactuals go through the model as one batch of (K+1)·B inputs (``chunk`` splits it):
    ``stacked`` when the caller has them in one tensor already (originals first, as
    :meth:`~c3_core.neighbourhood.Neighbourhood.draw_beside` gives them), else their concatenation.
    """
    task = bundle.task
    b, k = batch.size, len(plans[0])
    if stacked is None:
        stacked = torch.cat([batch.image, cf.image], 0)
    probs_all = _forward(bundle, stacked, chunk)
    probs, probs_cf = probs_all[:b], probs_all[b:]
    decision = gate_counterfactuals(task, batch, cf, b, k, gate, teacher, bundle.class_names, chunk, stacked=stacked)
    cf_truth, unknown = _counterfactual_truth(task, batch, cf, k)
    rejections = [
        [r if r is not None or not unknown[i * k + j] else "truth unknown after the edit (not scored)" for j, r in enumerate(row)]
        for i, row in enumerate(operator_rejections)
    ]
    decision = decision.with_extra_rejections(rejections)
    admitted = decision.admitted.to(probs.device)

    score = case_scores(task, probs, batch, gate.threshold)
    score_cf = case_scores(task, probs_cf, cf_truth, gate.threshold).view(b, k)
    util = shift_stable_utility(score, score_cf, admitted)

    pred = predictions(task, probs, gate.threshold)
    pred_cf = predictions(task, probs_cf, gate.threshold)
    same = _same_prediction(task, pred.repeat_interleave(k, 0), pred_cf).view(b, k)
    margin_l = worst_l_margin = None
    if task != "segmentation":
        margin, worst_margin = verdict_margins(task, probs, probs_cf.view(b, k, -1), admitted.bool(), gate.threshold)
        margin_l, worst_l_margin = margin.tolist(), worst_margin.tolist()

    # one transfer to Python per quantity (per-element tensor indexing dominates small batches)
    adm_t = admitted.bool()
    n_adm_l = adm_t.sum(1).tolist()
    flipped_l = (~same & adm_t).sum(1).tolist()
    agree_l = (same & adm_t).sum(1).tolist()
    score_l = score.tolist()
    util_l = util.utility.tolist()
    worst_l = util.argmin.tolist()
    adm_l = adm_t.tolist()
    same_l = same.tolist()
    stat_l = decision.statistic.tolist()
    score_cf_l = score_cf.tolist()
    drop_l = (score.unsqueeze(1) - score_cf).tolist()  # in the scores' dtype, as before
    probs_l = probs.tolist() if task != "segmentation" else None
    pred_l = pred.tolist() if task != "segmentation" else None
    label_l = batch.label.tolist() if task != "segmentation" else None  # type: ignore[union-attr]

    ids = list(written_ids) if written_ids is not None else list(batch.exam_ids)
    provenance_record = _ProvenanceWriter()
    class_keys = [f"prob_{name}" for name in bundle.class_names] if probs_l is not None else []
    case_rows: list[dict[str, Any]] = []
    cf_rows: list[dict[str, Any]] = []
    for i in range(b):
        n_adm = int(n_adm_l[i])
        worst = int(worst_l[i])
        exam = ids[i]
        # each plan's label and provenance record, built once (the worst plan's label is one of them)
        records = [provenance_record(plan, exam) for plan in plans[i]]
        worst_plan = plans[i][worst] if worst >= 0 else None
        row: dict[str, Any] = {
            "exam_id": exam,
            "score": score_l[i],
            "utility": util_l[i],
            "worst_k": worst,
            "worst_ops": records[worst][0] if worst_plan else "original",
            "worst_operator": worst_plan.steps[0].operator.id if worst_plan else "",
            "worst_severity": float(worst_plan.steps[0].severity) if worst_plan else 0.0,
            "n_counterfactuals": k,
            "n_admitted": n_adm,
            "n_rejected": k - n_adm,
            "n_flipped": int(flipped_l[i]),
            "agreement": float(agree_l[i]) / n_adm if n_adm else 1.0,
        }
        if margin_l is not None:
            row["margin"] = margin_l[i]  # type: ignore[index]
            row["worst_margin"] = worst_l_margin[i]  # type: ignore[index]
        if task == "multiclass":
            row["label"] = int(label_l[i])  # type: ignore[index]
            row["pred"] = int(pred_l[i])  # type: ignore[index]
        elif task == "multilabel":
            row["label"] = [None if not math.isfinite(v) else float(v) for v in label_l[i]]  # type: ignore[index]
            row["pred"] = [int(v) for v in pred_l[i]]  # type: ignore[index]
        if probs_l is not None:
            probs_i = probs_l[i]
            for c, key in enumerate(class_keys):
                row[key] = probs_i[c]
        case_rows.append(row)
        adm_i, reasons_i, stat_i, score_cf_i, drop_i, same_i = (
            adm_l[i], decision.reasons[i], stat_l[i], score_cf_l[i], drop_l[i], same_l[i])
        for j in range(k):
            ops, first_op, first_severity, provenance = records[j]
            cf_rows.append(
                {
                    "exam_id": exam,
                    "k": j,
                    "ops": ops,
                    "operator": first_op,
                    "severity": first_severity,
                    "admitted": bool(adm_i[j]),
                    "reason": reasons_i[j] or "",
                    "gate_statistic": float(stat_i[j]),
                    "score": score_cf_i[j],
                    "score_drop": drop_i[j],
                    "flipped": not same_i[j],
                    "provenance": provenance,
                }
            )
    raw = {"probs": probs.cpu(), "pred": pred.cpu(), "score": score.cpu(), "utility": util.utility.cpu()}
    return case_rows, cf_rows, raw


class _ProvenanceWriter:
    """Each plan's (label, first operator id, first severity, provenance JSON) for the rows of
    one batch: the values ``plan.provenance()`` gives (``.label``, ``.steps[0]``, ``.to_json()``
    with ``exam_id`` the written id), without building Provenance and Step objects (one per
    counterfactual, used once). The JSON text shared by every step of one operator with one set
    of options (:func:`~c3_core.provenance.step_head`) and each params type's JSON template
    (:func:`~c3_core.provenance.params_json_writer`) are made once per batch."""

    def __init__(self) -> None:
        self._heads: dict[tuple[int, int], str] = {}
        self._writers: dict[type, Callable[[Any], str]] = {}

    def _head(self, step: PlannedStep) -> str:
        key = (id(step.operator), id(step.options))  # both live as long as the plans do
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = step_head(step.operator.id, step.operator.version, step.options)
        return head

    def _params(self, params: Any) -> str:
        write = self._writers.get(type(params))
        if write is None:
            write = self._writers[type(params)] = params_json_writer(type(params))
        return write(params)

    def __call__(self, plan: Plan, written_id: str) -> tuple[str, str, float, str]:
        steps = plan.steps
        text = record_json(written_id, plan.index, plan.member, plan.seed,
                           [step_json_text(self._head(s), self._params(s.params), s.severity) for s in steps])
        label = " + ".join(f"{s.operator.id}@{s.severity:g}" for s in steps)
        return label, steps[0].operator.id, steps[0].severity, text


def _counterfactual_truth(task: str, batch: Batch, cf: Batch, k: int) -> tuple[Batch, list[bool]]:
    """What each counterfactual is scored against: its own mask and label as the neighbourhood
    returned them (a spatial operator moves the mask; an editor that declares a change states
    the new truth), and which ones lost their truth (unknown after the edit: they cannot be
    scored and are rejected with that reason). Unknown entries are filled from the original
    only so the score stays finite; such counterfactuals never enter the utility."""
    from c3_core.truth import label_known, mask_known

    # the originals' truth, row i*k+j from case i (as batch.repeat_interleave(k) holds it); the
    # returned batch carries the counterfactuals' pixels, which no score reads
    rep = torch.arange(batch.size, device=batch.image.device).repeat_interleave(k)
    base_label = None if batch.label is None else batch.label.index_select(0, rep.to(batch.label.device))
    base_mask = None if batch.mask is None else batch.mask.index_select(0, rep)
    n = batch.size * k
    unknown = torch.zeros(n, dtype=torch.bool)
    label, mask = base_label, base_mask
    if task == "segmentation" and cf.mask is not None and base_mask is not None and cf.mask.shape == base_mask.shape:
        known = mask_known(cf.mask)  # (N, M): channels that describe the edited image
        unknown |= ~known.all(1).cpu()
        mask = torch.where(known.view(*known.shape, *[1] * (cf.mask.ndim - 2)), cf.mask, base_mask)
    if task != "segmentation" and cf.label is not None and base_label is not None and cf.label.shape == base_label.shape:
        known = label_known(cf.label)
        if task == "multiclass":
            unknown |= ~known.cpu()
            label = torch.where(known, cf.label, base_label)
        else:  # multi-label: an unknown finding is ignored (NaN), like an uncertain one
            unknown |= (~known.any(1) & label_known(base_label).any(1)).cpu()
            label = torch.where(known.any(1, keepdim=True), cf.label, base_label)
    return cf.replace(label=label, mask=mask), unknown.tolist()


def gate_counterfactuals(
    task: str,
    batch: Batch,
    cf: Batch,
    b: int,
    k: int,
    gate: GateSettings,
    teacher: ModelBundle | None,
    class_names: Sequence[str],
    chunk: int | None,
    *,
    stacked: Tensor | None = None,
) -> GateDecision:
    """The gate's decision on the (B, K) counterfactuals of ``batch``: the operators' own checks
    only without a ``teacher``, else the learned tests on the teacher's forward over the originals
    and counterfactuals (``stacked``: those B + B·K images in one tensor, originals first, when
    the caller has it)."""
    if teacher is None:
        return GateDecision.admit_all(b, k)
    t_all = _forward(teacher, torch.cat([batch.image, cf.image], 0) if stacked is None else stacked, chunk)
    t_ref, t_cf = t_all[:b], t_all[b:]
    if task == "segmentation":
        return SegmentationGate(tau=gate.tau, threshold=gate.threshold)(
            t_ref[:, :1], t_cf[:, :1].reshape(b, k, 1, *t_cf.shape[2:])
        )
    g = ClassificationGate(
        delta=gate.delta, multilabel=task == "multilabel", threshold=gate.threshold, class_names=class_names
    )
    return g(t_ref, t_cf.reshape(b, k, -1))
