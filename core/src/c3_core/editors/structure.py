"""Segmentor-guided counterfactual fine-tuning (Seg-CFT): set a structure's area, measure it with a segmentor.

The pieces, on a square working grid of ``size`` px (images in model units ``u``):

* a **conditional generator** with an abduct/decode interface: ``z = abduct(u)`` (the posterior
  mean of a conditional VAE) and ``decode(z, c)``, where ``c`` holds the standardised area
  fractions of the ``S`` structures (``(B, S)``). A counterfactual with target areas ``a'`` keeps
  the abducted exogenous terms of ``u`` — its code ``z`` *and* its reconstruction residual
  ``u - decode(z, c)`` — and changes only the parents: ``u' = u + decode(z, c') - decode(z, c)``,
  so an edit with ``a' = a`` is exactly the identity;
* a frozen **area measure** ``A(u) -> (B, S)`` area fractions: the soft area (mean sigmoid) of a
  segmentor's logits (Seg-CFT) or the output of an area regressor (the regressor-guided baseline);
* **fine-tuning** of the decoder (the encoder stays frozen, so abduction does not move) on
  ``L = mean_s |A(u')_s - a'_s| / a'_s + lambda * mean(|u' - u| outside R) + rho * MSE(decode(z, c), u)``,
  where ``a'`` is ``ratio`` times the measure's own reading of the intervened structure on the
  original (the other structures keep their reading), and ``R`` is the intervened structure's
  mask, dilated by ``margin_px`` (the closeness constraint);
* **metrics**: MAPE (percent) and MAE of the area (working-grid px and mm² from the spacing),
  and leakage, the share of ``sum |x' - x|`` that lies outside the dilated structure.

:class:`StructureAreaEditor` is the generic interventional editor: a plugin subclass names the
structure, the map to model units and how to load its fitted :class:`StructureModel`.
Randomness (initialisation, VAE noise, minibatches, fine-tuning targets) only from explicit generators.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from c3_core.batch import Batch, CaseInfo
from c3_core.editors.nets import built_quietly, conv_block, init_parameters, model_on_device
from c3_core.operator import Editor, Severity
from c3_core.truth import set_unknown

AreaMeasure = Callable[[Tensor], Tensor]  # (B, C, S, S) model units -> (B, n_structures) area fractions


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class FineTuneConfig:
    """Counterfactual fine-tuning: ``steps`` AdamW steps on minibatches of ``batch_size`` cases.

    Each case intervenes on one structure (uniformly chosen) with an area ratio drawn uniformly
    from ``[ratio_low, ratio_high]``; ``closeness`` is lambda, ``reconstruction`` is rho,
    ``margin_px`` the dilation of the intervened structure (working-grid px) for the closeness term.
    """

    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    closeness: float = 1.0
    reconstruction: float = 1.0
    ratio_low: float = 0.7
    ratio_high: float = 1.3
    margin_px: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio_low <= self.ratio_high:
            raise ValueError(f"need 0 < ratio_low <= ratio_high, got {self.ratio_low}, {self.ratio_high}")
        if self.steps < 0 or self.batch_size < 1 or self.margin_px < 0:
            raise ValueError("steps >= 0, batch_size >= 1 and margin_px >= 0 are required")
        if self.closeness < 0 or self.reconstruction < 0:
            raise ValueError("closeness and reconstruction weights must be >= 0")


# ---------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------




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


# ---------------------------------------------------------------------------------------------
# functional kernels
# ---------------------------------------------------------------------------------------------
def to_grid(u: Tensor, size: int) -> Tensor:
    """Resample ``(B, C, H, W)`` to ``(B, C, size, size)`` (bilinear, antialiased when shrinking)."""
    if tuple(u.shape[2:]) == (size, size):
        return u
    shrink = u.shape[2] > size or u.shape[3] > size
    return F.interpolate(u, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def from_grid(v: Tensor, shape: Sequence[int]) -> Tensor:
    """Resample working-grid maps back to the image grid ``shape`` (bilinear)."""
    if tuple(v.shape[2:]) == tuple(shape):
        return v
    return F.interpolate(v, size=tuple(shape), mode="bilinear", align_corners=False)


def mask_to_grid(mask: Tensor, size: int) -> Tensor:
    """Binary masks ``(B, M, H, W)`` resampled to the working grid (area average, then >= 0.5)."""
    return (to_grid(mask.float(), size) >= 0.5).float()


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of ``(B, M, H, W)`` masks by a (2r+1)-px square (max-pool)."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius)


def soft_area(logits: Tensor) -> Tensor:
    """Differentiable area fraction per structure: ``mean(sigmoid(logits))`` over pixels, ``(B, S)``."""
    return torch.sigmoid(logits).flatten(2).mean(2)


def hard_area_px(logits: Tensor) -> Tensor:
    """Segmented area in pixels per structure (``logit > 0``), ``(B, S)`` float64."""
    return (logits > 0).flatten(2).sum(2).double()


def standardise(frac: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Generator condition from area fractions: ``(frac - mean) / std`` per structure."""
    return (frac - mean) / std


