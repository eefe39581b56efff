"""Model factories: the demo reference CNN and timm EfficientNet-B3 (five DR grades)."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, WeightsError, load_state_dict_safely
from c3_core.reference_models import SmallCNN
from c3_core.reference_training import train_reference
from c3_fundus.data.demo import GRADE_NAMES, FundusDemo

DEMO_WEIGHTS = "c3_fundus-demo_cnn-v1"


def _normalise(x: Tensor) -> Tensor:
    return (x - 0.45) / 0.25


def _flip_augment(batch, generator):  # noqa: ANN001, ANN202
    flip = torch.rand(batch.size, generator=generator) < 0.5
    img = torch.where(flip.view(-1, 1, 1, 1), batch.image.flip(-1), batch.image)
    return batch.replace(image=img)


def demo_cnn(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    """The demo's reference model. ``weights="demo"`` trains it on first use (cached)."""
    net = SmallCNN(3, len(GRADE_NAMES), width=16, depth=4)
    bundle = ModelBundle(net, "multiclass", GRADE_NAMES, "srgb", prepare=_normalise, name="fundus.demo_cnn")
    if weights == "demo":
        path = cached_weights(
            DEMO_WEIGHTS,
            lambda: train_reference(bundle, FundusDemo("train"), epochs=10, batch_size=32, lr=3e-3, seed=0, augment=_flip_augment),
        )
        load_state_dict_safely(path, net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    return bundle.to(device)


def efficientnet_b3(*, weights: str | None = None, device: str = "cpu", pretrained: bool = False, **options: object) -> ModelBundle:
    """timm EfficientNet-B3 with a five-grade head (300 px input recommended).

    ``pretrained=True`` needs the Hugging Face hub; offline it fails at once with a clear message.
    """
    import timm

    if pretrained and (os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable()):
        raise WeightsError("fundus.efficientnet_b3: pretrained=True needs network access to the Hugging Face hub; pass weights=PATH instead")
    net = timm.create_model("efficientnet_b3", pretrained=pretrained, num_classes=len(GRADE_NAMES))
    if weights is not None:
        load_state_dict_safely(weights, net)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ModelBundle(net, "multiclass", GRADE_NAMES, "srgb", prepare=lambda x: (x - mean.to(x.device)) / std.to(x.device), name="fundus.efficientnet_b3").to(device)


def _hub_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return True
    except OSError:
        return False
