"""Functional kernels of the augmentation baselines (RandAugment, AugMix, standard augmentation).

Intensity kernels work on ``z``, an image normalised by its own robust range (1st -> 0, 99th
percentile -> 1; see :func:`robust_range`), so no kernel assumes the data lie in [0, 1]: values
outside the robust range pass through every op without being clipped (a bright lesion above the
99th percentile keeps its contrast). Geometric kernels return *forward* content maps in physical
space (mm, grid order x, y[, z] = last spatial axis first), which :func:`grid_theta` turns into
``grid_sample`` matrices using each case's voxel spacing, so a rotation of an anisotropic volume is
a rotation of the anatomy, not of the voxel grid.

Levels are in [0, 1] (RandAugment's magnitude / 10); every op with a magnitude is the identity at
level 0. Shapes: ``z (n, C, *spatial)``, ``level``/``sign``/``aux`` ``(n,)`` on the image's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.domains import Domain

QUANTILE_SAMPLES = 2**18  # voxels per image used for the robust range (strided subsample)
MAX_ROTATE_DEG = 30.0  # RandAugment's rotation at magnitude 10
MAX_SHEAR = 0.3  # shear factor (mm per mm) at magnitude 10
MAX_TRANSLATE = 0.3  # fraction of the field at magnitude 10 (ImageNet's 0.45 would push lesions out)
MAX_FACTOR = 0.9  # enhance factors (contrast, brightness, sharpness, colour) span 1 +- 0.9
EQUALIZE_BINS = 256
REC601_LUMA = (0.299, 0.587, 0.114)  # grey-level weights of a domain that declares none


# -- intensity domain ---------------------------------------------------------------------------
def domain_bounds(domain: Domain) -> tuple[float | None, float | None]:
    """Physical bounds of a domain's values as it declares them (None = unbounded); outputs are clamped to them."""
    return domain.low, domain.high


def is_colour(image: Tensor, domain: Domain) -> bool:
    """True for 3-channel images of a colour domain (one that declares ``luma``, e.g. linear RGB or
    sRGB): colour ops apply, channels normalise jointly."""
    return image.shape[1] == 3 and domain.luma is not None


def luma_weights(domain: Domain) -> tuple[float, float, float]:
    """Grey-level weights of R, G, B as the domain declares them (Rec. 709 luminance for linear
    light, Rec. 601 luma for sRGB); Rec. 601 for a domain that declares none."""
    return domain.luma if domain.luma is not None else REC601_LUMA


def _strided(flat: Tensor, max_samples: int) -> Tensor:
    step = max(1, math.ceil(flat.shape[-1] / max_samples))
    return flat[..., ::step]


def robust_range(x: Tensor, joint_channels: bool, q: tuple[float, float] = (0.01, 0.99)) -> tuple[Tensor, Tensor]:
    """Per-image (``joint_channels``) or per-channel ``lo`` and ``scale = hi - lo`` of ``x``.

    ``lo``/``hi`` are the ``q`` quantiles over at most :data:`QUANTILE_SAMPLES` strided voxels;
    a constant image gets ``scale = 1``. Both are shaped ``(n, C, 1, ...)`` to broadcast on ``x``.
    """
    n, c = x.shape[:2]
    groups = x.reshape(n, 1, -1) if joint_channels else x.reshape(n, c, -1)
    sub = _strided(groups, QUANTILE_SAMPLES)
    sub = sub if sub.dtype in (torch.float32, torch.float64) else sub.float()
    qs = torch.quantile(sub, torch.tensor(q, device=x.device, dtype=sub.dtype), dim=-1)  # (2, n, G)
    lo, hi = qs[0].to(x.dtype), qs[1].to(x.dtype)
    scale = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    shape = (n, c) + (1,) * (x.ndim - 2)
    return lo.reshape(n, -1, *shape[2:]).expand(shape), scale.reshape(n, -1, *shape[2:]).expand(shape)


def to_unit(x: Tensor, lo: Tensor, scale: Tensor) -> Tensor:
    """``z = (x - lo) / scale``: the robust range maps to [0, 1]."""
    return (x - lo) / scale


def from_unit(z: Tensor, z0: Tensor, x: Tensor, lo: Tensor, scale: Tensor, domain: Domain) -> Tensor:
    """Map ``z`` back to the domain of ``x`` (``z0 = to_unit(x)``): voxels with ``z == z0`` keep
    their exact value; the rest are clamped to the domain bounds (widened to the input's own
    min/max, so values that were already outside stay possible)."""
    out = torch.where(z == z0, x, lo + z * scale)
    lo_d, hi_d = domain_bounds(domain)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    view = (n,) + (1,) * (x.ndim - 1)
    if lo_d is not None:
        out = torch.maximum(out, flat.amin(1).clamp(max=lo_d).view(view))
    if hi_d is not None:
        out = torch.minimum(out, flat.amax(1).clamp(min=hi_d).view(view))
    return out


