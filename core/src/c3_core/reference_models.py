"""Small reference networks for plugins' embedded demo cohorts (fast to train on a CPU)."""

from __future__ import annotations

import torch
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


class PoolResNet(nn.Module):
    """A demo teacher's network (cxr and fundus use it), unlike :class:`~c3_core.reference_models.SmallCNN` in every part:
    a 5x5 stride-2 stem, then per stage a max-pool, a 1x1 projection and a residual block
    (conv-BN-ReLU-conv-BN + skip, ReLU), and a head on average *and* max pooled features."""

    def __init__(self, in_channels: int, n_outputs: int, width: int = 16, stages: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 5, stride=2, padding=2), nn.BatchNorm2d(width), nn.ReLU())
        self.down = nn.ModuleList()
        self.body = nn.ModuleList()
        c = width
        for _ in range(stages):
            self.down.append(nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 1)))
            c *= 2
            self.body.append(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                           nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)))
        self.head = nn.Linear(2 * c, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for down, body in zip(self.down, self.body):
            x = down(x)
            x = torch.relu(x + body(x))
        return self.head(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], 1))
