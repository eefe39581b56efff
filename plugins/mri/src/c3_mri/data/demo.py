"""The embedded demo cohort: FLAIR-like brain volumes with MS-like lesions from three sites.

Each case: the ICBM152 tissue maps (2 mm) under a random affine (size, pose), white-matter
lesions — periventricular and juxtacortical ellipsoids of 0.7-5 mm semi-axes (volumes from a
few mm³, so some under 10 mm³, to a few hundred) — and a site protocol: Bloch synthesis of FLAIR
(TR/TE/TI, field strength), a receive bias field and Rician noise. Sites A and B (1.5 T and 3 T)
form the training split; site C (another 3 T protocol, stronger bias, lower SNR, thicker slice
profile) is held out as the test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.seeding import derive_seed, generator_from_seed, uniform
from c3_mri.data.anatomy import SPACING_MM, load_tissue_fractions
from c3_mri.functional.bias_field import log_bias_field, total_order_mask
from c3_mri.functional.bloch import synthesise, tissue_signals
from c3_mri.functional.noise import noncentral_chi_magnitude
from c3_mri.functional.slice_profile import convolve_axis, gaussian_profile


@dataclass(frozen=True)
class Site:
    name: str
    field_t: float
    tr_ms: float
    te_ms: float
    ti_ms: float
    bias_scale: float
    snr: float
    slice_fwhm_mm: float


SITES = {
    "A": Site("A", 3.0, 9000.0, 100.0, 2500.0, 0.15, 40.0, 0.0),
    "B": Site("B", 1.5, 8000.0, 120.0, 2200.0, 0.25, 30.0, 0.0),
    "C": Site("C", 3.0, 10000.0, 85.0, 2700.0, 0.3, 22.0, 3.0),
}
SPLITS = {"train": (("A", "B"), 13, 24), "test": (("C",), 29, 16)}


def _affine_warp(maps: Tensor, g: torch.Generator) -> Tensor:
    scale = torch.tensor([uniform(g, 0.92, 1.08) for _ in range(3)])
    angle = uniform(g, -0.08, 0.08)
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    theta = torch.zeros(1, 3, 4)
    theta[0, :, :3] = rot * scale.view(1, 3)
    theta[0, :, 3] = torch.tensor([uniform(g, -0.05, 0.05) for _ in range(3)])
    grid = F.affine_grid(theta, (1, maps.shape[0], *maps.shape[1:]), align_corners=False)
    return F.grid_sample(maps[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def _lesions(tissue: Tensor, g: torch.Generator) -> Tensor:
    """Lesion fraction map (D, H, W) of periventricular and juxtacortical ellipsoids in WM."""
    csf, gm, wm = tissue
    shape = wm.shape
    near_csf = F.max_pool3d(csf[None, None], 5, 1, 2)[0, 0] > 0.6
    near_gm = F.max_pool3d(gm[None, None], 3, 1, 1)[0, 0] > 0.5
    centre_box = torch.zeros(shape, dtype=torch.bool)
    centre_box[12:52, 12:52, :] = True
    peri = ((wm > 0.6) & near_csf & centre_box).nonzero()
    juxta = ((wm > 0.5) & near_gm).nonzero()
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    lesion = torch.zeros(shape)
    for _ in range(int(uniform(g, 4, 13))):
        pool = peri if uniform(g, 0, 1) < 0.65 and len(peri) else juxta
        if len(pool) == 0:
            continue
        centre = pool[int(torch.randint(0, len(pool), (1,), generator=g))].float()
        semi_mm = [math.exp(uniform(g, math.log(0.8), math.log(6.0))) for _ in range(3)]
        r2 = sum(((grids[a] - centre[a]) * SPACING_MM[a] / semi_mm[a]) ** 2 for a in range(3))
        lesion = torch.maximum(lesion, torch.sigmoid((1.0 - r2.sqrt()) * 3.0))
    return lesion * (wm + gm > 0.3)


def render_case(tissue3: Tensor, site: Site, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(image (1, D, H, W), mask (1, D, H, W), tissue fractions (4, D, H, W))."""
    warped = _affine_warp(tissue3, g).clamp(0, 1)
    lesion = _lesions(warped, g)
    tissue = torch.cat([warped * (1 - lesion), lesion[None]], 0)
    signals = tissue_signals("ir", site.field_t, site.tr_ms, site.te_ms, site.ti_ms)
    img = synthesise(tissue[None], signals)  # (1, 1, D, H, W)
    img = img * (0.9 + 0.2 * torch.rand((), generator=g))  # receiver gain
    if site.slice_fwhm_mm > 0:
        img = convolve_axis(img, gaussian_profile(site.slice_fwhm_mm / SPACING_MM[2], img.device), 2)
    mask3 = total_order_mask(3, 3)
    coeff = (torch.rand(mask3.numel(), generator=g) * 2 - 1) * mask3 * site.bias_scale
    img = img * torch.exp(log_bias_field(tuple(img.shape[2:]), coeff[None], 3)).unsqueeze(1)
    ref = img[0, 0][tissue[2] > 0.5].mean()
    img = noncentral_chi_magnitude(img[0], float(ref) / site.snr, 1, g)
    return img.float(), (lesion >= 0.5).float()[None], tissue.float()


class MriDemo(Dataset):
    """Deterministic demo cohort; volumes are made on first access and kept per instance."""

    def __init__(self, split: str = "test", n: int | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"mri.demo: unknown split {split!r} (choose from {sorted(SPLITS)})")
        self.split = split
        self.sites, self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else n
        self._tissue: Tensor | None = None
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._cache:
            if self._tissue is None:
                self._tissue = load_tissue_fractions()
            site = SITES[self.sites[i % len(self.sites)]]
            g = generator_from_seed(derive_seed(self.seed, "mri-demo", i))
            image, mask, tissue = render_case(self._tissue, site, g)
            self._cache[i] = Sample(image, f"mri-demo-{site.name}-{i:03d}", "mri", "magnitude", SPACING_MM, mask=mask, extras={"tissue": tissue})
        return self._cache[i]


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> MriDemo:
    """Dataset factory registered as ``mri.demo``."""
    if source is not None:
        raise ValueError("mri.demo is generated; use mri.nifti to read files")
    return MriDemo(split=split, **options)  # type: ignore[arg-type]
