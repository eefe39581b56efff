"""Procedural PA chest radiographs in log-attenuation, with findings drawn from their causes.

Anatomy: body soft tissue, two lungs (air lowers the line integral), heart, mediastinum, ribs,
clavicles, and the abdomen below the diaphragm domes. Findings: cardiomegaly from the
cardiothoracic ratio (> 0.5), pleural effusion as dependent fluid that blunts the costophrenic
angle, consolidation as patchy lobar opacity, edema as bilateral perihilar haze, atelectasis as
volume loss (a smaller, raised left lung) with a plate-like band. Nuisance: patient size, build and
position (shift, in-plane rotation), breathing depth, soft-tissue texture and exposure (quantum
noise). Masks: channel 0 lungs, 1 heart, 2 findings.

Every case's parameters come from its own generator; rendering is batched over cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.seeding import uniform

FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
PREVALENCE = (0.25, 0.3, 0.2, 0.2, 0.3)
PARAMS = (
    "width", "density", "cy", "ry", "rx", "x0", "angle", "ctr", "rib_jitter",
    "eff_side", "eff_level", "con_side", "con_dy", "con_dx", "con_ry", "con_rx", "log_i0",
)  # fmt: skip


@dataclass(frozen=True)
class ChestPhantom:
    mu: Tensor  # (N, 1, H, W) line integrals
    mask: Tensor  # (N, 3, H, W) lungs, heart, findings
    labels: Tensor  # (N, 5) true findings


def _ellipse(yy: Tensor, xx: Tensor, cy: Tensor, cx: Tensor, ry: Tensor, rx: Tensor, soft: float) -> Tensor:
    d = torch.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return torch.sigmoid((1 - d) / soft)


def draw_case(findings: Tensor, g: torch.Generator, size: int) -> tuple[dict[str, float], Tensor]:
    """Scalar parameters of one case, and its random fields (patch, texture, quantum noise)."""
    cardio = bool(findings[1])
    p = {
        "width": uniform(g, 0.78, 0.96),  # body half-width (patient size)
        "density": uniform(g, 0.85, 1.15),  # build: soft-tissue line integral scale
        "cy": uniform(g, -0.12, -0.02),  # lung centre height (position)
        "ry": uniform(g, 0.5, 0.62),  # lung height (breathing depth)
        "rx": uniform(g, 0.26, 0.33),
        "x0": uniform(g, -0.05, 0.05),  # lateral position
        "angle": math.radians(uniform(g, -4.0, 4.0)),  # in-plane rotation
        "ctr": uniform(g, 0.53, 0.64) if cardio else uniform(g, 0.38, 0.49),
        "rib_jitter": uniform(g, -0.01, 0.01),
        "eff_side": 1.0 if uniform(g, 0, 1) < 0.5 else -1.0,
        "eff_level": uniform(g, 0.35, 0.7),
        "con_side": 1.0 if uniform(g, 0, 1) < 0.5 else -1.0,
        "con_dy": uniform(g, -0.2, 0.35),
        "con_dx": uniform(g, -0.1, 0.1),
        "con_ry": uniform(g, 0.12, 0.2),
        "con_rx": uniform(g, 0.1, 0.16),
        "log_i0": uniform(g, math.log(5e3), math.log(5e4)),  # exposure: photons per pixel
    }
    patch = F.interpolate(torch.rand((1, 1, 14, 14), generator=g), size=(size, size), mode="bicubic", align_corners=False)[0, 0]
    texture = F.interpolate(torch.rand((1, 1, 24, 24), generator=g), size=(size, size), mode="bicubic", align_corners=False)[0, 0]
    quantum = torch.randn((size, size), generator=g)
    return p, torch.stack([patch, texture, quantum])


def render_chests(findings: Tensor, generators: Sequence[torch.Generator], size: int = 128) -> ChestPhantom:
    """Radiographs for ``findings (N, 5)`` (booleans), one generator per case."""
    drawn = [draw_case(f, g, size) for f, g in zip(findings, generators, strict=True)]
    col = {k: torch.tensor([d[0][k] for d in drawn]).view(-1, 1, 1) for k in PARAMS}
    fields = torch.stack([d[1] for d in drawn])  # (N, 3, H, W)
    has = findings.float().view(-1, 5, 1, 1)
    atel, cardio, consol, edema, effusion = (has[:, i] for i in range(5))
    del cardio  # the heart size already encodes it (through ctr)

    lin = torch.linspace(-1, 1, size)
    yy0, xx0 = torch.meshgrid(lin, lin, indexing="ij")
    ca, sa = torch.cos(col["angle"]), torch.sin(col["angle"])
    xx = ca * (xx0 - col["x0"]) + sa * yy0  # patient coordinates (rotated, shifted)
    yy = -sa * (xx0 - col["x0"]) + ca * yy0
    width, cy, ry, rx = col["width"], col["cy"], col["ry"], col["rx"]
    zero = torch.zeros_like(cy)

    body = _ellipse(yy, xx, zero + 0.05, zero, zero + 1.1, width, 0.05)
    mu = 2.2 * body * (1 + 0.3 * (1 - (xx / width) ** 2).clamp_min(0)) * col["density"]
    lung_r = _ellipse(yy, xx, cy - 0.08 * atel, rx + 0.08, ry * (1 - 0.2 * atel), rx, 0.04)  # patient's left
    lung_l = _ellipse(yy, xx, cy, -(rx + 0.08), ry, rx, 0.04)
    lung = torch.maximum(lung_l, lung_r)
    mu = mu - 1.3 * lung
    dome = cy + ry * 0.85 + 0.12 * xx**2  # diaphragm: the abdomen below it is soft tissue only
    mu = mu + 0.35 * torch.sigmoid((yy - dome) / 0.04) * body * (1 - lung)
    thorax = 2 * (2 * rx + 0.08)
    heart = _ellipse(yy, xx, cy + 0.28, zero + 0.08, zero + 0.25, col["ctr"] * thorax / 2, 0.06)
    mu = mu + 0.9 * heart
    mu = mu + 0.6 * torch.sigmoid((0.1 - xx.abs()) / 0.03) * torch.sigmoid((cy + 0.3 - yy) / 0.05)
    for k in range(9):  # ribs: curved bands crossing the lungs
        y0 = cy - ry + 0.12 * k + col["rib_jitter"]
        mu = mu + 0.22 * torch.exp(-(((yy - (y0 + 0.35 * xx**2)) / 0.022) ** 2)) * body
    for side in (-1.0, 1.0):  # clavicles
        y0 = cy - ry + 0.02
        bar = torch.exp(-(((yy - (y0 - 0.25 * side * xx)) / 0.03) ** 2)) * torch.sigmoid((0.55 - (xx - side * 0.3).abs()) / 0.05)
        mu = mu + 0.35 * bar

    side = col["eff_side"]  # dependent fluid fills the costophrenic angle, meniscus shaped
    level = cy + ry * col["eff_level"]
    fluid = effusion * torch.sigmoid((yy - level - 0.25 * (xx * side - rx) ** 2) / 0.03) * torch.where(side > 0, lung_r, lung_l)
    side = col["con_side"]  # patchy air-space opacity in one lobe
    blob = _ellipse(yy, xx, cy + col["con_dy"], side * (rx + 0.08) + col["con_dx"], col["con_ry"], col["con_rx"], 0.15)
    patch = consol * blob * (0.6 + 0.8 * fields[:, 0]) * torch.where(side > 0, lung_r, lung_l)
    wings = sum(torch.exp(-(((yy - cy - 0.1) / 0.3) ** 2 + ((xx - s * 0.22) / 0.2) ** 2)) for s in (-1.0, 1.0))
    haze = edema * wings * lung  # bilateral perihilar ("bat-wing") haze
    band = atel * torch.exp(-(((yy - (cy + 0.25)) / 0.03) ** 2)) * lung_r  # plate-like band
    mu = mu + 1.1 * fluid + 0.65 * patch + 0.45 * haze + 0.5 * band
    finding = ((fluid > 0.5) | (patch > 0.4) | (haze > 0.5) | (band > 0.5)).float()

    mu = (mu + 0.12 * (fields[:, 1] - 0.5) * body).clamp_min(0.0)
    mu = (mu + torch.sqrt(torch.exp(mu) / torch.exp(col["log_i0"])) * fields[:, 2]).clamp_min(0.0)  # quantum noise
    mask = torch.stack([(lung > 0.5).float(), (heart > 0.5).float(), finding], dim=1)
    return ChestPhantom(mu.unsqueeze(1).float(), mask, findings.float())
