"""Concept perturbation's training: fit the autoencoder and segmentor, derive one direction per concept."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.editors.concepts_directions import (
    mean_difference_direction,
    probe_direction,
    project_out,
    ridge_direction,
    within_class_std,
)
from c3_core.editors.concepts_model import ConceptModel
from c3_core.editors.concepts_nets import AnatomySegmentor, ConceptAutoencoder, ConceptModelConfig, ConceptSpec
from c3_core.editors.nets import built_quietly, fit_one_cycle, init_parameters, minibatches, segmentation_loss


def train_autoencoder(u: Tensor, cfg: ConceptModelConfig, generator: torch.Generator) -> ConceptAutoencoder:
    """Fit the autoencoder to working-grid images ``u (N, C, S, S)`` (MSE; AdamW, one-cycle)."""
    ae = built_quietly(lambda: ConceptAutoencoder(cfg)).to(u.device)
    init_parameters(ae, generator)
    steps = minibatches(u.shape[0], cfg.batch_size, cfg.ae_epochs, generator)

    def loss(idx: Tensor) -> Tensor:
        x = u[idx.to(u.device)]
        z = ae.encode(x)
        if cfg.latent_noise > 0:
            rms = z.detach().pow(2).mean().sqrt()
            noise = torch.randn(z.shape, generator=generator).to(z.device)
            z = z + cfg.latent_noise * rms * noise
        return F.mse_loss(ae.decode(z), x)

    fit_one_cycle(ae, steps, cfg.lr, loss)
    return ae


def train_segmentor(u: Tensor, masks: Tensor, cfg: ConceptModelConfig, generator: torch.Generator) -> AnatomySegmentor:
    """Fit the anatomy segmentor to ``masks (N, A, S, S)`` in {0, 1} (BCE + soft Dice per channel)."""
    seg = built_quietly(lambda: AnatomySegmentor(cfg, masks.shape[1])).to(u.device)
    init_parameters(seg, generator)
    steps = minibatches(u.shape[0], cfg.batch_size, cfg.seg_epochs, generator)

    def loss(idx: Tensor) -> Tensor:
        i = idx.to(u.device)
        return segmentation_loss(seg(u[i]), masks[i])

    fit_one_cycle(seg, steps, cfg.lr, loss)
    return seg


@torch.no_grad()
def encode_all(ae: ConceptAutoencoder, u: Tensor, batch_size: int = 128) -> Tensor:
    """Latent codes ``(N, D)`` of working-grid images, in chunks."""
    return torch.cat([ae.encode(chunk) for chunk in u.split(batch_size)])


def fit_concept_model(
    u: Tensor,
    labels: Tensor,
    anatomy_masks: Tensor,
    *,
    concepts: Sequence[ConceptSpec],
    anatomy: Sequence[str],
    config: ConceptModelConfig,
    seed: int,
) -> ConceptModel:
    """Train the autoencoder and segmentor and derive one direction per concept.

    ``u (N, C, S, S)`` working-grid images in model units; ``labels (N, F)`` multi-label targets
    (NaN = unknown, skipped per concept); ``anatomy_masks (N, A, S, S)`` in {0, 1}, channels named
    by ``anatomy``. Deterministic for a given ``seed`` on one device.
    """
    s = config.size
    if u.ndim != 4 or tuple(u.shape[1:]) != (config.channels, s, s):
        raise ValueError(f"images must be (N, {config.channels}, {s}, {s}), got {tuple(u.shape)}")
    if anatomy_masks.shape[0] != u.shape[0] or anatomy_masks.shape[1] != len(anatomy) or tuple(anatomy_masks.shape[2:]) != (s, s):
        raise ValueError(f"anatomy masks must be (N, {len(anatomy)}, {s}, {s}), got {tuple(anatomy_masks.shape)}")
    g = torch.Generator().manual_seed(int(seed))
    ae = train_autoencoder(u, config, g)
    seg = train_segmentor(u, anatomy_masks.float(), config, g)
    z = encode_all(ae, u).cpu()
    areas = anatomy_masks.float().flatten(2).mean(2).cpu()  # (N, A) area fractions
    dirs, sigmas, seps = [], [], []
    for spec in concepts:
        y = labels[:, spec.label_index].cpu()
        known = torch.isfinite(y)
        zk, pos = z[known], y[known] > 0.5
        v = mean_difference_direction(zk, pos) if config.direction == "mean_difference" else probe_direction(zk, pos, config.probe_l2)
        protect = [  # a structure whose area never varies in the cohort has no direction to avoid
            ridge_direction(z, areas[:, anatomy.index(a)], config.ridge) for a in spec.preserve if float(areas[:, anatomy.index(a)].std()) > 0
        ]
        v = project_out(v, protect)
        sigma = within_class_std(zk, pos, v)
        proj = zk.double() @ v.double()
        dirs.append(v)
        sigmas.append(sigma)
        seps.append(float((proj[pos].mean() - proj[~pos].mean()) / sigma))
    model = ConceptModel(
        config, tuple(concepts), tuple(anatomy), ae.cpu(), seg.cpu(), torch.stack(dirs).float(),
        torch.tensor(sigmas, dtype=torch.float32), torch.tensor(seps, dtype=torch.float32), z.std(0).float(),
    )  # fmt: skip
    return model
