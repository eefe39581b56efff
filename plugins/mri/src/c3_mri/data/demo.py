"""The embedded demo cohort ``mri.demo``: FLAIR brain volumes with MS-like lesions from 3 sites.

Anatomy is real: the ICBM152 2009a CSF/GM/WM maps that ship with nilearn (see
:mod:`c3_mri.data.anatomy`), resampled to 1.5 mm isotropic (72 × 80 × 40 voxels) under a random
affine per case (±7 % size per axis, ±6° axial and ±3° sagittal rotation, ±3 mm shift).

Lesions: 5–12 ellipsoids per case, 60 % periventricular (white matter within 4.5 mm of the
lateral ventricles) and 40 % juxtacortical (white matter touching cortex). Volumes are
log-uniform in 3.5–10 mm³ for a third of them and 10–500 mm³ otherwise, so every case has
lesions under 10 mm³ (one or two 1.5 mm voxels). Partial volume is rasterised exactly enough by
3 × 3 × 3 supersampling; the mask is the voxels with lesion fraction ≥ 0.5 plus each lesion's
most-covered voxel (so sub-voxel lesions keep one mask voxel). The mask is the ground truth; no
label noise is added.

Image formation per site (Bloch synthesis from the tissue fractions, then acquisition):
FLAIR inversion recovery at the site's field strength and TR/TE/TI, a receiver gain, slice
thickness (site C: 3 mm slices — thick-slice partial volume and a 3 mm Gaussian slice profile),
a B1 receive bias field (order-3 Legendre, site-specific strength) and thermal noise (site SNR
relative to mean white-matter signal; Rician or non-central chi for 8 coils).

Splits: "train" = sites A (3 T) and B (1.5 T), 24 cases; "val" = 8 further cases of sites A
and B (in-domain check, never trained on); "test" = the held-out site C (3 T, shorter
TE and longer TI, so less lesion contrast, stronger bias, lower SNR, thick slices), 12 cases. Tissue fractions (CSF, GM, WM,
lesion) travel in ``extras["tissue"]`` for Bloch-based operators. Everything is a pure function
of (split, case index); the template crop is loaded once per dataset instance.
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
from c3_mri.data.anatomy import GRID, SPACING_MM, load_template_1mm, resample_to_grid
from c3_mri.functional.bias_field import log_bias_field, total_order_mask
from c3_mri.functional.bloch import synthesise, tissue_signals
from c3_mri.functional.noise import noncentral_chi_magnitude
from c3_mri.functional.slice_profile import convolve_axis, gaussian_profile, thick_slice_resample

EXTENT_MM = tuple(n * s for n, s in zip(GRID, SPACING_MM))


@dataclass(frozen=True)
class Site:
    name: str
    field_t: float
    tr_ms: float
    te_ms: float
    ti_ms: float
    gain: float  # receiver gain, arbitrary magnitude units
    bias_scale: float  # log-gain per Legendre term
    snr: float  # mean WM signal / noise std per channel
    coils: int
    slice_mm: float  # acquired slice thickness (1.5 = native)


SITES = {
    "A": Site("A", 3.0, 9000.0, 90.0, 2400.0, 1000.0, 0.10, 30.0, 1, 1.5),
    "B": Site("B", 1.5, 8000.0, 110.0, 2200.0, 600.0, 0.18, 22.0, 8, 1.5),
    "C": Site("C", 3.0, 10000.0, 80.0, 2600.0, 1500.0, 0.26, 15.0, 1, 3.0),
}
SPLITS = {"train": (("A", "B"), 13, 24), "val": (("A", "B"), 41, 8), "test": (("C",), 29, 12)}


def _theta(g: torch.Generator) -> Tensor:
    """Random affine (3, 4) in normalised coordinates of the output grid (spatial axis order)."""
    scale = torch.tensor([uniform(g, 0.93, 1.07) for _ in range(3)], dtype=torch.float64)
    axial, sag = math.radians(uniform(g, -6, 6)), math.radians(uniform(g, -3, 3))
    rz = torch.tensor([[math.cos(axial), -math.sin(axial), 0], [math.sin(axial), math.cos(axial), 0], [0, 0, 1]], dtype=torch.float64)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(sag), -math.sin(sag)], [0, math.sin(sag), math.cos(sag)]], dtype=torch.float64)
    shift_mm = torch.tensor([uniform(g, -3, 3) for _ in range(3)], dtype=torch.float64)
    a = rz @ rx @ torch.diag(scale)  # physical (mm) map output -> input about the centre
    half = torch.tensor(EXTENT_MM, dtype=torch.float64) / 2
    lin = torch.diag(1 / half) @ a @ torch.diag(half)
    return torch.cat([lin, (shift_mm / half).unsqueeze(1)], 1).float()


def _dilate(x: Tensor, r: int) -> Tensor:
    """Binary dilation by a (2r+1)³ box, separably (three 1-D max pools are far cheaper)."""
    y = x[None, None].float()
    for k in ((2 * r + 1, 1, 1), (1, 2 * r + 1, 1), (1, 1, 2 * r + 1)):
        y = F.max_pool3d(y, k, 1, tuple(q // 2 for q in k))
    return y[0, 0] > 0.5


def _lesions(tissue: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Lesion fraction (D, H, W) and mask (D, H, W) of periventricular / juxtacortical ellipsoids."""
    csf, gm, wm = tissue
    shape = wm.shape
    central = torch.zeros(shape, dtype=torch.bool)
    central[18:54, 12:68, 4:36] = True
    ventricle = (csf > 0.7) & central
    peri = ((wm > 0.6) & _dilate(ventricle, 3) & central).nonzero()
    juxta = ((wm > 0.5) & _dilate(gm > 0.6, 1) & ~_dilate(ventricle, 4)).nonzero()
    frac = torch.zeros(shape)
    forced = torch.zeros(shape, dtype=torch.bool)
    sub = torch.tensor([-1 / 3, 0.0, 1 / 3])
    offs = torch.stack(torch.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)  # (27, 3)
    sp = torch.tensor(SPACING_MM)
    for _ in range(int(uniform(g, 5, 13))):
        pool = peri if uniform(g, 0, 1) < 0.6 and len(peri) else juxta
        centre_vox = pool[int(torch.randint(0, len(pool), (1,), generator=g))].float()
        centre = centre_vox + torch.tensor([uniform(g, -0.3, 0.3) for _ in range(3)])
        small = uniform(g, 0, 1) < 1 / 3
        lo, hi = (3.5, 10.0) if small else (10.0, 500.0)
        vol = math.exp(uniform(g, math.log(lo), math.log(hi)))
        ratio = torch.tensor([math.exp(uniform(g, -0.25, 0.25)) for _ in range(3)])
        ratio = ratio / ratio.prod() ** (1 / 3)
        semi = (3 * vol / (4 * math.pi)) ** (1 / 3) * ratio  # mm
        half = [int(math.ceil(float(semi[a]) / SPACING_MM[a])) + 1 for a in range(3)]
        lo_i = [max(0, int(round(float(centre[a]))) - half[a]) for a in range(3)]
        hi_i = [min(shape[a], int(round(float(centre[a]))) + half[a] + 1) for a in range(3)]
        axes = [torch.arange(lo_i[a], hi_i[a], dtype=torch.float32) for a in range(3)]
        vox = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (d, h, w, 3)
        pts = vox.unsqueeze(-2) + offs  # (d, h, w, 27, 3)
        r2 = ((((pts - centre) * sp) / semi) ** 2).sum(-1)
        f = (r2 <= 1).float().mean(-1)
        box = tuple(slice(lo_i[a], hi_i[a]) for a in range(3))
        f = torch.minimum(f, (wm + gm)[box])
        if float(f.max()) <= 0:
            continue
        frac[box] = torch.maximum(frac[box], f)
        peak = torch.zeros_like(f, dtype=torch.bool).flatten()
        peak[int(f.flatten().argmax())] = True
        forced[box] |= peak.view(f.shape)
    return frac, (frac >= 0.5) | forced