def counterfactual(gen: ConditionalVAE, u: Tensor, c_src: Tensor, c_tgt: Tensor, z: Tensor | None = None) -> Tensor:
    """``u + decode(z, c_tgt) - decode(z, c_src)`` with ``z = abduct(u)`` unless given: the residual
    and the code are kept, only the parents change (identity when ``c_tgt == c_src``)."""
    code = gen.abduct(u) if z is None else z
    return u + (gen.decode(code, c_tgt) - gen.decode(code, c_src))


def intervene(frac: Tensor, structure: Tensor, ratio: Tensor) -> Tensor:
    """Area fractions ``(B, S)`` with structure ``structure[b]`` scaled by ``ratio[b]``, the others kept."""
    scale = torch.ones_like(frac)
    scale[torch.arange(frac.shape[0], device=frac.device), structure] = ratio.to(frac.dtype)
    return frac * scale


def relative_area_error(measured: Tensor, target: Tensor) -> Tensor:
    """``|measured - target| / target`` elementwise (the Seg-CFT area term); targets must be > 0."""
    return (measured - target).abs() / target.clamp_min(1e-6)


def outside_change(u: Tensor, u_cf: Tensor, region: Tensor) -> Tensor:
    """Mean ``|u' - u|`` over pixels outside ``region (B, 1, S, S)`` in {0, 1}, per case ``(B,)``."""
    return ((u_cf - u).abs() * (1.0 - region)).flatten(1).mean(1)


def region_weight(structure: Tensor, region_px: int) -> Tensor:
    """Blend weight ``(B, 1, S, S)`` in [0, 1] from a structure mask (bool or {0, 1}): 1 within
    ``region_px`` px of it, feathered (a triangle kernel of radius 2) to exactly 0 beyond ``region_px + 4``."""
    out = dilate(structure.float(), region_px + 2)
    for _ in range(2):
        out = F.avg_pool2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return out.clamp(0.0, 1.0)


def segcft_objective(
    measured: Tensor, target: Tensor, u: Tensor, u_cf: Tensor, region: Tensor, closeness: float
) -> Tensor:
    """``mean |A(u') - a'| / a' + closeness * mean |u' - u| outside region`` (a scalar)."""
    return relative_area_error(measured, target).mean() + closeness * outside_change(u, u_cf, region).mean()


# -- metrics ------------------------------------------------------------------------------------
def _check_pair(measured: Tensor, target: Tensor, what: str) -> None:
    if measured.shape != target.shape:
        raise ValueError(f"{what}: measured {tuple(measured.shape)} and target {tuple(target.shape)} differ in shape")
    if measured.numel() == 0:
        raise ValueError(f"{what}: no values")


def mape(measured: Tensor, target: Tensor) -> float:
    """Mean absolute percentage error ``100 * mean |m - t| / t`` (percent); targets must be > 0."""
    _check_pair(measured, target, "mape")
    if bool((target <= 0).any()):
        raise ValueError("mape: every target area must be > 0 (an empty target has no percentage error)")
    return float(100.0 * ((measured.double() - target.double()).abs() / target.double()).mean())


def mae(measured: Tensor, target: Tensor) -> float:
    """Mean absolute error ``mean |m - t|`` in the inputs' unit."""
    _check_pair(measured, target, "mae")
    return float((measured.double() - target.double()).abs().mean())


