"""Procedural colour fundus photographs with diabetic-retinopathy lesions placed by grade.

Anatomy: a circular field of view; a choroidal background whose pigmentation, colour and texture
vary between people; uneven illumination that varies between visits; an optic disc (left or right
eye, varying position and size) with a cup; a fovea about 2.5 disc diameters temporal to the disc;
a branching vessel tree (arcades from the disc with side branches). Lesions by grade (ETDRS-like):
microaneurysms from grade 1, blot haemorrhages from grade 2, hard exudates from grade 3 (a few at
grade 2), new vessels at the disc at grade 4. Rendered in linear light and encoded as sRGB; all
randomness from one ``torch.Generator``. Lesion masks are three channels: microaneurysms,
haemorrhages, exudates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from c3_core.seeding import uniform
from c3_fundus.colour import linear_to_srgb

FOV_RADIUS = 0.95  # in [-1, 1] image coordinates


@dataclass(frozen=True)
class FundusPhantom:
    image: Tensor  # (3, H, W) sRGB
    lesions: Tensor  # (3, H, W) microaneurysm, haemorrhage, exudate masks in {0, 1}
    fov: Tensor  # (1, H, W) field-of-view mask in {0, 1}
    grade: int  # true grade 0-4


def _smooth_noise(size: int, cells: int, g: torch.Generator) -> Tensor:
    coarse = torch.rand((1, 1, cells, cells), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def _walk(g: torch.Generator, start: tuple[float, float], angle: float, length: float, tortuosity: float, n: int) -> list[tuple[float, float]]:
    pts = [start]
    step = length / n
    for _ in range(n):
        angle += uniform(g, -tortuosity, tortuosity)
        y, x = pts[-1]
        pts.append((y + step * math.sin(angle), x + step * math.cos(angle)))
    return pts


def _distance_to_path(pts: list[tuple[float, float]], size: int) -> np.ndarray:
    """Distance (px) of every pixel to a polyline given in [-1, 1] coordinates (rasterised + EDT)."""
    raster = np.ones((size, size), dtype=bool)
    scale = (size - 1) / 2.0
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        n = max(2, int(math.hypot(y1 - y0, x1 - x0) * scale * 2) + 1)
        ys = np.rint((np.linspace(y0, y1, n) + 1) * scale).astype(int)
        xs = np.rint((np.linspace(x0, x1, n) + 1) * scale).astype(int)
        ok = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
        raster[ys[ok], xs[ok]] = False
    if raster.all():
        return np.full((size, size), 1e6, dtype=np.float32)
    return ndimage.distance_transform_edt(raster).astype(np.float32)


def _blob(yy: Tensor, xx: Tensor, cy: float, cx: float, r: float, soft: float) -> Tensor:
    """A soft disc of radius ``r`` at (cy, cx) ([-1, 1] units), computed only in a local window."""
    size = yy.shape[0]
    scale = (size - 1) / 2.0
    reach = (r + 8 * soft) * scale + 2
    r0, r1 = max(0, int((cy + 1) * scale - reach)), min(size, int((cy + 1) * scale + reach) + 1)
    c0, c1 = max(0, int((cx + 1) * scale - reach)), min(size, int((cx + 1) * scale + reach) + 1)
    out = torch.zeros(size, size)
    if r0 < r1 and c0 < c1:
        wy, wx = yy[r0:r1, c0:c1], xx[r0:r1, c0:c1]
        out[r0:r1, c0:c1] = torch.sigmoid((r - torch.sqrt((wy - cy) ** 2 + (wx - cx) ** 2)) / soft)
    return out


def render_fundus(grade: int, g: torch.Generator, size: int = 128) -> FundusPhantom:
    """One phantom of true ``grade`` (0-4), drawn from ``g``."""
    px = 2.0 / (size - 1)  # one pixel in [-1, 1] units
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    fov = ((yy**2 + xx**2) <= FOV_RADIUS**2).float()
    # background: pigmentation (melanin darkens and shifts towards brown), texture, illumination
    pigment = uniform(g, 0.5, 1.3)
    base = torch.tensor([0.45 * pigment**0.7, 0.12 * pigment, 0.04 * pigment**1.3])
    texture = 1.0 + 0.2 * (_smooth_noise(size, 9, g) - 0.5) + 0.08 * (_smooth_noise(size, 33, g) - 0.5)
    img = base.view(3, 1, 1) * texture
    ly, lx, spread = uniform(g, -0.3, 0.3), uniform(g, -0.3, 0.3), uniform(g, 0.15, 0.35)
    img = img * (1.0 - spread * ((yy - ly) ** 2 + (xx - lx) ** 2))
    # optic disc and fovea
    side = 1.0 if uniform(g, 0, 1) < 0.5 else -1.0  # right or left eye
    dy, dx = uniform(g, -0.15, 0.15), side * uniform(g, 0.3, 0.45)
    r_disc = uniform(g, 0.09, 0.13)
    fy, fx = dy + uniform(g, 0.0, 0.1), dx - side * 2.5 * 2 * r_disc * uniform(g, 0.85, 1.05)
    macula = torch.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / (2 * 0.12**2))
    img = img * (1.0 - uniform(g, 0.25, 0.45) * macula).unsqueeze(0)
    # vessel tree: arcades from the disc with side branches (veins wider and darker than arteries)
    vessels = torch.zeros(size, size)
    paths: list[tuple[list[tuple[float, float]], float]] = []
    for k in range(4 + int(uniform(g, 0, 3))):
        up = 1.0 if k % 2 == 0 else -1.0
        temporal = k < 4
        towards = math.pi * (0.5 + 0.5 * side) if temporal else math.pi * (0.5 - 0.5 * side)
        angle = towards - up * side * uniform(g, 0.5, 1.1)
        length = uniform(g, 0.8, 1.3) if temporal else uniform(g, 0.4, 0.7)
        pts = _walk(g, (dy, dx), angle, length, 0.12, 14)
        width = uniform(g, 0.012, 0.022)
        paths.append((pts, width))
        for _ in range(int(uniform(g, 1, 3.99))):  # side branches
            j = int(uniform(g, 4, 12))
            child_angle = math.atan2(pts[j + 1][0] - pts[j][0], pts[j + 1][1] - pts[j][1]) + up * uniform(g, 0.5, 1.0) * (1 if uniform(g, 0, 1) < 0.5 else -1)
            paths.append((_walk(g, pts[j], child_angle, uniform(g, 0.2, 0.45), 0.2, 6), width * 0.6))
    for pts, width in paths:
        d = torch.from_numpy(_distance_to_path(pts, size)) * px
        vessels = torch.maximum(vessels, torch.sigmoid((width - d) / (0.8 * px)))
    vessel_tint = torch.tensor([0.4, 0.55, 0.35]) * uniform(g, 0.8, 1.15)
    img = img * (1.0 - vessels * vessel_tint.view(3, 1, 1))
    disc = _blob(yy, xx, dy, dx, r_disc, 0.015)
    cup = _blob(yy, xx, dy, dx, r_disc * uniform(g, 0.3, 0.55), 0.01)
    disc_colour = torch.tensor([0.85, 0.55, 0.3]) * pigment**0.3
    img = img * (1 - disc) + disc * (disc_colour.view(3, 1, 1) * (1 + 0.2 * cup))
    # lesions
    masks = torch.zeros(3, size, size)

    def spot() -> tuple[float, float]:
        for _ in range(20):
            cy, cx = uniform(g, -0.75, 0.75), uniform(g, -0.75, 0.75)
            if (cy - dy) ** 2 + (cx - dx) ** 2 > (r_disc + 0.08) ** 2 and cy**2 + cx**2 < 0.78**2:
                return cy, cx
        return fy, fx + 0.2

    counts = {
        "ma": [0, int(uniform(g, 1, 6)), int(uniform(g, 3, 10)), int(uniform(g, 6, 16)), int(uniform(g, 6, 16))][grade],
        "haem": [0, 0, int(uniform(g, 1, 4)), int(uniform(g, 3, 8)), int(uniform(g, 3, 8))][grade],
        "exud": [0, 0, int(uniform(g, 0, 2.5)), int(uniform(g, 2, 8)), int(uniform(g, 2, 8))][grade],
    }
    red = torch.zeros(size, size)
    for _ in range(counts["ma"]):
        cy, cx = spot()
        m = _blob(yy, xx, cy, cx, uniform(g, 1.0, 1.6) * px, 0.5 * px) * uniform(g, 0.55, 1.0)
        red = torch.maximum(red, m)
        masks[0] = torch.maximum(masks[0], (m > 0.25).float())
    for _ in range(counts["haem"]):
        cy, cx = spot()
        blot = torch.zeros(size, size)
        for _part in range(int(uniform(g, 1, 3.99))):
            blot = torch.maximum(blot, _blob(yy, xx, cy + uniform(g, -2, 2) * px, cx + uniform(g, -2, 2) * px, uniform(g, 2.0, 3.5) * px, 0.6 * px))
        red = torch.maximum(red, blot)
        masks[1] = torch.maximum(masks[1], (blot > 0.5).float())
    yellow = torch.zeros(size, size)
    for _ in range(counts["exud"]):
        cy, cx = spot()
        for _part in range(int(uniform(g, 1, 4.99))):  # exudates come in small clusters
            e = _blob(yy, xx, cy + uniform(g, -4, 4) * px, cx + uniform(g, -4, 4) * px, uniform(g, 0.9, 2.0) * px, 0.5 * px)
            yellow = torch.maximum(yellow, e)
            masks[2] = torch.maximum(masks[2], (e > 0.5).float())
    if grade == 4:  # neovascularisation at the disc: fine tortuous vessels
        for _ in range(int(uniform(g, 3, 7))):
            pts = _walk(g, (dy, dx), uniform(g, 0, 2 * math.pi), 0.25, 0.9, 8)
            nv = torch.sigmoid((0.006 - torch.from_numpy(_distance_to_path(pts, size)) * px) / (0.6 * px))
            img = img * (1.0 - 0.45 * nv)
    img = img * (1.0 - red * torch.tensor([0.35, 0.55, 0.45]).view(3, 1, 1))
    exudate_colour = torch.tensor([0.75, 0.55, 0.18]) * uniform(g, 0.7, 1.0)
    img = img * (1 - 0.85 * yellow) + 0.85 * yellow * exudate_colour.view(3, 1, 1)
    img = img * uniform(g, 0.75, 1.25)  # exposure varies between visits
    img = (img * fov).clamp(0.0, 1.0)
    return FundusPhantom(linear_to_srgb(img), masks * fov, fov.unsqueeze(0), grade)
