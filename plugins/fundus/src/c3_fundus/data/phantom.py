"""Procedural colour fundus photographs with diabetic-retinopathy lesions placed by grade.

Anatomy: circular field of view, choroidal background with pigmentation and texture, optic disc
(left or right eye), fovea about 2.5 disc diameters temporal to the disc, a vessel tree of arcades
leaving the disc. Lesions by grade (ETDRS-like): microaneurysms from grade 1, blot haemorrhages
from grade 2, hard exudates from grade 3, new vessels at the disc in grade 4. Rendered in linear
light and encoded as sRGB. Everything is drawn from one ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.seeding import uniform
from c3_fundus.colour import linear_to_srgb


@dataclass(frozen=True)
class FundusPhantom:
    image: Tensor  # (3, H, W) sRGB
    lesions: Tensor  # (1, H, W) union of lesion masks
    fov: Tensor  # (1, H, W) field-of-view mask
    grade: int  # true grade 0-4


def _soft_disc(yy: Tensor, xx: Tensor, cy: float, cx: float, r: float, soft: float) -> Tensor:
    d = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return torch.sigmoid((r - d) / soft)


def _smooth_noise(size: int, cells: int, g: torch.Generator) -> Tensor:
    coarse = torch.rand((1, 1, cells, cells), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def _polyline_distance(yy: Tensor, xx: Tensor, pts: Tensor) -> Tensor:
    """Distance from every pixel to a polyline ``pts (n, 2)`` (y, x)."""
    a, b = pts[:-1], pts[1:]
    p = torch.stack([yy, xx], -1).reshape(-1, 1, 2)
    ab = (b - a).unsqueeze(0)
    t = (((p - a.unsqueeze(0)) * ab).sum(-1) / (ab**2).sum(-1).clamp_min(1e-9)).clamp(0, 1)
    proj = a.unsqueeze(0) + t.unsqueeze(-1) * ab
    return ((p - proj) ** 2).sum(-1).sqrt().min(1).values.reshape(yy.shape)


def _vessel(g: torch.Generator, start: tuple[float, float], angle: float, length: float, tortuosity: float, n: int = 12) -> Tensor:
    pts = [start]
    step = length / n
    for _ in range(n):
        angle += uniform(g, -tortuosity, tortuosity)
        y, x = pts[-1]
        pts.append((y + step * math.sin(angle), x + step * math.cos(angle)))
    return torch.tensor(pts)


def render_fundus(grade: int, g: torch.Generator, size: int = 128) -> FundusPhantom:
    """One phantom of true ``grade`` (0-4)."""
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    soft = 1.5 / size
    fov = _soft_disc(yy, xx, 0.0, 0.0, 0.95, soft)
    pigment = uniform(g, 0.55, 1.25)
    base = torch.tensor([0.42, 0.11, 0.035]) * pigment
    texture = 1.0 + 0.18 * (_smooth_noise(size, 9, g) - 0.5) + 0.06 * (_smooth_noise(size, 31, g) - 0.5)
    img = base.view(3, 1, 1) * texture
    img = img * (1.0 - 0.25 * (yy**2 + xx**2))  # fundus-camera illumination fall-off
    side = 1.0 if uniform(g, 0, 1) < 0.5 else -1.0  # left or right eye
    dy, dx = uniform(g, -0.12, 0.12), side * uniform(g, 0.3, 0.42)
    r_disc = uniform(g, 0.1, 0.13)
    fy, fx = dy + uniform(g, 0.0, 0.08), dx - side * 2.5 * 2 * r_disc * 0.95
    macula = torch.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / (2 * 0.11**2))
    img = img * (1.0 - 0.35 * macula).unsqueeze(0)
    # vessel tree: four arcades and a few smaller branches leaving the disc
    vessels = torch.zeros(size, size)
    for k in range(5 + int(uniform(g, 0, 3))):
        up = 1.0 if k % 2 == 0 else -1.0
        temporal = k < 4  # the four arcades sweep towards the macula; the rest go nasal
        towards = math.pi * (0.5 + 0.5 * side) if temporal else math.pi * (0.5 - 0.5 * side)
        angle = towards - up * side * uniform(g, 0.5, 1.1)
        pts = _vessel(g, (dy, dx), angle, uniform(g, 0.7, 1.3) if temporal else uniform(g, 0.4, 0.7), 0.1)
        width = uniform(g, 0.012, 0.022)
        d = _polyline_distance(yy, xx, pts)
        vessels = torch.maximum(vessels, torch.sigmoid((width - d) / soft))
    img = img * (1.0 - vessels * torch.tensor([0.45, 0.55, 0.4]).view(3, 1, 1))
    disc = _soft_disc(yy, xx, dy, dx, r_disc, 0.02)
    img = img * (1 - disc) + disc * torch.tensor([0.85, 0.55, 0.28]).view(3, 1, 1) * pigment**0.3
    lesions = torch.zeros(size, size)
    red = torch.zeros(size, size)
    yellow = torch.zeros(size, size)

    def place(count: int, r_lo: float, r_hi: float, target: Tensor) -> Tensor:
        for _ in range(count):
            for _attempt in range(10):
                cy, cx = uniform(g, -0.7, 0.7), uniform(g, -0.7, 0.7)
                if (cy - dy) ** 2 + (cx - dx) ** 2 > (r_disc + 0.08) ** 2 and cy**2 + cx**2 < 0.75**2:
                    break
            r = uniform(g, r_lo, r_hi)
            target = torch.maximum(target, _soft_disc(yy, xx, cy, cx, r, soft * 0.8))
        return target

    counts = {
        "ma": [0, int(uniform(g, 2, 6)), int(uniform(g, 5, 12)), int(uniform(g, 8, 18)), int(uniform(g, 8, 18))][grade],
        "haem": [0, 0, int(uniform(g, 1, 4)), int(uniform(g, 4, 9)), int(uniform(g, 4, 9))][grade],
        "exud": [0, 0, int(uniform(g, 0, 2)), int(uniform(g, 3, 9)), int(uniform(g, 3, 9))][grade],
    }
    red = place(counts["ma"], 0.018, 0.026, red)
    red = place(counts["haem"], 0.035, 0.06, red)
    yellow = place(counts["exud"], 0.018, 0.035, yellow)
    if grade == 4:  # neovascularisation at the disc: fine tortuous vessels
        for _ in range(5):
            pts = _vessel(g, (dy, dx), uniform(g, 0, 2 * math.pi), 0.3, 0.9, n=8)
            nv = torch.sigmoid((0.007 - _polyline_distance(yy, xx, pts)) / soft)
            img = img * (1.0 - 0.5 * nv)
            red = torch.maximum(red, (nv > 0.5).float() * 0.0)
    img = img * (1.0 - red * torch.tensor([0.3, 0.4, 0.35]).view(3, 1, 1))
    img = img * (1 - yellow) + yellow * torch.tensor([0.6, 0.4, 0.15]).view(3, 1, 1)
    lesions = ((red > 0.5) | (yellow > 0.5)).float()
    img = img * uniform(g, 0.8, 1.2)  # exposure varies between visits
    img = img * fov
    return FundusPhantom(linear_to_srgb(img), lesions.unsqueeze(0) * (fov > 0.5), (fov > 0.5).float().unsqueeze(0), grade)
