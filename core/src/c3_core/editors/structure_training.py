"""Seg-CFT's training: fit generator, segmentor and regressor, then counterfactually fine-tune the decoder."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.editors.nets import built_quietly, fit_one_cycle, init_parameters, minibatches, segmentation_loss
from c3_core.editors.structure_kernels import (
    SegmentorMeasure,
    dilate,
    intervene,
    segcft_objective,
    shifted_target,
    standardise,
)
from c3_core.editors.structure_model import StructureModel
from c3_core.editors.structure_nets import (
    AreaRegressor,
    ConditionalVAE,
    StructureModelConfig,
    StructureSegmentor,
    check_data,
    freeze,
)

AreaMeasure = Callable[[Tensor], Tensor]  # (B, C, S, S) model units -> (B, n_structures) area fractions


@dataclass(frozen=True)
class FineTuneConfig:
    """Counterfactual fine-tuning: ``steps`` AdamW steps on minibatches of ``batch_size`` cases.

    Each case intervenes on one structure (uniformly chosen) with an area ratio drawn uniformly
    from ``[ratio_low, ratio_high]``; ``closeness`` is lambda, ``reconstruction`` is rho,
    ``margin_px`` the dilation of the intervened structure (working-grid px) for the closeness term.
    ``target``: ``"shift"`` (default) — the measure's soft area of the intervened structure must
    move by ``(ratio - 1)`` times the area it stands for (:func:`shifted_target`; a measure without a
    ``reading``, such as a regressor, reads its own output, which makes this ``ratio`` times it);
    ``"scale"`` — ``ratio`` times the soft area (the first version: with a segmentor it moved the
    border about ``soft / hard`` times too far, 1.8x for the CXR heart). ``sharpness``: the guiding
    segmentor's soft area is ``mean sigmoid(sharpness * logit)`` (:class:`SegmentorMeasure`; used by
    :func:`fit_structure_model` and ``c3 editor fit``, which build the measure; 1 is the first
    version's plain sigmoid).
    """

    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    closeness: float = 1.0
    reconstruction: float = 1.0
    ratio_low: float = 0.7
    ratio_high: float = 1.3
    margin_px: int = 3
    target: Literal["shift", "scale"] = "shift"
    sharpness: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio_low <= self.ratio_high:
            raise ValueError(f"need 0 < ratio_low <= ratio_high, got {self.ratio_low}, {self.ratio_high}")
        if self.target not in ("shift", "scale"):
            raise ValueError(f"target must be 'shift' or 'scale', got {self.target!r}")
        if not 0.0 < self.sharpness < float("inf"):
            raise ValueError(f"sharpness must be a finite number > 0, got {self.sharpness!r}")
        if self.steps < 0 or self.batch_size < 1 or self.margin_px < 0:
            raise ValueError("steps >= 0, batch_size >= 1 and margin_px >= 0 are required")
        if self.closeness < 0 or self.reconstruction < 0:
            raise ValueError("closeness and reconstruction weights must be >= 0")


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

    fit_one_cycle(gen, minibatches(u.shape[0], cfg.batch_size, cfg.gen_epochs, generator), cfg.lr, loss)
    return gen


def train_segmentor(u: Tensor, masks: Tensor, cfg: StructureModelConfig, generator: torch.Generator) -> StructureSegmentor:
    """Fit the segmentor to binary ``masks (N, S, S, S)`` (BCE + soft Dice per structure)."""
    seg = built_quietly(lambda: StructureSegmentor(cfg)).to(u.device)
    init_parameters(seg, generator)

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        return segmentation_loss(seg(u[i]), masks[i])

    fit_one_cycle(seg, minibatches(u.shape[0], cfg.batch_size, cfg.seg_epochs, generator), cfg.lr, loss)
    return seg


def train_regressor(u: Tensor, frac: Tensor, cfg: StructureModelConfig, generator: torch.Generator) -> AreaRegressor:
    """Fit the area regressor to ``frac (N, S)`` (MSE on fractions scaled by their cohort std)."""
    reg = built_quietly(lambda: AreaRegressor(cfg)).to(u.device)
    init_parameters(reg, generator)
    scale = frac.std(0).clamp_min(1e-6)

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        return F.mse_loss(reg(u[i]) / scale, frac[i] / scale)

    fit_one_cycle(reg, minibatches(u.shape[0], cfg.batch_size, cfg.reg_epochs, generator), cfg.lr, loss)
    return reg


def segmentor_measure(seg: StructureSegmentor, sharpness: float = 1.0) -> SegmentorMeasure:
    """The Seg-CFT measure: soft area fractions ``mean sigmoid(sharpness * logit)`` of a frozen
    segmentor, with its hard ``reading`` (pass ``FineTuneConfig.sharpness``)."""
    return SegmentorMeasure(freeze(seg), sharpness)


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
    one structure ``s`` and a ratio ``r``; target ``a'``: ``A(u)`` with entry ``s`` moved by
    ``(r - 1)`` times the measure's ``reading`` of ``u`` (``cfg.target == "shift"``) or times ``r``
    (``"scale"``); loss :func:`segcft_objective` plus ``reconstruction * MSE(decode(z, c), u)``.
    Returns the tuned copy.
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
        reading = getattr(measure, "reading", None)
        h_all = a_all if reading is None or cfg.target == "scale" else torch.cat([reading(chunk) for chunk in u.split(128)])
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
        if cfg.target == "shift":
            target, scale = shifted_target(a_all[idx], h_all[idx], s, r)
        else:
            target, scale = intervene(a_all[idx], s, r), None
        region = dilate(masks[idx, s].unsqueeze(1), cfg.margin_px)  # the intervened structure, per case
        obj = segcft_objective(measure(u_cf), target, x, u_cf, region, cfg.closeness, scale)
        return obj + cfg.reconstruction * F.mse_loss(recon, x)

    fit_one_cycle(tuned, step_ids, cfg.lr, loss, params=params)
    return freeze(tuned)


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
    check_data(u, masks, config)
    if len(structures) != config.structures:
        raise ValueError(f"{len(structures)} structure names for {config.structures} structures")
    g = torch.Generator().manual_seed(int(seed))
    masks = masks.float()
    frac = masks.flatten(2).mean(2)
    mean, std = area_statistics(frac)
    seg = train_segmentor(u, masks, config, g)
    gen = train_generator(u, frac, mean, std, config, g)
    tuned = fine_tune(gen, segmentor_measure(seg, tune.sharpness), u, frac, masks, mean, std, tune, g)
    return StructureModel(config, tuple(structures), freeze(tuned).cpu(), freeze(seg).cpu(), mean.cpu(), std.cpu())
