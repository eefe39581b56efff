"""A dataset wrapper that hands each case to a plain training loop with its K counterfactuals.

For users with their own MONAI or PyTorch loop: wrap the training dataset, use
:func:`collate_counterfactuals` in the DataLoader, and feed the outputs to
:class:`c3_core.losses.ConsistencyObjective`. Counterfactuals are drawn per case (so DataLoader
workers share the work) with the seed ``derive_seed(spec seed, "train-epoch", epoch)`` — the same
draws `c3 train` makes in that epoch; call :meth:`CounterfactualDataset.set_epoch` each epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from c3_core.batch import Batch, Sample, collate, concat
from c3_core.neighbourhood import Neighbourhood
from c3_core.seeding import derive_seed

Item = tuple[Sample, Batch, list[str | None]]


def epoch_neighbourhood(neighbourhood: Neighbourhood, epoch: int) -> Neighbourhood:
    """N(x) reseeded for training epoch ``epoch`` (fresh counterfactuals every epoch)."""
    return neighbourhood.reseeded(derive_seed(neighbourhood.spec.seed, "train-epoch", int(epoch)))


class CounterfactualDataset(Dataset):
    """Item ``i``: ``(sample, counterfactuals, rejections)``.

    ``counterfactuals`` is a :class:`~c3_core.batch.Batch` of K rows (the case's neighbourhood
    draws, labels and masks carried along, spatial operators moving the mask, editors that
    declare ``changes`` returning the edited image's mask / label, unknown parts NaN or -1);
    ``rejections`` holds each counterfactual's operator-declared rejection reason or None. The
    learned part of the validity gate needs a model, so it is applied in the loop (see
    :func:`c3_core.training.gating.admitted_pairs`, which also drops every counterfactual whose
    edit changed the task's truth: :func:`c3_core.truth.truth_change`).
    """

    def __init__(self, dataset: Dataset, neighbourhood: Neighbourhood, *, epoch: int = 0) -> None:
        self.dataset = dataset
        self.neighbourhood = neighbourhood
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._nb = epoch_neighbourhood(self.neighbourhood, self.epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Item:
        sample = self.dataset[index]
        cf, _, rejections = self._nb.draw(collate([sample]))
        return sample, cf, list(rejections[0])


def collate_counterfactuals(items: Sequence[Item]) -> tuple[Batch, Batch, list[list[str | None]]]:
    """``(originals (B rows), counterfactuals (B·K rows, case-major: row i·K + k), rejections B x K)``."""
    if not items:
        raise ValueError("cannot collate an empty list of cases")
    return collate([s for s, _, _ in items]), concat([cf for _, cf, _ in items]), [r for _, _, r in items]
