"""Procedural PA chest radiographs in log-attenuation, with findings drawn from their causes.

Anatomy: body soft tissue, two lungs (air lowers the line integral), heart, mediastinum, ribs,
clavicles and diaphragm domes. Findings: cardiomegaly from the cardiothoracic ratio (> 0.5),
pleural effusion as dependent fluid that blunts the costophrenic angle, consolidation as patchy
lobar opacity, edema as bilateral perihilar haze, atelectasis as volume loss (a smaller, raised
lung) with a plate-like band. Masks: channel 0 lungs, 1 heart, 2 findings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.seeding import uniform

FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
PREVALENCE = (0.25, 0.3, 0.2, 0.2, 0.3)


@dataclass(frozen=True)
class ChestPhantom:
    mu: Tensor  # (1, H, W) line integrals
    mask: Tensor  # (3, H, W) lungs, heart, findings
    labels: Tensor  # (5,) true findings


def _ellipse(yy: Tensor, xx: Tensor, cy: float, cx: float, ry: float, rx: float, soft: float) -> Tensor:
    d = torch.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return torch.sigmoid((1 - d) / soft)


def _smooth_noise(size: int, cells: int, g: torch.Generator) -> Tensor:
    coarse = torch.rand((1, 1, cells, cells), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def render_chest(findings: Tensor, g: torch.Generator, size: int = 128) -> ChestPhantom:
    """One radiograph with the given true findings (5 booleans)."""
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    soft = 0.04
    atel, cardio, consol, edema, effusion = (bool(v) for v in findings)
    width = uniform(g, 0.8, 0.95)
    body = _ellipse(yy, xx, 0.05, 0.0, 1.1, width, 0.05)
    mu = 2.2 * body * (1 + 0.3 * (1 - (xx / width) ** 2).clamp_min(0)) * uniform(g, 0.85, 1.15)
    cy = uniform(g, -0.12, -0.02)
    ry, rx = uniform(g, 0.52, 0.62), uniform(g, 0.27, 0.33)
    lungs = []
    for side in (-1.0, 1.0):
        s_ry, s_cy = ry, cy
        if atel and side > 0:  # volume loss of the left lower lobe: the lung shrinks and rises
            s_ry, s_cy = ry * 0.8, cy - 0.08
        lungs.append(_ellipse(yy, xx, s_cy, side * (rx + 0.08), s_ry, rx, soft))
    lung = torch.maximum(*lungs)
    mu = mu - 1.3 * lung
    # heart: its width against the thoracic width gives the cardiothoracic ratio
    thorax = 2 * (2 * rx + 0.08)
    ctr = uniform(g, 0.53, 0.64) if cardio else uniform(g, 0.38, 0.49)
    hr = ctr * thorax / 2
    heart = _ellipse(yy, xx, cy + 0.28, 0.08, 0.25, hr, 0.06)
    mu = mu + 0.9 * heart
    mediastinum = torch.sigmoid((0.1 - xx.abs()) / 0.03) * torch.sigmoid((cy + 0.3 - yy) / 0.05)
    mu = mu + 0.6 * mediastinum
    for k in range(9):  # ribs: curved bands crossing the lungs
        y0 = cy - ry + 0.12 * k + uniform(g, -0.01, 0.01)
        band = torch.exp(-(((yy - (y0 + 0.35 * xx**2)) / 0.022) ** 2))
        mu = mu + 0.22 * band * body
    for side in (-1.0, 1.0):  # clavicles
        y0 = cy - ry + 0.02
        bar = torch.exp(-(((yy - (y0 - 0.25 * side * xx)) / 0.03) ** 2)) * torch.sigmoid((0.55 - (xx - side * 0.3).abs()) / 0.05)
        mu = mu + 0.35 * bar
    finding_mask = torch.zeros(size, size)
    if effusion:  # dependent fluid: fills the costophrenic angle, meniscus shaped
        side = 1.0 if uniform(g, 0, 1) < 0.5 else -1.0
        level = cy + ry * uniform(g, 0.35, 0.7)
        fluid = torch.sigmoid((yy - level - 0.25 * (xx * side - rx) ** 2) / 0.03) * lungs[int(side > 0)]
        mu = mu + 1.1 * fluid
        finding_mask = torch.maximum(finding_mask, (fluid > 0.5).float())
    if consol:  # patchy air-space opacity in one lobe
        side = 1.0 if uniform(g, 0, 1) < 0.5 else -1.0
        cyc, cxc = cy + uniform(g, -0.2, 0.35), side * (rx + 0.08) + uniform(g, -0.1, 0.1)
        blob = _ellipse(yy, xx, cyc, cxc, uniform(g, 0.12, 0.2), uniform(g, 0.1, 0.16), 0.15)
        patch = blob * (0.6 + 0.8 * _smooth_noise(size, 14, g)) * lungs[int(side > 0)]
        mu = mu + 0.65 * patch
        finding_mask = torch.maximum(finding_mask, (patch > 0.4).float())
    if edema:  # bilateral perihilar ("bat-wing") haze
        haze = sum(torch.exp(-(((yy - cy - 0.1) / 0.3) ** 2 + ((xx - s * 0.22) / 0.2) ** 2)) for s in (-1.0, 1.0)) * lung
        mu = mu + 0.45 * haze
        finding_mask = torch.maximum(finding_mask, (haze > 0.5).float())
    if atel:  # plate-like band above the raised hemidiaphragm
        band = torch.exp(-(((yy - (cy + 0.25)) / 0.03) ** 2)) * lungs[1]
        mu = mu + 0.5 * band
        finding_mask = torch.maximum(finding_mask, (band > 0.5).float())
    texture = 0.12 * (_smooth_noise(size, 24, g) - 0.5) * body
    mu = (mu + texture).clamp_min(0.0)
    mask = torch.stack([(lung > 0.5).float(), (heart > 0.5).float(), finding_mask])
    return ChestPhantom(mu.unsqueeze(0).float(), mask, findings.float())
