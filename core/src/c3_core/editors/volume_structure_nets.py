"""The 3-D networks of the lesion-volume (structure-volume) editor and their configuration.

* :class:`VolumeCVAE` — a conditional VAE with a *spatial* latent (``latent_channels`` maps at
  ``grid / 2**len(widths)``): ``abduct(u)`` is the posterior mean, ``decode(z, c)`` broadcasts the
  standardised volume fractions ``c (B, S)`` as extra channels into every decoder stage;
* :class:`VolumeSegmentor` — a two-level 3-D U-Net, one logit map per structure;
* :class:`VolumeRegressor` — a 3-D CNN that predicts each structure's volume fraction (the
  regressor-guided baseline's measure).

Initialisation draws only from an explicit ``torch.Generator`` (:func:`init_parameters3d`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class VolumeStructureConfig:
    """Architecture and training of the 3-D generator, segmentor and regressor on ``grid`` (D, H, W)."""

    grid: tuple[int, int, int] = (36, 40, 20)
    channels: int = 1
    structures: int = 1
    widths: tuple[int, ...] = (12, 24)  # generator stages (full resolution first), each halves the grid
    latent_channels: int = 4
    seg_widths: tuple[int, int] = (8, 16)
    beta: float = 1e-3  # KL weight (per latent element, against per-voxel MSE)
    gen_epochs: int = 20
    seg_epochs: int = 20
    reg_epochs: int = 20
    batch_size: int = 8
    lr: float = 5e-3
    seg_patch: tuple[int, int, int] | None = (16, 16, 16)  # the segmentor trains on crops (None: whole volumes)
    seg_passes: int = 4  # segmentor minibatches per case and epoch when training on crops

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(s) for s in self.grid))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "seg_widths", tuple(int(w) for w in self.seg_widths))
        if self.seg_patch is not None:
            object.__setattr__(self, "seg_patch", tuple(int(p) for p in self.seg_patch))
            if len(self.seg_patch) != 3 or any(p > n or p % 2 for p, n in zip(self.seg_patch, self.grid)):
                raise ValueError(f"seg_patch must be three even sizes within the grid {self.grid}, got {self.seg_patch}")
        if len(self.grid) != 3 or min(self.grid) < 4:
            raise ValueError(f"grid must be three sizes >= 4, got {self.grid}")
        step = 2 ** len(self.widths)
        if any(s % step for s in self.grid):
            raise ValueError(f"every grid size must be divisible by 2**{len(self.widths)} = {step}, got {self.grid}")
        if any(s % 2 for s in self.grid):
            raise ValueError(f"grid sizes must be even (the segmentor halves them), got {self.grid}")
        if min(self.channels, self.structures, self.latent_channels, *self.widths, *self.seg_widths) < 1:
            raise ValueError("channels, structures, latent_channels and widths must be >= 1")
        if len(self.seg_widths) != 2:
            raise ValueError(f"seg_widths must be two widths, got {self.seg_widths}")
        if min(self.gen_epochs, self.seg_epochs, self.reg_epochs, self.batch_size) < 1 or not 0 < self.lr < 1:
            raise ValueError("epochs and batch_size must be >= 1 and lr in (0, 1)")

    def arch_vector(self) -> Tensor:
        """The integers that fix the state-dict layout (stored with the weights, checked on load)."""
        return torch.tensor(
            [3, *self.grid, self.channels, self.structures, self.latent_channels, *self.seg_widths, *self.widths],
            dtype=torch.int64,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VolumeStructureConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def seg_epochs_effective(self) -> int:
        """Segmentor epochs counting ``seg_passes`` crop passes per epoch when training on crops."""
        return self.seg_epochs * (self.seg_passes if self.seg_patch is not None else 1)


def init_parameters3d(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every Conv1d/2d/3d and Linear layer from ``generator`` with PyTorch's default scheme."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


SEGMENTOR_PRIOR_LOGIT = -4.0  # the head's initial bias: a structure is rare (sigmoid(-4) = 1.8 %)


def init_segmentor3d(module: nn.Module, generator: torch.Generator) -> None:
    """:func:`init_parameters3d`, then the segmentor head's bias set to :data:`SEGMENTOR_PRIOR_LOGIT`
    (small structures: training starts from "background everywhere", not from 50 %)."""
    init_parameters3d(module, generator)
    head = getattr(module, "head", None)
    if isinstance(head, nn.Conv3d) and head.bias is not None:
        with torch.no_grad():
            head.bias.fill_(SEGMENTOR_PRIOR_LOGIT)


def conv_block3d(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 x 3 convolution (``stride``), GroupNorm (4 groups when ``cout`` allows, else 1), SiLU."""
    groups = 4 if cout % 4 == 0 else 1
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(groups, cout), nn.SiLU())


