"""How well the validity gate separates label-changing edits from admissible ones.

A set is *planted* with edits known to change the label — the lesion removed (the
``probe_role = "removed"`` editor) from every case that has a lesion — next to the admissible
neighbourhood (the dataset's default physics operators). The gate (the dataset's default teacher,
never the evaluated model, with its calibrated thresholds, plus operator-declared checks) then
judges both:

* ``share_planted_rejected`` — label-changing edits the gate catches (its sensitivity);
* ``share_admissible_rejected`` — admissible edits it wrongly rejects (its false-rejection rate).

Shares over an empty set are ``None``, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from c3_core.gate import GateDecision


@dataclass(frozen=True)
class GateEffect:
    """Counts of planted (label-changing) and admissible edits, and how many the gate rejected."""

    planted: int
    planted_rejected: int
    admissible: int
    admissible_rejected: int

    @property
    def share_planted_rejected(self) -> float | None:
        return self.planted_rejected / self.planted if self.planted else None

    @property
    def share_admissible_rejected(self) -> float | None:
        return self.admissible_rejected / self.admissible if self.admissible else None

    def __add__(self, other: GateEffect) -> GateEffect:
        return GateEffect(
            self.planted + other.planted,
            self.planted_rejected + other.planted_rejected,
            self.admissible + other.admissible,
            self.admissible_rejected + other.admissible_rejected,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "planted": self.planted,
            "planted_rejected": self.planted_rejected,
            "share_planted_rejected": self.share_planted_rejected,
            "admissible": self.admissible,
            "admissible_rejected": self.admissible_rejected,
            "share_admissible_rejected": self.share_admissible_rejected,
        }


def gate_effect(planted: GateDecision, planted_valid: Tensor, admissible: GateDecision) -> GateEffect:
    """Count from two gate decisions; ``planted_valid (B, Kp)`` marks the planted edits that
    really changed the label (e.g. a lesion was there to remove); the others are ignored."""
    if planted_valid.shape != planted.admitted.shape:
        raise ValueError(f"planted_valid {tuple(planted_valid.shape)} must match the decision {planted.shape}")
    valid = planted_valid.bool().cpu()
    caught = ~planted.admitted.cpu() & valid
    return GateEffect(
        planted=int(valid.sum()),
        planted_rejected=int(caught.sum()),
        admissible=int(admissible.admitted.numel()),
        admissible_rejected=int((~admissible.admitted).sum()),
    )


def measure_batch(
    task: str,
    batch: Any,
    admissible_cf: Any,
    admissible_reasons: Sequence[Sequence[str | None]],
    planted_cf: Any,
    planted_valid: Tensor,
    gate: Any,
    teacher: Any,
    class_names: Sequence[str],
) -> GateEffect:
    """Gate ``admissible_cf`` (B·K rows) and ``planted_cf`` (B·Kp rows) of ``batch`` with the
    same gate and teacher the evaluation uses (:func:`c3_core.evaluation.scoring.gate_counterfactuals`),
    operator-declared rejections included for the admissible set."""
    from c3_core.evaluation.scoring import gate_counterfactuals

    b = batch.size
    k = admissible_cf.size // b
    kp = planted_cf.size // b
    adm = gate_counterfactuals(task, batch, admissible_cf, b, k, gate, teacher, class_names, None)
    adm = adm.with_extra_rejections(admissible_reasons)
    pl = gate_counterfactuals(task, batch, planted_cf, b, kp, gate, teacher, class_names, None)
    return gate_effect(pl, planted_valid.view(b, kp), adm)


def demo_gate_effect(
    host: Any, modality: str, *, n: int | None = None, k: int = 4, seed: int = 0, gate: Any = None,
    batch_size: int = 8, device: str = "cpu",
) -> GateEffect:
    """The gate's effect on ``modality``'s demo cohort (test split, first ``n`` cases): its
    default neighbourhood (``k`` per case) as the admissible set, lesion removal (at the probe's
    margin) as the planted set, the dataset's ``default_teacher`` as the gate's teacher and, unless
    ``gate`` is given, the thresholds of its ``default_gate``.

    Raises LookupError when the demo dataset declares no teacher (the evaluated model must not
    gate itself)."""
    from c3_core.batch import collate
    from c3_core.evaluation.probe import find_probe_editors
    from c3_core.evaluation.runner import load_spec, read_gate_file, resolve_dataset, resolve_model
    from c3_core.evaluation.scoring import GateSettings
    from c3_core.neighbourhood import Neighbourhood
    from c3_core.seeding import derive_seed, generator_from_seed

    contribution, _ = resolve_dataset(host, modality, None)
    teacher_id = contribution.meta.get("default_teacher")
    if not teacher_id:
        raise LookupError(f"{contribution.id} declares no default_teacher (the evaluated model must not gate itself)")
    teacher, _ = resolve_model(host, modality, contribution, teacher_id, device, role="--teacher")
    if gate is None:
        ref = contribution.meta.get("default_gate")
        gate = read_gate_file(ref)[0] if ref else GateSettings()
    nb = Neighbourhood(load_spec(contribution, None, k, seed), host.make_operator)
    editors = find_probe_editors(host, modality)
    dataset = contribution.load()(split="test")
    total = len(dataset) if n is None else min(n, len(dataset))
    effect = GateEffect(0, 0, 0, 0)
    for start in range(0, total, batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, total))]).to(device)
        with torch.no_grad():
            cf, _, reasons = nb.draw(batch)
            gens = [generator_from_seed(derive_seed(seed, e, "planted")) for e in batch.exam_ids]
            params = [editors.removed.sample_params(batch.case_info(i), gens[i], editors.margin_mm) for i in range(batch.size)]
            planted = editors.removed.apply(batch, params)
            valid = torch.tensor([r is None for r in editors.removed.check(batch, planted, params)])
            effect = effect + measure_batch(
                teacher.task, batch, cf, reasons, planted, valid, gate, teacher, teacher.class_names
            )
    return effect
