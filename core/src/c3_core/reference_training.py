"""A plain supervised loop that plugins use to train their small demo reference models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from c3_core.batch import Batch, collate
from c3_core.model import ModelBundle


def supervised_loss(task: str) -> Callable[[Tensor, Batch], Tensor]:
    """Cross-entropy (multiclass), masked BCE (multilabel, NaN targets ignored), BCE+Dice (seg)."""
    if task == "multiclass":
        return lambda logits, b: nn.functional.cross_entropy(logits, b.label.long())  # type: ignore[union-attr]
    if task == "multilabel":

        def bce(logits: Tensor, b: Batch) -> Tensor:
            y = b.label.float()  # type: ignore[union-attr]
            keep = torch.isfinite(y)
            return nn.functional.binary_cross_entropy_with_logits(logits[keep], y[keep])

        return bce

    def seg(logits: Tensor, b: Batch) -> Tensor:
        # batch-global soft Dice (robust to tiny lesions) plus BCE with positives up-weighted
        y = (b.mask[:, :1] > 0.5).float()  # type: ignore[index]
        p = torch.sigmoid(logits[:, :1])
        dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
        bce = nn.functional.binary_cross_entropy_with_logits(logits[:, :1], y, pos_weight=torch.tensor(10.0, device=y.device))
        return bce + dice

    return seg


@torch.enable_grad()  # a demo model may be trained on first use from inside an evaluation's no-grad loop
def train_reference(
    bundle: ModelBundle,
    dataset: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    augment: Callable[[Batch, torch.Generator], Batch] | None = None,
    weight_decay: float = 1e-4,
) -> dict[str, Tensor]:
    """Train ``bundle.network`` with AdamW on ``dataset``; returns its state dict.

    Shuffling and ``augment`` draw only from a generator seeded with ``seed``. Gradients are
    enabled for the training whatever the caller's grad mode.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # weight init of any lazily built layers
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=g)
    net = bundle.network
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * len(loader)))
    loss_fn = supervised_loss(bundle.task)
    net.train()
    for _ in range(epochs):
        for batch in loader:
            if augment is not None:
                batch = augment(batch, g)
            logits = net(bundle.prepare(batch.image))
            loss = loss_fn(logits, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net.state_dict()


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread, restored after: the same float sums on any machine, and no
    oversubscription of a busy CPU (tiny tensors are also faster on one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def seeded_training(seed: int) -> Iterator[None]:
    """One thread and the global RNG seeded with ``seed`` (a seeded initialisation: a fresh PyTorch
    process starts from a random seed), the process's own RNG state and thread count restored after."""
    with one_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