def _cmap(c: Tensor, like: Tensor) -> Tensor:
    return c.view(c.shape[0], -1, 1, 1, 1).expand(-1, -1, *like.shape[2:]).to(like.dtype)


class VolumeCVAE(nn.Module):
    """Encoder ``(B, C, D, H, W) -> (mu, logvar)`` spatial latents; decoder ``(z, c) -> (B, C, D, H, W)``."""

    def __init__(self, cfg: VolumeStructureConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, k = cfg.widths, cfg.structures
        enc: list[nn.Module] = []
        c = cfg.channels
        for width in w:
            enc += [conv_block3d(c, width, stride=2), conv_block3d(width, width)]
            c = width
        self.encoder = nn.Sequential(*enc)
        self.to_stats = nn.Conv3d(w[-1], 2 * cfg.latent_channels, 1)
        self.from_latent = conv_block3d(cfg.latent_channels + k, w[-1])
        outs = (*w[::-1][1:], w[0])
        self.stages = nn.ModuleList(
            nn.Sequential(conv_block3d(wi + k, wo), conv_block3d(wo, wo)) for wi, wo in zip(w[::-1], outs)
        )
        self.out = nn.Conv3d(w[0] + k, cfg.channels, 3, padding=1)

    def posterior(self, u: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.to_stats(self.encoder(u)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def abduct(self, u: Tensor) -> Tensor:
        """The exogenous code of ``u``: the posterior mean (deterministic)."""
        return self.posterior(u)[0]

    def decode(self, z: Tensor, c: Tensor) -> Tensor:
        h = self.from_latent(torch.cat([z, _cmap(c, z)], 1))
        for stage in self.stages:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = stage(torch.cat([h, _cmap(c, h)], 1))
        return self.out(torch.cat([h, _cmap(c, h)], 1))

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [*self.from_latent.parameters(), *self.stages.parameters(), *self.out.parameters()]


class VolumeSegmentor(nn.Module):
    """A two-level 3-D U-Net: ``(B, C, D, H, W)`` -> one logit map per structure ``(B, S, D, H, W)``."""

    def __init__(self, cfg: VolumeStructureConfig) -> None:
        super().__init__()
        a, b = cfg.seg_widths
        self.e1 = nn.Sequential(conv_block3d(cfg.channels, a), conv_block3d(a, a))
        self.e2 = nn.Sequential(conv_block3d(a, b, stride=2), conv_block3d(b, b))
        self.d1 = nn.Sequential(conv_block3d(b + a, a), conv_block3d(a, a))
        self.head = nn.Conv3d(a, cfg.structures, 1)

    def forward(self, u: Tensor) -> Tensor:
        h1 = self.e1(u)
        h2 = self.e2(h1)
        return self.head(self.d1(torch.cat([F.interpolate(h2, size=h1.shape[2:], mode="nearest"), h1], 1)))


class VolumeRegressor(nn.Module):
    """A 3-D CNN predicting each structure's volume fraction: ``(B, C, D, H, W) -> (B, S)``."""

    def __init__(self, cfg: VolumeStructureConfig, width: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cfg.channels
        for i in range(3):
            out = width * 2**i
            layers += [conv_block3d(c, out, stride=2 if i else 1), conv_block3d(out, out)]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, cfg.structures)

    def forward(self, u: Tensor) -> Tensor:
        return self.head(self.features(u).mean(dim=(2, 3, 4)))
