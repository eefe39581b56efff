"""Training's randomness outside its explicit generators: the network's initialisation and the
global RNG that layers such as dropout draw from.

Both come from seeds here, so a run repeats bit for bit from its ``--seed`` and a resumed run
continues as an uninterrupted one would: the initialisation inside :func:`seeded_rng`, and the
global RNG reseeded from (base seed, global step) before every optimiser step
(:class:`StepSeeds`), each inside :func:`torch.random.fork_rng` so the process's own RNG state is
left as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from c3_core.seeding import derive_seed


@contextmanager
def kept_rng(device: str | torch.device = "cpu") -> Iterator[None]:
    """After the block, torch's global RNG (the CPU's, and ``device``'s when it is a CUDA device)
    is as it was before it, whatever the block drew or seeded."""
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        yield


@contextmanager
def seeded_rng(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Inside: torch's global RNG seeded with ``seed``; after: as it was (:func:`kept_rng`)."""
    with kept_rng(device):
        torch.manual_seed(int(seed) % (2**63))
        yield


class StepSeeds:
    """Seeds torch's global RNG before every optimiser step from (base seed, step).

    Layers such as dropout draw from the global RNG, which the Trainer leaves alone; reseeding it
    per step (the Trainer's ``on_step`` hook, and once before the first step to run) makes a
    step's dropout masks a function of (seed, step) only, so a run repeats bit for bit and a
    resumed run continues as an uninterrupted one would. Callers wrap training in
    :func:`kept_rng`, so the process's own RNG state is untouched.
    """

    def __init__(self, base: int) -> None:
        self.base = int(base)

    def __call__(self, global_step: int) -> None:
        torch.manual_seed(derive_seed(self.base, global_step) % (2**63))

    def fit(self, trainer: Any, device: str | torch.device = "cpu") -> Any:
        """``trainer.fit()`` with the global RNG seeded for the next step to run (the trainer's
        ``on_step`` hook must call this object after each step) and restored afterwards
        (:func:`kept_rng`); returns what ``fit`` returns."""
        with kept_rng(device):
            self(trainer.state.global_step)
            return trainer.fit()