def _col(v: Tensor, ndim: int) -> Tensor:
    return v.reshape((-1,) + (1,) * (ndim - 1))


def enhance_factor(level: Tensor, sign: Tensor) -> Tensor:
    """PIL-style enhance factor ``1 + sign * 0.9 * level``: 1 (identity) at level 0."""
    return 1.0 + sign * MAX_FACTOR * level


# -- intensity kernels ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OpContext:
    """What an op may know besides the pixels: colour handling and the grey-level weights."""

    colour: bool
    luma: tuple[float, float, float]


def grey(z: Tensor, luma: tuple[float, float, float]) -> Tensor:
    """Grey level ``(n, 1, *spatial)`` of an RGB ``z``."""
    w = torch.tensor(luma, dtype=z.dtype, device=z.device).view(1, 3, *([1] * (z.ndim - 2)))
    return (z * w).sum(1, keepdim=True)


def brightness(z: Tensor, factor: Tensor) -> Tensor:
    """Blend with the robust black level (z = 0): ``z * factor``."""
    return z + (_col(factor, z.ndim) - 1.0) * z


def contrast(z: Tensor, factor: Tensor, ctx: OpContext) -> Tensor:
    """Blend with the mean grey level: ``m + factor (z - m)`` (m per image; per channel if not RGB)."""
    m = grey(z, ctx.luma) if ctx.colour else z
    m = m.flatten(2).mean(-1).reshape(z.shape[0], -1, *([1] * (z.ndim - 2)))
    return z + (_col(factor, z.ndim) - 1.0) * (z - m)


def saturation(z: Tensor, factor: Tensor, ctx: OpContext) -> Tensor:
    """Blend an RGB image with its own grey version: ``g + factor (z - g)``."""
    if not ctx.colour:
        raise ValueError("the colour op needs a 3-channel RGB image")
    return z + (_col(factor, z.ndim) - 1.0) * (z - grey(z, ctx.luma))


def smooth(z: Tensor) -> Tensor:
    """PIL's SMOOTH filter generalised to d dims: 3^d box with centre weight 5, edge-replicated."""
    d = z.ndim - 2
    c = z.shape[1]
    k = torch.ones((3,) * d, dtype=z.dtype, device=z.device)
    k[(1,) * d] = 5.0
    k = (k / k.sum()).expand(c, 1, *k.shape).contiguous()
    padded = F.pad(z, (1, 1) * d, mode="replicate")
    return (F.conv2d if d == 2 else F.conv3d)(padded, k, groups=c)


def sharpness(z: Tensor, factor: Tensor) -> Tensor:
    """Blend with the smoothed image: ``s + factor (z - s)``; factor > 1 sharpens."""
    return z + (_col(factor, z.ndim) - 1.0) * (z - smooth(z))


def posterize(z: Tensor, level: Tensor) -> Tensor:
    """Quantise to ``2^(8 - 4 level)`` grey levels per robust range (RandAugment's 8 -> 4 bits).

    Level 0 leaves the image untouched (float data are not already 8-bit).
    """
    step = _col(torch.pow(2.0, -(8.0 - 4.0 * level)), z.ndim).to(z.dtype)
    q = torch.floor(z / step) * step
    return torch.where(_col(level, z.ndim) > 0, q, z)


def solarize(z: Tensor, level: Tensor) -> Tensor:
    """Invert (within each channel's own [min, max]) every voxel above ``t = max - level (max - min)``.

    Level 0 puts t at the maximum (identity); level 1 inverts the whole image.
    """
    flat = z.flatten(2)
    zmin = flat.amin(-1).reshape(*z.shape[:2], *([1] * (z.ndim - 2)))
    zmax = flat.amax(-1).reshape(*z.shape[:2], *([1] * (z.ndim - 2)))
    t = zmax - _col(level, z.ndim) * (zmax - zmin)
    return torch.where(z > t, zmax + zmin - z, z)


