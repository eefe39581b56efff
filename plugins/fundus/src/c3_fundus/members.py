"""Seeded copies of the demo model for the failure-prediction study's deep ensemble (``ExperimentSpec.members``)."""

from __future__ import annotations

from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, load_state_dict_safely


def demo_member(seed: int, device: str = "cpu") -> ModelBundle:
    """``fundus.demo_cnn`` trained by the demo model's own recipe (12 epochs, batch 32, lr 3e-3, the demo's augmentation; a seeded initialisation,
    one thread) with ``seed``; seed 0 is the shipped demo model. Other seeds train on first use and are cached."""
    from c3_fundus.models import DEMO_WEIGHTS, _train_demo, demo_cnn

    if int(seed) == 0:
        return demo_cnn(weights="demo", device=device)
    bundle = demo_cnn()
    load_state_dict_safely(cached_weights(f"{DEMO_WEIGHTS}-seed{int(seed)}", lambda: _train_demo(bundle, int(seed))), bundle.network)
    bundle.trained = True
    bundle.name = f"fundus.demo_cnn[seed {int(seed)}]"
    return bundle.to(device)
