"""Seg-CFT's networks: the conditional VAE generator, the segmentor, the area regressor and their config."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from c3_core.editors.nets import conv_block


@dataclass(frozen=True)
class StructureModelConfig:
    """Architecture and training of the generator, segmentor and regressor (square grid ``size`` px)."""

    size: int = 64
    channels: int = 1
    structures: int = 2
    widths: tuple[int, ...] = (8, 16, 32)  # generator stages (full resolution first)
    seg_widths: tuple[int, int, int] = (8, 16, 32)  # segmentor levels at S, S/2, S/4
    latent_dim: int = 32
    beta: float = 1e-3  # KL weight of the conditional VAE (per latent dimension, against per-pixel MSE)
    gen_epochs: int = 30
    seg_epochs: int = 12
    reg_epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.size % (2 ** len(self.widths)) != 0:
            raise ValueError(f"size {self.size} must be divisible by 2**{len(self.widths)}")
        if self.structures < 1 or self.channels < 1 or self.latent_dim < 1:
            raise ValueError("structures, channels and latent_dim must be >= 1")
        if len(self.seg_widths) != 3 or min(self.seg_widths) < 1:
            raise ValueError(f"seg_widths must be three positive widths, got {self.seg_widths}")

    def arch_vector(self) -> Tensor:
        """The integers that fix the state-dict layout (stored with the weights, checked on load)."""
        return torch.tensor(
            [self.size, self.channels, self.structures, self.latent_dim, *self.seg_widths, *self.widths], dtype=torch.int64
        )


class ConditionalVAE(nn.Module):
    """Encoder ``(B, C, S, S) -> (mu, logvar) (B, D)``; decoder ``(z, c) -> (B, C, S, S)``.

    The condition ``c (B, n_structures)`` enters the first linear layer and is broadcast as extra
    channels into every decoder stage, so the decoder can place the structure's boundary locally.
    """

    def __init__(self, cfg: StructureModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, k = cfg.widths, cfg.structures
        self.grid = cfg.size // 2 ** len(w)
        enc: list[nn.Module] = []
        c = cfg.channels
        for width in w:
            enc += [conv_block(c, width, stride=2), conv_block(width, width)]
            c = width
        self.encoder = nn.Sequential(*enc)
        self.to_stats = nn.Linear(w[-1] * self.grid**2, 2 * cfg.latent_dim)
        self.from_latent = nn.Linear(cfg.latent_dim + k, w[-1] * self.grid**2)
        outs = (*w[::-1][1:], w[0])
        self.stages = nn.ModuleList(
            nn.Sequential(conv_block(wi + k, wo), conv_block(wo, wo)) for wi, wo in zip(w[::-1], outs)
        )
        self.out = nn.Conv2d(w[0], cfg.channels, 3, padding=1)

    def posterior(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | u)."""
        mu, logvar = self.to_stats(self.encoder(u).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def abduct(self, u: Tensor) -> Tensor:
        """The exogenous code of ``u``: the posterior mean (deterministic)."""
        return self.posterior(u)[0]

    def decode(self, z: Tensor, c: Tensor) -> Tensor:
        h = self.from_latent(torch.cat([z, c], 1)).view(z.shape[0], self.cfg.widths[-1], self.grid, self.grid)
        for stage in self.stages:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            cmap = c.view(c.shape[0], -1, 1, 1).expand(-1, -1, h.shape[2], h.shape[3])
            h = stage(torch.cat([h, cmap], 1))
        return self.out(h)

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [*self.from_latent.parameters(), *self.stages.parameters(), *self.out.parameters()]


class StructureSegmentor(nn.Module):
    """A three-level U-Net: ``(B, C, S, S)`` -> one logit map per structure ``(B, n_structures, S, S)``."""

    def __init__(self, cfg: StructureModelConfig) -> None:
        super().__init__()
        a, b, c = cfg.seg_widths
        self.e1 = nn.Sequential(conv_block(cfg.channels, a), conv_block(a, a))
        self.e2 = nn.Sequential(conv_block(a, b, stride=2), conv_block(b, b))
        self.e3 = nn.Sequential(conv_block(b, c, stride=2), conv_block(c, c))
        self.d2 = nn.Sequential(conv_block(c + b, b), conv_block(b, b))
        self.d1 = nn.Sequential(conv_block(b + a, a), conv_block(a, a))
        self.head = nn.Conv2d(a, cfg.structures, 1)

    def forward(self, u: Tensor) -> Tensor:
        h1 = self.e1(u)
        h2 = self.e2(h1)
        h3 = self.e3(h2)
        g2 = self.d2(torch.cat([F.interpolate(h3, size=h2.shape[2:], mode="nearest"), h2], 1))
        return self.head(self.d1(torch.cat([F.interpolate(g2, size=h1.shape[2:], mode="nearest"), h1], 1)))


class AreaRegressor(nn.Module):
    """A CNN that predicts each structure's area fraction: ``(B, C, S, S) -> (B, n_structures)``."""

    def __init__(self, cfg: StructureModelConfig, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = cfg.channels
        for i in range(len(cfg.widths) + 1):
            out = width * 2 ** min(i, 2)
            layers += [conv_block(c, out, stride=2), conv_block(out, out)]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, cfg.structures)

    def forward(self, u: Tensor) -> Tensor:
        return self.head(self.features(u).mean(dim=(2, 3)))


def counterfactual(gen: ConditionalVAE, u: Tensor, c_src: Tensor, c_tgt: Tensor, z: Tensor | None = None) -> Tensor:
    """``u + decode(z, c_tgt) - decode(z, c_src)`` with ``z = abduct(u)`` unless given: the residual
    and the code are kept, only the parents change (identity when ``c_tgt == c_src``)."""
    code = gen.abduct(u) if z is None else z
    return u + (gen.decode(code, c_tgt) - gen.decode(code, c_src))


def freeze(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with gradients off (a frozen measure)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def check_data(u: Tensor, masks: Tensor, cfg: StructureModelConfig) -> None:
    """ValueError unless ``u`` is ``(N, C, S, S)`` and ``masks`` ``(N, n_structures, S, S)`` for ``cfg``."""
    s = cfg.size
    if u.ndim != 4 or tuple(u.shape[1:]) != (cfg.channels, s, s):
        raise ValueError(f"images must be (N, {cfg.channels}, {s}, {s}), got {tuple(u.shape)}")
    if masks.shape[0] != u.shape[0] or tuple(masks.shape[1:]) != (cfg.structures, s, s):
        raise ValueError(f"masks must be (N, {cfg.structures}, {s}, {s}), got {tuple(masks.shape)}")