def pixel_area_mm2(spacing: Sequence[float], image_shape: Sequence[int], size: int) -> float:
    """Area in mm² of one working-grid pixel for an image of ``image_shape`` px at ``spacing`` mm/px."""
    if len(spacing) != 2 or len(image_shape) != 2:
        raise ValueError(f"pixel_area_mm2 needs 2-D spacing and shape, got {spacing}, {image_shape}")
    return float(spacing[0] * image_shape[0] / size * spacing[1] * image_shape[1] / size)


def leakage(original: Tensor, edited: Tensor, region: Tensor) -> Tensor:
    """Share of ``sum |x' - x|`` outside ``region (B, 1, H, W)`` (bool or {0, 1}), per case ``(B,)``.

    Convention: 0 for a case that did not change at all (no change, nothing leaked).
    """
    if region.shape[0] != original.shape[0] or region.shape[2:] != original.shape[2:]:
        raise ValueError(f"leakage: region {tuple(region.shape)} does not match images {tuple(original.shape)}")
    diff = (edited.double() - original.double()).abs().sum(1, keepdim=True)
    total = diff.flatten(1).sum(1)
    outside = (diff * (1.0 - region.double())).flatten(1).sum(1)
    return torch.where(total > 0, outside / total.clamp_min(1e-300), torch.zeros_like(total))


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def _minibatches(n: int, batch_size: int, epochs: int, g: torch.Generator) -> list[Tensor]:
    return [chunk for _ in range(epochs) for chunk in torch.randperm(n, generator=g).split(batch_size)]


def _fit(net: nn.Module, steps: list[Tensor], lr: float, loss_fn: Callable[[Tensor], Tensor], params: Any = None) -> None:
    opt = torch.optim.AdamW(net.parameters() if params is None else params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, len(steps)))
    net.train()
    for idx in steps:
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()


def _check_data(u: Tensor, masks: Tensor, cfg: StructureModelConfig) -> None:
    s = cfg.size
    if u.ndim != 4 or tuple(u.shape[1:]) != (cfg.channels, s, s):
        raise ValueError(f"images must be (N, {cfg.channels}, {s}, {s}), got {tuple(u.shape)}")
    if masks.shape[0] != u.shape[0] or tuple(masks.shape[1:]) != (cfg.structures, s, s):
        raise ValueError(f"masks must be (N, {cfg.structures}, {s}, {s}), got {tuple(masks.shape)}")


def train_generator(
    u: Tensor, frac: Tensor, mean: Tensor, std: Tensor, cfg: StructureModelConfig, generator: torch.Generator
) -> ConditionalVAE:
    """Fit the conditional VAE to ``u (N, C, S, S)`` given area fractions ``frac (N, S)`` (MSE + beta KL)."""
    gen = built_quietly(lambda: ConditionalVAE(cfg)).to(u.device)
    init_parameters(gen, generator)
    c_all = standardise(frac, mean, std)

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        x, c = u[i], c_all[i]
        mu, logvar = gen.posterior(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return F.mse_loss(gen.decode(z, c), x) + cfg.beta * kl

    _fit(gen, _minibatches(u.shape[0], cfg.batch_size, cfg.gen_epochs, generator), cfg.lr, loss)
    return gen


def train_segmentor(u: Tensor, masks: Tensor, cfg: StructureModelConfig, generator: torch.Generator) -> StructureSegmentor:
    """Fit the segmentor to binary ``masks (N, S, S, S)`` (BCE + soft Dice per structure)."""
    seg = built_quietly(lambda: StructureSegmentor(cfg)).to(u.device)
    init_parameters(seg, generator)

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        logits, y = seg(u[i]), masks[i]
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * y).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + y.sum((0, 2, 3)) + 1)
        return F.binary_cross_entropy_with_logits(logits, y) + dice.mean()

    _fit(seg, _minibatches(u.shape[0], cfg.batch_size, cfg.seg_epochs, generator), cfg.lr, loss)
    return seg


