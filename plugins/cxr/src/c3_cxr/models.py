"""Model factories: the demo reference CNN and torchxrayvision's DenseNet-121 (five findings)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, WeightsError, load_state_dict_safely
from c3_core.reference_models import SmallCNN
from c3_core.reference_training import train_reference
from c3_cxr.data.phantom import FINDINGS
from c3_cxr.domains import to_display

DEMO_WEIGHTS = "c3_cxr-demo_cnn-v1"


def _prepare(x: Tensor) -> Tensor:
    return (to_display(x) - 0.5) / 0.25


def demo_cnn(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    """Small reference CNN; ``weights="demo"`` trains it on the demo cohort on first use."""
    net = SmallCNN(1, len(FINDINGS), width=16, depth=4)
    bundle = ModelBundle(net, "multilabel", FINDINGS, "log_attenuation", prepare=_prepare, name="cxr.demo_cnn")
    if weights == "demo":
        from c3_cxr.data.demo import ChestDemo

        path = cached_weights(DEMO_WEIGHTS, lambda: train_reference(bundle, ChestDemo("train"), epochs=12, batch_size=32, lr=3e-3, seed=0))
        load_state_dict_safely(path, net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    bundle.trained = weights is not None
    return bundle.to(device)


# torchxrayvision's names for the five findings (its classifier rows), in FINDINGS order
XRV_NAMES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion")


class _XrvFive(nn.Module):
    """torchxrayvision DenseNet-121 features with a five-finding linear head (raw logits)."""

    def __init__(self) -> None:
        super().__init__()
        import torchxrayvision as xrv

        self.backbone = xrv.models.DenseNet(weights=None, op_threshs=None)
        self.head = nn.Linear(1024, len(FINDINGS))

    def head_from_backbone(self) -> bool:
        """Copy the backbone classifier's rows for the five findings into the head (pretrained
        weights then score them as torchxrayvision does); False if one is not among its outputs."""
        names = list(getattr(self.backbone, "pathologies", []))
        if not all(n in names for n in XRV_NAMES):
            return False
        rows = [names.index(n) for n in XRV_NAMES]
        with torch.no_grad():
            self.head.weight.copy_(self.backbone.classifier.weight[rows])
            self.head.bias.copy_(self.backbone.classifier.bias[rows])
        return True

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone.features2(x))


def densenet121(*, weights: str | None = None, device: str = "cpu", pretrained: str | None = None, **options: object) -> ModelBundle:
    """DenseNet-121 at 224 px, 1 channel, xrv's [−1024, 1024] input scale.

    ``pretrained`` names torchxrayvision weights (e.g. ``"densenet121-res224-chex"``); they are
    downloaded by torchxrayvision and fail with a clear message offline.
    """
    net = _XrvFive()
    if pretrained is not None:
        import torchxrayvision as xrv

        try:
            net.backbone = xrv.models.DenseNet(weights=pretrained, op_threshs=None)
        except Exception as exc:  # noqa: BLE001 - xrv raises several kinds when offline
            raise WeightsError(f"cxr.densenet121: cannot load torchxrayvision weights {pretrained!r} (offline?): {exc}") from None
    trained = pretrained is not None and net.head_from_backbone()
    if weights is not None:
        load_state_dict_safely(weights, net)
        trained = True

    def prepare(x: Tensor) -> Tensor:
        d = torch.nn.functional.interpolate(to_display(x), size=(224, 224), mode="bilinear", align_corners=False)
        return d * 2048.0 - 1024.0

    return ModelBundle(
        net, "multilabel", FINDINGS, "log_attenuation", prepare=prepare, name="cxr.densenet121", trained=trained
    ).to(device)