def equalize(z: Tensor, bins: int = EQUALIZE_BINS) -> Tensor:
    """Histogram equalisation per channel of the robust range [0, 1] (values outside pass through).

    The map is the channel's empirical CDF over ``bins`` bins, linear inside a bin, so it is
    continuous and monotone and sends 0 -> 0, 1 -> 1.
    """
    n, c = z.shape[:2]
    flat = z.reshape(n * c, -1)
    inside = (flat >= 0) & (flat <= 1)
    pos = flat.clamp(0, 1) * bins
    idx = pos.floor().long().clamp(max=bins - 1)
    rows = torch.arange(n * c, device=z.device).unsqueeze(1) * bins
    counts = torch.bincount((rows + idx)[inside], minlength=n * c * bins).reshape(n * c, bins)
    cdf = torch.cumsum(counts, 1).to(torch.float64)
    total = cdf[:, -1:].clamp(min=1)
    cdf = torch.cat([torch.zeros_like(total), cdf / total], 1).to(z.dtype)  # (nc, bins + 1) at bin edges
    lo_edge, hi_edge = cdf.gather(1, idx), cdf.gather(1, idx + 1)
    mapped = lo_edge + (hi_edge - lo_edge) * (pos - idx.to(z.dtype))
    return torch.where(inside, mapped, flat).reshape(z.shape)


def autocontrast(z: Tensor, ctx: OpContext) -> Tensor:
    """Stretch each channel's own robust range to the image's (RGB white balance; no magnitude)."""
    if not ctx.colour:
        raise ValueError("autocontrast needs a 3-channel RGB image (on one channel it is the identity)")
    lo, scale = robust_range(z, joint_channels=False)
    return to_unit(z, lo, scale)


# -- geometric kernels (forward content maps in physical space, grid order x, y[, z]) ------------
def plane_rotation(angle_rad: Tensor, d: int, axes: tuple[int, int]) -> Tensor:
    """``(n, d, d)`` rotation by ``angle_rad`` in the plane of grid axes ``axes`` (float64)."""
    n = angle_rad.shape[0]
    r = torch.eye(d, dtype=torch.float64, device=angle_rad.device).repeat(n, 1, 1)
    c, s = torch.cos(angle_rad.double()), torch.sin(angle_rad.double())
    i, j = axes
    r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
    return r


def euler_rotation(angles_rad: Tensor) -> Tensor:
    """``(n, d, d)`` rotation: 2-D ``angles (n, 1)``; 3-D ``(n, 3)`` about x, then y, then z."""
    d = 2 if angles_rad.shape[1] == 1 else 3
    if d == 2:
        return plane_rotation(angles_rad[:, 0], 2, (0, 1))
    rx = plane_rotation(angles_rad[:, 0], 3, (1, 2))
    ry = plane_rotation(angles_rad[:, 1], 3, (2, 0))
    rz = plane_rotation(angles_rad[:, 2], 3, (0, 1))
    return rz @ ry @ rx


def grid_theta(forward: Tensor, shift_frac: Tensor, extent_mm: Tensor) -> Tensor:
    """``grid_sample`` matrices ``(n, d, d+1)`` for a forward content map about the field centre.

    Args:
        forward: ``(n, d, d)`` linear map in mm (content at p moves to ``forward @ p``).
        shift_frac: ``(n, d)`` content translation in fractions of the field extent per axis.
        extent_mm: ``(n, d)`` field extent (voxels * spacing) per grid axis.
    """
    half = extent_mm.double() / 2.0
    inv = torch.linalg.inv(forward.double())
    lin = inv * half.unsqueeze(1) / half.unsqueeze(2)  # D^-1 A^-1 D, D = diag(half)
    trans = -(lin @ (2.0 * shift_frac.double()).unsqueeze(-1))
    return torch.cat([lin, trans], -1)


def is_identity(theta: Tensor) -> Tensor:
    """``(n,)`` True where ``theta`` samples the input at the output position exactly."""
    d = theta.shape[1]
    eye = torch.eye(d, d + 1, dtype=theta.dtype, device=theta.device)
    return (theta == eye).flatten(1).all(1)


