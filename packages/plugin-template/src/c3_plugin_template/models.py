"""Model factory: weights=None random, "demo" trained and cached on first use, or a path."""

from __future__ import annotations

from c3_core.api import ModelBundle, SmallCNN, cached_weights, load_state_dict_safely, train_reference
from c3_plugin_template.data.demo import TemplateDemo


def demo_cnn(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    net = SmallCNN(1, 2, width=8, depth=2)
    bundle = ModelBundle(net, "multiclass", ("absent", "present"), "display", name="example.demo_cnn")
    if weights == "demo":
        load_state_dict_safely(cached_weights("c3_plugin_template-v1", lambda: train_reference(bundle, TemplateDemo("train"), epochs=5, batch_size=16, lr=3e-3, seed=0)), net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    bundle.trained = weights is not None
    return bundle.to(device)
