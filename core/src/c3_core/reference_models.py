"""Small reference networks for plugins' embedded demo cohorts (fast to train on a CPU)."""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """A 2-D CNN classifier: ``depth`` stride-2 conv blocks, global average pooling, a linear head.

    Input ``(B, in_channels, H, W)`` -> logits ``(B, n_outputs)``.
    """

    def __init__(self, in_channels: int, n_outputs: int, width: int = 16, depth: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(depth):
            out = width * 2 ** min(i, 3)
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.SiLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.SiLU()]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))
