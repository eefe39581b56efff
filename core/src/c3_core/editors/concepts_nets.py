"""Concept perturbation's networks: the autoencoder, the anatomy segmentor, their config and the concept spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from c3_core.editors.nets import conv_block

DirectionMethod = Literal["mean_difference", "probe"]


@dataclass(frozen=True)
class ConceptSpec:
    """One finding the concept model can insert or delete.

    ``label_index`` is its column in the multi-label targets; ``region`` names the anatomy
    channels whose (dilated) union bounds the edit; ``preserve`` names the anatomy channels that
    must keep ``IoU >= tau`` (and whose area the direction is made orthogonal to).
    """

    name: str
    label_index: int
    region: tuple[str, ...]
    preserve: tuple[str, ...]


@dataclass(frozen=True)
class ConceptModelConfig:
    """Architecture and training of the concept model (working grid ``size`` px, square)."""

    size: int = 64
    channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64)  # autoencoder, one stride-2 level each
    seg_widths: tuple[int, int, int] = (8, 16, 32)  # segmentor U-Net levels
    latent_dim: int = 64
    ae_epochs: int = 25
    seg_epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    latent_noise: float = 0.05  # training-time latent noise (fraction of the code's RMS): smooths the decoder
    direction: DirectionMethod = "mean_difference"
    probe_l2: float = 1e-2
    ridge: float = 1.0  # ridge penalty of the anatomy-area regressions (standardised codes)

    def __post_init__(self) -> None:
        if self.size % (2 ** len(self.widths)) != 0:
            raise ValueError(f"size {self.size} must be divisible by 2**{len(self.widths)}")
        if self.direction not in ("mean_difference", "probe"):
            raise ValueError(f"direction must be 'mean_difference' or 'probe', got {self.direction!r}")

    def arch_vector(self) -> Tensor:
        """The integers that fix the state-dict layout (stored with the weights, checked on load)."""
        return torch.tensor([self.size, self.channels, self.latent_dim, *self.widths, *self.seg_widths], dtype=torch.int64)


class ConceptAutoencoder(nn.Module):
    """Convolutional autoencoder with a vector latent: ``(B, C, S, S) <-> (B, latent_dim)``.

    Encoder: one stride-2 conv block per width; decoder: nearest upsampling and one conv block per
    level, the last level a plain conv to ``C`` channels (cheap on a CPU).
    """

    def __init__(self, cfg: ConceptModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.grid = cfg.size // 2 ** len(w)
        enc: list[nn.Module] = []
        c = cfg.channels
        for width in w:
            enc.append(conv_block(c, width, stride=2))
            c = width
        self.encoder = nn.Sequential(*enc)
        self.to_latent = nn.Linear(w[-1] * self.grid**2, cfg.latent_dim)
        self.from_latent = nn.Linear(cfg.latent_dim, w[-1] * self.grid**2)
        dec: list[nn.Module] = []
        rev = w[::-1]
        for width_in, width_out in zip(rev[:-1], rev[1:]):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), conv_block(width_in, width_out)]
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[0], cfg.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, u: Tensor) -> Tensor:
        return self.to_latent(self.encoder(u).flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        h = self.from_latent(z).view(z.shape[0], self.cfg.widths[-1], self.grid, self.grid)
        return self.decoder(h)

    def forward(self, u: Tensor) -> Tensor:
        return self.decode(self.encode(u))


class AnatomySegmentor(nn.Module):
    """A three-level U-Net: ``(B, C, S, S)`` -> anatomy logits ``(B, A, S, S)`` (sigmoid each)."""

    def __init__(self, cfg: ConceptModelConfig, n_anatomy: int) -> None:
        super().__init__()
        a, b, c = cfg.seg_widths
        self.e1 = conv_block(cfg.channels, a)
        self.e2 = conv_block(a, b, stride=2)
        self.e3 = nn.Sequential(conv_block(b, c, stride=2), conv_block(c, c))
        self.d2 = conv_block(c + b, b)
        self.d1 = conv_block(b + a, a)
        self.out = nn.Conv2d(a, n_anatomy, 1)

    def forward(self, u: Tensor) -> Tensor:
        h1 = self.e1(u)
        h2 = self.e2(h1)
        h3 = self.e3(h2)
        g2 = self.d2(torch.cat([F.interpolate(h3, size=h2.shape[2:], mode="nearest"), h2], 1))
        return self.out(self.d1(torch.cat([F.interpolate(g2, size=h1.shape[2:], mode="nearest"), h1], 1)))
