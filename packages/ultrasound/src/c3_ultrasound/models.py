"""The demo reference model ``us.demo_cnn``: a small CNN on log-compressed B-mode.

The bundle takes envelope amplitude (the dataset's domain); ``prepare`` log-compresses it to
B-mode with a fixed reference and dynamic range, as a scanner's display does, and standardises.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from c3_core.api import (
    Batch,
    ModelBundle,
    WeightsError,
    cached_weights,
    load_state_dict_safely,
    seeded_training,
    train_reference,
)
from c3_ultrasound.data.demo import CLASSES, UltrasoundDemo
from c3_ultrasound.domains import envelope_to_bmode
from c3_ultrasound.intensity_domains import ENVELOPE

DEMO_WEIGHTS = "c3_ultrasound-demo_cnn-v4"  # bump when the architecture, data or training change (v3: seeded init; v4: speckle v3 phantoms)


class EchoCNN(nn.Module):
    """Four stride-2 conv blocks (BatchNorm, SiLU), global average pooling, a linear head.

    Input (B, 1, H, W) B-mode (standardised); output logits (B, n_classes).
    """

    def __init__(self, n_classes: int = 2, width: int = 12, dropout: float = 0.2) -> None:
        super().__init__()
        chans = (1, width, 2 * width, 4 * width, 4 * width)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(chans[-1], n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def prepare(envelope: Tensor) -> Tensor:
    """Envelope amplitude -> standardised B-mode (60 dB dynamic range, reference amplitude 1)."""
    return (envelope_to_bmode(envelope) - 0.5) / 0.2


def _lateral_flip(batch: Batch, generator: torch.Generator) -> Batch:
    """Training augmentation: mirror half the cases left-right (the anatomy has no handedness)."""
    flip = torch.rand(batch.size, generator=generator) < 0.5
    image = torch.where(flip.view(-1, 1, 1, 1), batch.image.flip(-1), batch.image)
    mask = None if batch.mask is None else torch.where(flip.view(-1, 1, 1, 1), batch.mask.flip(-1), batch.mask)
    return batch.replace(image=image, mask=mask)


def train_demo_weights(bundle: ModelBundle) -> dict[str, Tensor]:
    """Train the demo model on the ``us.demo`` train split from a seeded initialisation (a fresh
    PyTorch process starts from a random seed), on one thread: the same bytes on every run of a
    machine (~10 s)."""
    with seeded_training(0):
        bundle.network.load_state_dict(EchoCNN(len(CLASSES)).state_dict())
        return train_reference(bundle, UltrasoundDemo("train"), epochs=12, batch_size=32, lr=4e-3, seed=0, augment=_lateral_flip)


def demo_cnn(*, weights: str | Path | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    """Model factory registered as ``us.demo_cnn``.

    ``weights``: None (random init, for tests), ``"demo"`` (trained on first use and cached), or a
    path to a safetensors / ``weights_only`` torch file for this architecture. There are no named
    pretrained weights on any hub.
    """
    if options:
        raise ValueError(f"us.demo_cnn: unknown option(s) {sorted(options)}")
    net = EchoCNN(len(CLASSES))
    bundle = ModelBundle(net, "multiclass", CLASSES, ENVELOPE, prepare=prepare, name="us.demo_cnn")
    if weights == "demo":
        load_state_dict_safely(cached_weights(DEMO_WEIGHTS, lambda: train_demo_weights(bundle)), net)
    elif weights is not None:
        path = Path(weights)
        if not path.exists() and path.suffix == "" and "/" not in str(weights):
            raise WeightsError(
                f"us.demo_cnn: no named weights {str(weights)!r}; use weights='demo' or a path to a weights file"
            )
        load_state_dict_safely(path, net)
    bundle.trained = weights is not None
    return bundle.to(device)