def warp(x: Tensor, theta: Tensor, binary: bool = False, background: str = "min") -> Tensor:
    """Resample ``x (n, C, *spatial)`` (bi/trilinear) with ``theta``.

    Outside the field each channel takes its own minimum (``background="min"``, for images) or 0
    (``"zero"``, for masks and maps); binary inputs are re-thresholded at 0.5 (>= 0.5 -> 1),
    integer label maps are sampled nearest-neighbour, and cases whose ``theta`` is the identity are
    returned untouched.
    """
    if background not in ("min", "zero"):
        raise ValueError(f"background must be 'min' or 'zero', got {background!r}")
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    grid = F.affine_grid(theta.to(work.dtype), list(work.shape), align_corners=False)
    mode = "nearest" if not (x.is_floating_point() or binary) else "bilinear"
    if background == "min":
        base = work.flatten(2).amin(-1).reshape(*work.shape[:2], *([1] * (work.ndim - 2)))
        out = F.grid_sample(work - base, grid, mode=mode, padding_mode="zeros", align_corners=False) + base
    else:
        out = F.grid_sample(work, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if binary:
        out = (out >= 0.5).to(work.dtype)
    identity = is_identity(theta)
    if bool(identity.any()):
        out = torch.where(_col(identity, x.ndim), work, out)
    return out.to(x.dtype)


def is_binary(t: Tensor) -> bool:
    """True when every value of ``t`` is 0 or 1 (such masks stay binary under warps and mixing)."""
    return bool(((t == 0) | (t == 1)).all())


def _other_axis(axis: int, aux: Tensor, d: int) -> Tensor:
    others = torch.tensor([a for a in range(d) if a != axis], device=aux.device)
    return others[(aux * len(others)).long().clamp(max=len(others) - 1)]


def rotate(level: Tensor, sign: Tensor, aux: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """Rotation by ``sign * 30 deg * level``; in 3-D in the plane (xy, xz or yz) chosen by ``aux``."""
    angle = torch.deg2rad(sign.double() * MAX_ROTATE_DEG * level.double())
    if d == 2:
        return plane_rotation(angle, 2, (0, 1)), torch.zeros(angle.shape[0], 2, dtype=torch.float64, device=angle.device)
    planes = ((0, 1), (0, 2), (1, 2))
    pick = (aux * 3).long().clamp(max=2)
    out = torch.eye(3, dtype=torch.float64, device=angle.device).repeat(angle.shape[0], 1, 1)
    for k, plane in enumerate(planes):
        out = torch.where((pick == k).view(-1, 1, 1), plane_rotation(angle, 3, plane), out)
    return out, torch.zeros(angle.shape[0], 3, dtype=torch.float64, device=angle.device)


def shear(axis: int) -> Callable[[Tensor, Tensor, Tensor, int], tuple[Tensor, Tensor]]:
    """Shear of grid axis ``axis`` along another axis (``aux`` picks it in 3-D): p_a += k p_b."""

    def kernel(level: Tensor, sign: Tensor, aux: Tensor, d: int) -> tuple[Tensor, Tensor]:
        n = level.shape[0]
        m = torch.eye(d, dtype=torch.float64, device=level.device).repeat(n, 1, 1)
        other = _other_axis(axis, aux, d)
        m[torch.arange(n, device=level.device), axis, other] = sign.double() * MAX_SHEAR * level.double()
        return m, torch.zeros(n, d, dtype=torch.float64, device=level.device)

    return kernel


def translate(axis: int) -> Callable[[Tensor, Tensor, Tensor, int], tuple[Tensor, Tensor]]:
    """Translation along grid axis ``axis`` by ``sign * 0.3 * level`` of the field."""

    def kernel(level: Tensor, sign: Tensor, aux: Tensor, d: int) -> tuple[Tensor, Tensor]:
        n = level.shape[0]
        shift = torch.zeros(n, d, dtype=torch.float64, device=level.device)
        shift[:, axis] = sign.double() * MAX_TRANSLATE * level.double()
        return torch.eye(d, dtype=torch.float64, device=level.device).repeat(n, 1, 1), shift

    return kernel


# -- the op table ---------------------------------------------------------------------------------
IntensityKernel = Callable[[Tensor, Tensor, Tensor, OpContext], Tensor]
GeometricKernel = Callable[[Tensor, Tensor, Tensor, int], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Op:
    """One augmentation op: an intensity kernel (on z) or a geometric one (a forward map)."""

    name: str
    intensity: IntensityKernel | None = None
    geometric: GeometricKernel | None = None
    colour_only: bool = False
    min_dims: int = 2
    has_magnitude: bool = True


def _table() -> tuple[Op, ...]:
    return (
        Op("identity", intensity=lambda z, lv, sg, ctx: z, has_magnitude=False),
        Op("autocontrast", intensity=lambda z, lv, sg, ctx: autocontrast(z, ctx), colour_only=True, has_magnitude=False),
        Op("equalize", intensity=lambda z, lv, sg, ctx: equalize(z), has_magnitude=False),
        Op("rotate", geometric=rotate),
        Op("solarize", intensity=lambda z, lv, sg, ctx: solarize(z, lv)),
        Op("color", intensity=lambda z, lv, sg, ctx: saturation(z, enhance_factor(lv, sg), ctx), colour_only=True),
        Op("posterize", intensity=lambda z, lv, sg, ctx: posterize(z, lv)),
        Op("contrast", intensity=lambda z, lv, sg, ctx: contrast(z, enhance_factor(lv, sg), ctx)),
        Op("brightness", intensity=lambda z, lv, sg, ctx: brightness(z, enhance_factor(lv, sg))),
        Op("sharpness", intensity=lambda z, lv, sg, ctx: sharpness(z, enhance_factor(lv, sg))),
        Op("shear_x", geometric=shear(0)),
        Op("shear_y", geometric=shear(1)),
        Op("shear_z", geometric=shear(2), min_dims=3),
        Op("translate_x", geometric=translate(0)),
        Op("translate_y", geometric=translate(1)),
        Op("translate_z", geometric=translate(2), min_dims=3),
    )


RANDAUGMENT_OPS: tuple[str, ...] = tuple(op.name for op in _table())
AUGMIX_OPS: tuple[str, ...] = (
    "autocontrast", "equalize", "posterize", "rotate", "solarize",
    "shear_x", "shear_y", "shear_z", "translate_x", "translate_y", "translate_z",
)


def select_ops(
    names: Sequence[str] | None, default: Sequence[str], spatial_dims: int, colour: bool, option: str,
    geometric: bool = True,
) -> tuple[Op, ...]:
    """The ops of ``names`` (or of ``default``, filtered to what applies) for this image kind.

    Explicitly requested ops that do not apply (a colour op on a grey image, ``*_z`` in 2-D,
    a geometric op with ``geometric=False``) raise a ValueError naming ``option``.
    """
    table = {op.name: op for op in _table()}

    def applies(op: Op) -> bool:
        return (colour or not op.colour_only) and spatial_dims >= op.min_dims and (geometric or op.geometric is None)

    if names is None:
        return tuple(table[n] for n in default if applies(table[n]))
    if len(names) == 0:
        raise ValueError(f"{option} must name at least one op")
    chosen = []
    for n in names:
        if n not in table:
            raise ValueError(f"{option}: unknown op {n!r}; expected some of {sorted(table)}")
        if not applies(table[n]):
            why = "needs a 3-channel RGB image" if table[n].colour_only and not colour else (
                "needs a 3-D image" if spatial_dims < table[n].min_dims else "is geometric but geometric=False")
            raise ValueError(f"{option}: op {n!r} {why}")
        chosen.append(table[n])
    return tuple(chosen)


# -- sampling -------------------------------------------------------------------------------------
def sample_log_gamma(concentration: float, size: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """log of Gamma(concentration, 1) draws (float64, on the generator's device).

    Marsaglia & Tsang (2000): rejection from a transformed normal for shape a >= 1; for a < 1 the
    draw for a + 1 is multiplied by U^(1/a), done in log space so small shapes never underflow.
    Every random number comes from ``generator``.
    """
    if not (concentration > 0 and math.isfinite(concentration)):
        raise ValueError(f"gamma concentration must be > 0 and finite, got {concentration!r}")
    dev = generator.device
    a = concentration + 1.0 if concentration < 1.0 else concentration
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(size, dtype=torch.float64, device=dev).flatten()
    pending = torch.arange(out.numel(), device=dev)
    while pending.numel() > 0:
        k = pending.numel()
        x = torch.randn(k, generator=generator, device=dev, dtype=torch.float64)
        u = torch.rand(k, generator=generator, device=dev, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        log_v = torch.log(torch.where(v > 0, v, torch.ones_like(v)))
        accept = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        out[pending[accept]] = math.log(d) + log_v[accept]
        pending = pending[~accept]
    if concentration < 1.0:
        u = torch.rand(out.numel(), generator=generator, device=dev, dtype=torch.float64)
        out = out + torch.log1p(-u) / concentration  # 1 - U is uniform on (0, 1]: no log(0)
    return out.reshape(size)


def sample_gamma(concentration: float, size: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Gamma(concentration, 1) draws (float64); see :func:`sample_log_gamma`."""
    return sample_log_gamma(concentration, size, generator).exp()


def sample_dirichlet(alpha: float, n: int, k: int, generator: torch.Generator) -> Tensor:
    """``(n, k)`` rows from the symmetric Dirichlet(alpha, ..., alpha): softmax of log-gammas."""
    return torch.softmax(sample_log_gamma(alpha, (n, k), generator), 1)


def sample_beta(alpha: float, n: int, generator: torch.Generator) -> Tensor:
    """``(n,)`` draws from Beta(alpha, alpha) (a two-component Dirichlet)."""
    return sample_dirichlet(alpha, n, 2, generator)[:, 0]
