"""Which online counterfactuals a training step may use: the validity gate, as in evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.evaluation.scoring import GateSettings, gate_counterfactuals
from c3_core.gate import GateDecision
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Plan
from c3_core.truth import truth_change


def plan_is_spatial(plan: Plan) -> bool:
    """True when any step of ``plan`` moves pixels (then dense outputs are in another frame)."""
    return any(step.operator.spatial for step in plan.steps)


@torch.no_grad()
def admitted_pairs(
    task: str,
    batch: Batch,
    cf: Batch,
    plans: Sequence[Sequence[Plan]],
    operator_rejections: Sequence[Sequence[str | None]],
    *,
    gate: GateSettings | None,
    teacher: ModelBundle | None,
    class_names: Sequence[str],
    stacked: Tensor | None = None,
) -> tuple[Tensor, GateDecision]:
    """A ``(B, K)`` bool of the counterfactuals the consistency term may use, and the decision.

    ``gate=None`` is the no-gate ablation: every counterfactual is used, operator checks included.
    Otherwise the operators' own checks always apply and, with a frozen ``teacher``, the learned
    test too (probability shift and class change, or teacher-mask IoU). For segmentation a
    counterfactual whose plan moved pixels is not used: f(x) and f(x') would be compared in
    different frames (it is counted as rejected with that reason). With or without the gate, a
    counterfactual whose plan declares that it changes the task's truth (the label, or the mask
    for segmentation; ``Operator.changes``) is never a pair: its truth is not the original's, so
    f(x) is no target for f(x').
    ``stacked``: the originals' and counterfactuals' images in one tensor (originals first, as
    :meth:`~c3_core.neighbourhood.Neighbourhood.draw_beside` gives them), for the teacher's forward.
    """
    b, k = batch.size, len(plans[0]) if plans else 0
    changed = [[truth_change(plan, task) for plan in row] for row in plans]
    if gate is None:
        decision = GateDecision.admit_all(b, k)
        if any(why is not None for row in changed for why in row):
            decision = decision.with_extra_rejections(changed)
        return decision.admitted.bool().cpu(), decision
    decision = gate_counterfactuals(task, batch, cf, b, k, gate, teacher, class_names, None, stacked=stacked)
    extra = [["; ".join(r for r in (why, c) if r) or None for why, c in zip(row, crow)] for row, crow in zip(operator_rejections, changed)]
    if task == "segmentation":
        for i, row in enumerate(plans):
            for j, plan in enumerate(row):
                if extra[i][j] is None and plan_is_spatial(plan):
                    extra[i][j] = "spatial counterfactual: not comparable voxel for voxel"
    decision = decision.with_extra_rejections(extra)
    return decision.admitted.bool().cpu(), decision
