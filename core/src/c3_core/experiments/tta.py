"""The TTA row: a trained model whose forward is test-time augmentation (``tta_predict``).

The evaluation runner scores a :class:`~c3_core.model.ModelBundle` through ``logits`` and
``probabilities``; :func:`tta_bundle` wraps a bundle so that ``logits`` returns the logits of
the TTA-averaged probabilities (log p for softmax tasks, logit(p) for sigmoid ones; p is clamped
to [1e-7, 1 - 1e-7] first), and ``probabilities`` therefore gives the averaged probabilities back.
Every forward call reseeds its generator with the same seed, so a batch's TTA views depend only
on the batch, never on what was evaluated before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from c3_core.batch import Batch
from c3_core.model import ModelBundle
from c3_core.seeding import generator_from_seed

EPS = 1e-7


def probabilities_to_logits(probs: Tensor, softmax: bool) -> Tensor:
    """Inverse of the bundle's output map: log p (softmax) or logit(p) (sigmoid), p clamped."""
    p = probs.double().clamp(EPS, 1.0 - EPS)
    return (p.log() if softmax else p.log() - (-p).log1p()).float()


def tta_bundle(
    base: ModelBundle, *, modality: str, spacing: Sequence[float], views: int, seed: int
) -> ModelBundle:
    """``base`` evaluated with ``tta_predict`` over ``views`` augmented views per image.

    ``spacing`` (mm per spatial axis) is the cohort's voxel size, given to the augmentations'
    batch; ``seed`` seeds every forward call's generator.
    """
    from c3_core.training.baselines import tta_predict

    if views < 1:
        raise ValueError(f"TTA needs at least one view, got {views}")
    softmax = base.task == "multiclass"

    def forward(batch: Batch) -> Tensor:
        return base.logits(batch.image)

    def infer(_net: nn.Module, image: Tensor) -> Tensor:
        batch = Batch(
            image=image, exam_ids=tuple(f"tta-{i}" for i in range(image.shape[0])), modality=modality,
            domain=base.input_domain, spacing=tuple(tuple(float(s) for s in spacing) for _ in range(image.shape[0])),
        )
        g = generator_from_seed(seed, image.device)
        with torch.no_grad():
            probs = tta_predict(forward, batch, g, n=views, task=base.task)
        return probabilities_to_logits(probs, softmax or (base.task == "segmentation" and probs.shape[1] > 1))

    return ModelBundle(
        base.network, base.task, tuple(base.class_names), base.input_domain, infer=infer,
        name=f"{base.name or 'model'}+tta{views}", metadata=dict(base.metadata),
    )