def render_case(template_1mm: Tensor, site: Site, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(image (1, D, H, W), mask (1, D, H, W), tissue fractions (4, D, H, W)) for one case."""
    anat = resample_to_grid(template_1mm, _theta(g)).clamp(0, 1)
    lesion, mask = _lesions(anat, g)
    tissue = torch.cat([anat * (1 - lesion), lesion[None]], 0)
    signals = tissue_signals("ir", site.field_t, site.tr_ms, site.te_ms, site.ti_ms)
    img = synthesise(tissue[None], signals / signals[2])  # WM = 1 before gain
    img = img * site.gain * uniform(g, 0.8, 1.25)
    if site.slice_mm > SPACING_MM[2]:
        img = thick_slice_resample(img, site.slice_mm / SPACING_MM[2], 2)
        img = convolve_axis(img, gaussian_profile(site.slice_mm / SPACING_MM[2]), 2)
    order_mask = total_order_mask(3, 3)
    coeff = (torch.rand(order_mask.numel(), generator=g, dtype=torch.float64) * 2 - 1).float() * order_mask * site.bias_scale
    field = torch.exp(log_bias_field(GRID, coeff[None], 3))
    img = img * field.unsqueeze(1)
    wm_signal = float(img[0, 0][tissue[2] > 0.9].mean())
    img = noncentral_chi_magnitude(img[0], wm_signal / site.snr, site.coils, g)
    return img.float(), mask.float()[None], tissue.float()


class MriDemo(Dataset):
    """Deterministic demo cohort; cases are rendered on first access and kept per instance."""

    def __init__(self, split: str = "test", n: int | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"mri.demo: unknown split {split!r} (choose from {sorted(SPLITS)})")
        self.split = split
        self.sites, self.seed, default_n = SPLITS[split]
        self.n = default_n if n is None else int(n)
        self._template: Tensor | None = None
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._cache:
            if self._template is None:
                self._template = load_template_1mm()
            site = SITES[self.sites[i % len(self.sites)]]
            g = generator_from_seed(derive_seed(self.seed, "mri-demo", self.split, i))
            image, mask, tissue = render_case(self._template, site, g)
            self._cache[i] = Sample(
                image, f"mri-demo-{site.name}-{i:04d}", "mri", "magnitude", SPACING_MM, mask=mask, extras={"tissue": tissue}
            )
        return self._cache[i]


def make_demo_dataset(*, source: str | None = None, split: str = "test", **options: object) -> MriDemo:
    """Dataset factory registered as ``mri.demo`` (splits "train" and "test")."""
    if source is not None:
        raise ValueError("mri.demo is generated, it takes no source; use mri.nifti to read files")
    return MriDemo(split=split, **options)  # type: ignore[arg-type]