def train_regressor(u: Tensor, frac: Tensor, cfg: StructureModelConfig, generator: torch.Generator) -> AreaRegressor:
    """Fit the area regressor to ``frac (N, S)`` (MSE on fractions scaled by their cohort std)."""
    reg = built_quietly(lambda: AreaRegressor(cfg)).to(u.device)
    init_parameters(reg, generator)
    scale = frac.std(0).clamp_min(1e-6)

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        return F.mse_loss(reg(u[i]) / scale, frac[i] / scale)

    _fit(reg, _minibatches(u.shape[0], cfg.batch_size, cfg.reg_epochs, generator), cfg.lr, loss)
    return reg


def freeze(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with gradients off (a frozen measure)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def segmentor_measure(seg: StructureSegmentor) -> AreaMeasure:
    """The Seg-CFT measure: soft area fractions of a frozen segmentor."""
    freeze(seg)
    return lambda v: soft_area(seg(v))


def regressor_measure(reg: AreaRegressor) -> AreaMeasure:
    """The baseline measure: area fractions predicted by a frozen regressor."""
    freeze(reg)
    return lambda v: reg(v)


def fine_tune(
    gen: ConditionalVAE,
    measure: AreaMeasure,
    u: Tensor,
    frac: Tensor,
    masks: Tensor,
    mean: Tensor,
    std: Tensor,
    cfg: FineTuneConfig,
    generator: torch.Generator,
) -> ConditionalVAE:
    """Counterfactual fine-tuning of a copy of ``gen``'s decoder against the frozen ``measure``.

    ``u (N, C, S, S)`` images, ``frac (N, S)`` their area fractions (the generator's conditions),
    ``masks (N, S, S, S)`` binary structure masks (for the closeness region). Per step and case:
    one structure ``s`` and a ratio ``r``; target ``a' = A(u)`` with entry ``s`` times ``r``; loss
    :func:`segcft_objective` plus ``reconstruction * MSE(decode(z, c), u)``. Returns the tuned copy.
    """
    tuned = copy.deepcopy(gen).to(u.device)
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = tuned.decoder_parameters()
    for p in params:
        p.requires_grad_(True)
    n, k = u.shape[0], frac.shape[1]
    with torch.no_grad():
        z_all = torch.cat([tuned.abduct(chunk) for chunk in u.split(128)])
        a_all = torch.cat([measure(chunk) for chunk in u.split(128)])
    c_all = standardise(frac, mean, std)
    draws = []
    for _ in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=generator)
        s = torch.randint(0, k, idx.shape, generator=generator)
        r = cfg.ratio_low + (cfg.ratio_high - cfg.ratio_low) * torch.rand(idx.shape, generator=generator, dtype=torch.float64)
        draws.append((idx, s, r))
    step_ids = [torch.tensor([i]) for i in range(len(draws))]

    def loss(step: Tensor) -> Tensor:
        idx, s, r = (t.to(u.device) for t in draws[int(step)])
        x, z, c = u[idx], z_all[idx], c_all[idx]
        c_tgt = standardise(intervene(frac[idx], s, r), mean, std)
        recon = tuned.decode(z, c)
        u_cf = x + (tuned.decode(z, c_tgt) - recon)
        target = intervene(a_all[idx], s, r)
        region = dilate(masks[idx, s].unsqueeze(1), cfg.margin_px)  # the intervened structure, per case
        obj = segcft_objective(measure(u_cf), target, x, u_cf, region, cfg.closeness)
        return obj + cfg.reconstruction * F.mse_loss(recon, x)

    _fit(tuned, step_ids, cfg.lr, loss, params=params)
    return freeze(tuned)


