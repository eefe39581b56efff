"""Seeded copies of the demo model for the failure-prediction study's deep ensemble (``ExperimentSpec.members``)."""

from __future__ import annotations

import torch

from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, load_state_dict_safely
from c3_core.reference_training import train_reference


def demo_member(seed: int, device: str = "cpu") -> ModelBundle:
    """``fundus.demo_cnn`` trained exactly as the demo model (12 epochs, batch 32, lr 3e-3, the demo's
    augmentation) with ``seed``; seed 0 is the demo model itself. Trained on first use and cached."""
    from c3_fundus.data.demo import FundusDemo
    from c3_fundus.models import DEMO_WEIGHTS, _augment, demo_cnn

    if int(seed) == 0:
        return demo_cnn(weights="demo", device=device)
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation; the process's RNG is left alone
        torch.manual_seed(int(seed))
        bundle = demo_cnn()
    path = cached_weights(f"{DEMO_WEIGHTS}-seed{int(seed)}", lambda: train_reference(
        bundle, FundusDemo("train"), epochs=12, batch_size=32, lr=3e-3, seed=int(seed), augment=_augment))
    load_state_dict_safely(path, bundle.network)
    bundle.trained = True
    bundle.name = f"fundus.demo_cnn[seed {int(seed)}]"
    return bundle.to(device)
