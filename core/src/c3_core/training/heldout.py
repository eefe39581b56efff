"""How consistent a model is on held-out cases: mean D(f(x), f(x')) over admitted counterfactuals.

This is the quantity the consistency term trains down (categorical / Bernoulli KL, or soft-Dice
distance for segmentation), measured on cases the model never saw, with the neighbourhood's own
evaluation seed (not a training epoch's), so two models are compared on identical counterfactuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from c3_core.batch import collate
from c3_core.evaluation.scoring import GateSettings
from c3_core.losses import distance_for_task
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood
from c3_core.training.gating import admitted_pairs


@dataclass(frozen=True)
class HeldOutConsistency:
    """Mean distance over ``n_pairs`` admitted (case, counterfactual) pairs of ``n_cases`` cases."""

    mean_distance: float
    n_cases: int
    n_pairs: int
    admitted_fraction: float

    def to_dict(self) -> dict[str, float | int]:
        return {"mean_distance": self.mean_distance, "n_cases": self.n_cases, "n_pairs": self.n_pairs,
                "admitted_fraction": self.admitted_fraction}


@torch.no_grad()
def heldout_consistency(
    bundle: ModelBundle,
    dataset: Dataset,
    neighbourhood: Neighbourhood,
    *,
    n_cases: int | None = None,
    batch_size: int = 16,
    teacher: ModelBundle | None = None,
    gate: GateSettings | None = None,
    device: str | torch.device = "cpu",
) -> HeldOutConsistency:
    """Mean D(f(x), f(x')) over the admitted counterfactuals of the first ``n_cases`` cases."""
    n = len(dataset) if n_cases is None else min(n_cases, len(dataset))  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("held-out consistency needs at least one case")
    distance = distance_for_task(bundle.task, reduction="none")
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, collate_fn=collate)
    total, pairs, seen = 0.0, 0, 0
    for batch in loader:
        batch = batch.to(device)
        # the teacher forwards originals and counterfactuals as drawn, in one tensor
        stacked, cf, plans, rejections = neighbourhood.draw_beside(batch, stack=teacher is not None)
        admitted, _ = admitted_pairs(
            bundle.task, batch, cf, plans, rejections, gate=gate or GateSettings(), teacher=teacher,
            class_names=bundle.class_names, stacked=stacked,
        )
        flat = admitted.flatten().nonzero().squeeze(1)
        seen += admitted.numel()
        if flat.numel() == 0:
            continue
        ref = bundle.logits(batch.image).float()
        out_cf = bundle.logits(cf.image[flat.to(cf.image.device)]).float()
        d = distance(ref[(flat // neighbourhood.k).to(ref.device)], out_cf)
        total += float(d.sum())
        pairs += int(flat.numel())
    return HeldOutConsistency(total / pairs if pairs else float("nan"), n, pairs, pairs / seen if seen else 0.0)
