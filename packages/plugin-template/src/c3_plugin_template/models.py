"""Model factory: weights=None random, "demo" trained and cached on first use, or a path."""

from __future__ import annotations

from torch import Tensor

from c3_core.api import ModelBundle, SmallCNN, cached_weights, load_state_dict_safely, seeded_training, train_reference
from c3_plugin_template.data.demo import TemplateDemo


def train_demo(bundle: ModelBundle) -> dict[str, Tensor]:
    """The demo recipe: a seeded initialisation (a fresh PyTorch process starts from a random
    seed) and one thread, so every run on a machine trains the same bytes."""
    with seeded_training(0):
        bundle.network.load_state_dict(SmallCNN(1, 2, width=8, depth=2).state_dict())
        return train_reference(bundle, TemplateDemo("train"), epochs=5, batch_size=16, lr=3e-3, seed=0)


def demo_cnn(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    net = SmallCNN(1, 2, width=8, depth=2)
    bundle = ModelBundle(net, "multiclass", ("absent", "present"), "display", name="example.demo_cnn")
    if weights == "demo":
        load_state_dict_safely(cached_weights("c3_plugin_template-v2", lambda: train_demo(bundle)), net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    bundle.trained = weights is not None
    return bundle.to(device)