# ---------------------------------------------------------------------------------------------
# the fitted model
# ---------------------------------------------------------------------------------------------
@dataclass
class StructureModel:
    """A (fine-tuned) conditional generator, its guiding segmentor and the area standardisation.

    ``frac_mean``/``frac_std`` ``(S,)`` map area fractions to generator conditions; ``structures``
    names the segmentor's channels.
    """

    config: StructureModelConfig
    structures: tuple[str, ...]
    generator: ConditionalVAE
    segmentor: StructureSegmentor
    frac_mean: Tensor
    frac_std: Tensor

    def index(self, name: str) -> int:
        if name not in self.structures:
            raise KeyError(f"unknown structure {name!r} (known: {', '.join(self.structures)})")
        return self.structures.index(name)

    @torch.no_grad()
    def segment_logits(self, u_small: Tensor) -> Tensor:
        return self.segmentor(u_small)

    @torch.no_grad()
    def edit_delta(self, u_small: Tensor, structure: int, ratio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Working-grid change ``decode(z, c') - decode(z, c)`` for ``ratio (B,)`` on ``structure``.

        ``c`` comes from the segmentor's soft areas of ``u_small``. Returns the change, the
        original's segmentor logits and its hard area in px ``(B, S)``.
        """
        logits = self.segmentor(u_small)
        frac = soft_area(logits)
        s = torch.full((u_small.shape[0],), structure, dtype=torch.long, device=u_small.device)
        c_src = standardise(frac, self.frac_mean, self.frac_std)
        c_tgt = standardise(intervene(frac, s, ratio), self.frac_mean, self.frac_std)
        z = self.generator.abduct(u_small)
        delta = self.generator.decode(z, c_tgt) - self.generator.decode(z, c_src)
        return delta, logits, hard_area_px(logits)

    def to(self, device: torch.device | str) -> StructureModel:
        """A copy on ``device`` (networks frozen)."""
        gen = built_quietly(lambda: ConditionalVAE(self.config))
        gen.load_state_dict(self.generator.state_dict())
        seg = built_quietly(lambda: StructureSegmentor(self.config))
        seg.load_state_dict(self.segmentor.state_dict())
        return StructureModel(
            self.config, self.structures, freeze(gen.to(device)), freeze(seg.to(device)),
            self.frac_mean.to(device), self.frac_std.to(device),
        )  # fmt: skip

    def state_dict(self) -> dict[str, Tensor]:
        """A flat tensor dict for safetensors (architecture included, checked on load)."""
        out = {f"gen.{k}": v for k, v in self.generator.state_dict().items()}
        out.update({f"seg.{k}": v for k, v in self.segmentor.state_dict().items()})
        out.update({"frac.mean": self.frac_mean, "frac.std": self.frac_std, "meta.arch": self.config.arch_vector()})
        return out

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Tensor], config: StructureModelConfig, structures: Sequence[str], source: str = "<state>"
    ) -> StructureModel:
        """Rebuild from :meth:`state_dict` output; raises ValueError naming ``source`` on a mismatch."""
        for key in ("meta.arch", "frac.mean", "frac.std"):
            if key not in state:
                raise ValueError(f"{source}: not a structure model (missing {key!r})")
        if not torch.equal(state["meta.arch"].cpu(), config.arch_vector()):
            raise ValueError(f"{source}: architecture {state['meta.arch'].tolist()} != config {config.arch_vector().tolist()}")
        if len(structures) != config.structures:
            raise ValueError(f"{source}: {len(structures)} structure names for {config.structures} structures")
        gen = built_quietly(lambda: ConditionalVAE(config))
        seg = built_quietly(lambda: StructureSegmentor(config))
        try:
            gen.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("gen.")})
            seg.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("seg.")})
        except RuntimeError as exc:
            raise ValueError(f"{source}: weights do not fit the architecture: {str(exc).splitlines()[0]}") from None
        return cls(config, tuple(structures), freeze(gen), freeze(seg), state["frac.mean"].float(), state["frac.std"].float())


def area_statistics(frac: Tensor) -> tuple[Tensor, Tensor]:
    """Cohort mean and standard deviation ``(S,)`` of area fractions ``(N, S)`` (std floored)."""
    return frac.mean(0), frac.std(0).clamp_min(1e-6)


def fit_structure_model(
    u: Tensor,
    masks: Tensor,
    *,
    structures: Sequence[str],
    config: StructureModelConfig,
    tune: FineTuneConfig,
    seed: int,
) -> StructureModel:
    """Train segmentor and generator, then Seg-CFT fine-tune the decoder against the frozen segmentor.

    ``u (N, C, S, S)`` working-grid images in model units, ``masks (N, n_structures, S, S)`` in
    {0, 1}. Deterministic for a given ``seed`` on one device.
    """
    _check_data(u, masks, config)
    if len(structures) != config.structures:
        raise ValueError(f"{len(structures)} structure names for {config.structures} structures")
    g = torch.Generator().manual_seed(int(seed))
    masks = masks.float()
    frac = masks.flatten(2).mean(2)
    mean, std = area_statistics(frac)
    seg = train_segmentor(u, masks, config, g)
    gen = train_generator(u, frac, mean, std, config, g)
    tuned = fine_tune(gen, segmentor_measure(seg), u, frac, masks, mean, std, tune, g)
    return StructureModel(config, tuple(structures), freeze(tuned).cpu(), freeze(seg).cpu(), mean.cpu(), std.cpu())


# ---------------------------------------------------------------------------------------------
# evaluation of a generator's interventions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InterventionMetrics:
    """Area errors of counterfactuals measured by a segmentor, and leakage (see module docstring)."""

    structure: str
    n: int
    mape_percent: float
    mae_px: float
    mae_mm2: float
    leakage: float  # mean share of |u' - u| outside the dilated structure

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


@torch.no_grad()
def evaluate_interventions(
    gen: ConditionalVAE,
    judge: Callable[[Tensor], Tensor],
    u: Tensor,
    frac: Tensor,
    masks: Tensor,
    mean: Tensor,
    std: Tensor,
    *,
    structures: Sequence[str],
    ratios: Sequence[float],
    pixel_mm2: float,
    margin_px: int,
    bound: Tensor | None = None,
) -> list[InterventionMetrics]:
    """Intervene on every structure of every case with every ratio; measure with ``judge`` (a
    frozen segmentor: images -> logits ``(B, S, ...)``).

    Target: ``ratio`` times the judge's hard area of the original; measured: the judge's hard area
    of the counterfactual. Leakage region: the structure's mask in the original united with the
    judge's mask of the counterfactual, dilated by ``margin_px``. ``bound (N, S, S, S)``: optional
    blend weights per structure (what the editor applies with ``region_px``), multiplied into the
    generator's change.
    """
    _check_data(u, masks, gen.cfg)
    if frac.shape != (u.shape[0], gen.cfg.structures):
        raise ValueError(f"area fractions must be (N, {gen.cfg.structures}), got {tuple(frac.shape)}")
    if bound is not None and bound.shape != masks.shape:
        raise ValueError(f"bound must be (N, S, S, S) like the masks {tuple(masks.shape)}, got {tuple(bound.shape)}")
    out: list[InterventionMetrics] = []
    base_logits = torch.cat([judge(chunk) for chunk in u.split(64)])
    base_px = hard_area_px(base_logits)
    c_src = standardise(frac, mean, std)
    z = torch.cat([gen.abduct(chunk) for chunk in u.split(64)])
    for s, name in enumerate(structures):
        measured, target, leaks = [], [], []
        for r in ratios:
            sel = torch.full((u.shape[0],), s, dtype=torch.long, device=u.device)
            ratio = torch.full((u.shape[0],), float(r), dtype=torch.float64, device=u.device)
            c_tgt = standardise(intervene(frac, sel, ratio), mean, std)
            change = gen.decode(z, c_tgt) - gen.decode(z, c_src)
            u_cf = u + (change if bound is None else change * bound[:, s : s + 1])
            logits = judge(u_cf)
            measured.append(hard_area_px(logits)[:, s])
            target.append(base_px[:, s] * float(r))
            region = dilate(torch.maximum(masks[:, s : s + 1], (logits[:, s : s + 1] > 0).float()), margin_px)
            leaks.append(leakage(u, u_cf, region))
        m, t = torch.cat(measured).cpu(), torch.cat(target).cpu()
        keep = t > 0
        out.append(InterventionMetrics(
            name, int(keep.sum()), mape(m[keep], t[keep]), mae(m[keep], t[keep]),
            mae(m[keep], t[keep]) * pixel_mm2, float(torch.cat(leaks).mean()),
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# the generic editor
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AreaParams:
    """``ratio``: target area / the segmented area of the structure in the original (> 0)."""

    ratio: float


class StructureAreaEditor(Editor[AreaParams]):
    """Set one structure's area to ``ratio`` times its segmented area (interventional).

    Plugin subclasses set ``id``, ``modality``, ``domain``, ``structure``, ``summary``,
    ``expected_effect``, the affine map to model units (``intensity_offset``, ``intensity_scale``),
    an optional ``lower_bound`` of the domain, and implement :meth:`load_model` (CPU).

    Severity is the relative area change ``|ratio - 1|``. Options: ``direction`` — ``"grow"``,
    ``"shrink"`` or ``"either"`` (the sign is drawn from the generator); ``tolerance`` — the
    relative area error above which :meth:`check` rejects a counterfactual; ``region_px`` — the
    change is applied only near the structure: weight 1 on the segmented structure dilated by
    ``region_px`` working-grid px, feathered to exactly 0 beyond ``region_px + 4`` px (``None``:
    the generator's change everywhere, as trained).

    Changes: on every case whose ratio is not 1, the returned mask holds the frozen segmentor's
    masks of the *edited* image in the structures' channels (``mask_channels``: the batch mask
    channel of each of the model's structures, default channel ``s`` for structure ``s``), and
    its other channels are unknown (NaN: the edit may have moved them); the label is
    :meth:`expected_label` (default unknown: NaN, or -1 for a class index).
    """

    intent: ClassVar[Literal["admissible", "interventional"]] = "interventional"
    version: ClassVar[str] = "1"
    preserves: ClassVar[frozenset[str]] = frozenset()  # the structure (its mask, maybe the label) changes
    changes: ClassVar[frozenset[str]] = frozenset({"mask", "label", "structure_area"})
    mask_channels: ClassVar[tuple[int, ...] | None] = None
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    severity: ClassVar[Severity] = Severity("relative area change", "fraction of the segmented area", 0.0, 0.3, (0.1, 0.2, 0.3))
    params_type: ClassVar[type] = AreaParams
    structure: ClassVar[str]
    intensity_offset: ClassVar[float] = 0.0
    intensity_scale: ClassVar[float] = 1.0
    lower_bound: ClassVar[float | None] = None

    def __init__(self, direction: str = "either", tolerance: float = 0.15, region_px: int | None = 4) -> None:
        if direction not in ("grow", "shrink", "either"):
            raise ValueError(f"{self.id}: direction must be 'grow', 'shrink' or 'either', got {direction!r}")
        if not (math.isfinite(float(tolerance)) and float(tolerance) > 0):
            raise ValueError(f"{self.id}: tolerance must be a finite number > 0, got {tolerance!r}")
        if region_px is not None and (isinstance(region_px, bool) or not isinstance(region_px, int) or region_px < 0):
            raise ValueError(f"{self.id}: region_px must be an integer >= 0 or None, got {region_px!r}")
        self.direction = direction
        self.tolerance = float(tolerance)
        self.region_px = region_px
        self._models: dict[str, StructureModel] = {}

    @classmethod
    @abstractmethod
    def load_model(cls) -> StructureModel:
        """The fitted structure model on the CPU (trained and cached by the plugin on first use)."""

    def model(self, device: torch.device | str) -> StructureModel:
        """The structure model on ``device`` (loaded once per editor instance and device)."""
        return model_on_device(self._models, device, self.load_model, lambda m, d: m.to(d))

    # -- params ---------------------------------------------------------------------------
    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> AreaParams:
        if self.direction == "either":
            sign = 1.0 if float(torch.rand((), generator=generator, device=generator.device)) < 0.5 else -1.0
        else:
            sign = 1.0 if self.direction == "grow" else -1.0
        return AreaParams(ratio=1.0 + sign * float(severity))

    # -- apply ----------------------------------------------------------------------------
    def _model_units(self, image: Tensor) -> Tensor:
        return (image - self.intensity_offset) / self.intensity_scale

    def _apply(self, batch: Batch, params: Sequence[AreaParams]) -> Batch:
        for p in params:
            if not (math.isfinite(p.ratio) and p.ratio > 0):
                raise ValueError(f"{self.id}: ratio must be a finite number > 0, got {p.ratio!r}")
        model = self.model(batch.device)
        small = to_grid(self._model_units(batch.image), model.config.size)
        ratio = torch.tensor([p.ratio for p in params], dtype=small.dtype, device=batch.device)
        index = model.index(self.structure)
        delta, logits, _ = model.edit_delta(small, index, ratio)
        if self.region_px is not None:
            delta = delta * self.region_weight(logits[:, index : index + 1] > 0)
        out = batch.image + (from_grid(delta, batch.spatial_shape) * self.intensity_scale).to(batch.image.dtype)
        if self.lower_bound is not None:
            out = out.clamp_min(self.lower_bound)
        edited = (ratio != 1.0).cpu()
        label = None if batch.label is None else self.expected_label(batch.label, edited)
        if batch.mask is None:
            return batch.replace(image=out, label=label)
        channels = self.structure_channels(model, batch.mask.shape[1])
        mask = set_unknown(batch.mask, edited)
        seg = self.segmented_mask(batch.replace(image=out)).to(mask.dtype)
        mask[:, channels] = torch.where(edited.to(mask.device).view(-1, 1, 1, 1), seg, batch.mask[:, channels])
        return batch.replace(image=out, mask=mask, label=label)

    def structure_channels(self, model: StructureModel, n_channels: int) -> list[int]:
        """The batch mask channel of each of the model's structures (ValueError if absent)."""
        channels = list(range(len(model.structures)) if self.mask_channels is None else self.mask_channels)
        if len(channels) != len(model.structures) or max(channels) >= n_channels:
            raise ValueError(
                f"{self.id}: the mask has {n_channels} channel(s); the structures {list(model.structures)} "
                f"need channels {channels}"
            )
        return channels

    @torch.no_grad()
    def segmented_mask(self, batch: Batch) -> Tensor:
        """The frozen segmentor's masks ``(B, S, H, W)`` in {0, 1} of ``batch``'s images at the image
        grid (logits resampled bilinearly, then ``> 0``)."""
        model = self.model(batch.device)
        logits = model.segment_logits(to_grid(self._model_units(batch.image), model.config.size))
        return (from_grid(logits, batch.spatial_shape) > 0).to(batch.image.dtype)

    def expected_label(self, label: Tensor, edited: Tensor) -> Tensor:
        """The label of the edited images: ``label`` with the rows ``edited (B,)`` bool unknown
        (a plugin that knows what the structure's size means for its findings states them)."""
        return set_unknown(label, edited)

    def region_weight(self, structure: Tensor) -> Tensor:
        """:func:`region_weight` of the segmented structure with this editor's ``region_px``."""
        return region_weight(structure, 0 if self.region_px is None else self.region_px)

    # -- measurement and validity ---------------------------------------------------------
    @torch.no_grad()
    def measure_area_mm2(self, batch: Batch) -> Tensor:
        """The segmentor's area of the structure per case ``(B,)`` in mm² (float64, CPU)."""
        model = self.model(batch.device)
        size = model.config.size
        px = hard_area_px(model.segment_logits(to_grid(self._model_units(batch.image), size)))[:, model.index(self.structure)]
        mm2 = torch.tensor([pixel_area_mm2(sp, batch.spatial_shape, size) for sp in batch.spacing], dtype=torch.float64)
        return px.cpu() * mm2

    def target_area_mm2(self, original: Batch, params: Sequence[AreaParams]) -> Tensor:
        """The declared effect per case ``(B,)``: ``ratio`` times the original's segmented area, mm²."""
        return self.measure_area_mm2(original) * torch.tensor([p.ratio for p in params], dtype=torch.float64)

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[AreaParams]) -> list[str | None]:
        """Reject a case whose segmented area misses the target by more than ``tolerance`` (relative)."""
        target = self.target_area_mm2(original, params)
        got = self.measure_area_mm2(counterfactual)
        reasons: list[str | None] = []
        for t, a in zip(target.tolist(), got.tolist()):
            if t <= 0:
                reasons.append(f"{self.id}: no {self.structure} segmented in the original, no area to set")
            elif abs(a - t) / t > self.tolerance:
                reasons.append(f"{self.id}: {self.structure} area {a:.0f} mm² misses the target {t:.0f} mm² by {100 * abs(a - t) / t:.1f} % (> {100 * self.tolerance:g} %)")
            else:
                reasons.append(None)
        return reasons

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d.update(structure=cls.structure)
        return d
