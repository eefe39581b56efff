"""The demo reference model: a small CNN on log-compressed B-mode."""

from __future__ import annotations

from torch import Tensor

from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, load_state_dict_safely
from c3_core.reference_models import SmallCNN
from c3_core.reference_training import train_reference
from c3_ultrasound.demo import CLASSES, UltrasoundDemo
from c3_ultrasound.functional import log_compress


def _prepare(x: Tensor) -> Tensor:
    return (log_compress(x) - 0.5) / 0.25


def demo_cnn(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    net = SmallCNN(1, len(CLASSES), width=8, depth=3)
    bundle = ModelBundle(net, "multiclass", CLASSES, "envelope", prepare=_prepare, name="us.demo_cnn")
    if weights == "demo":
        path = cached_weights("c3_ultrasound-demo_cnn-v1", lambda: train_reference(bundle, UltrasoundDemo("train"), epochs=8, batch_size=32, lr=3e-3, seed=0))
        load_state_dict_safely(path, net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    return bundle.to(device)
