"""Training and evaluation baselines (issue 9): standard augmentation, RandAugment, AugMix, TTA.

All functions are pure functions of a :class:`~c3_core.batch.Batch` (2-D or 3-D, any number of
channels, any device) whose only randomness is the ``torch.Generator`` passed in; the same
generator state gives the same bytes. Intensity ops never assume [0, 1]: each image is mapped to
its own robust range (1st/99th percentile -> 0/1; RGB jointly, other channels each on their
own), changed there, mapped back and clamped to its domain's physical bounds. Geometric ops act in
physical space (mm, using each case's spacing) and move ``mask`` and spatial ``extras`` with the
image (binary ones re-thresholded at 0.5, so they stay binary). Labels never change.

- :func:`standard_augment` — random left-right flip, small rotation and scaling, mild gain/offset.
- :func:`randaugment` — Cubuk et al. (2020): ``n_ops`` ops drawn uniformly per image, one magnitude.
- :func:`augmix` — Hendrycks et al. (2020): Dirichlet mixture of ``width`` op chains, mixed with
  the original through Beta(alpha, alpha); :func:`jensen_shannon_consistency` is its JSD loss.
- :func:`tta_predict` — probabilities averaged over flipped and shifted views (dense outputs are
  mapped back before averaging).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.batch import Batch, check_finite
from c3_core.training import baselines_ops as ops

TASKS: tuple[str, ...] = ("multiclass", "multilabel", "segmentation")


# -- shared plumbing -----------------------------------------------------------------------------
def _check_batch(batch: object, fn: str) -> Batch:
    if not isinstance(batch, Batch):
        raise TypeError(f"{fn}: expected a c3_core.batch.Batch, got {type(batch).__name__}")
    if batch.image.ndim not in (4, 5):
        raise ValueError(f"{fn}: image must be (B, C, H, W) or (B, C, D, H, W), got {tuple(batch.image.shape)}")
    check_finite(batch.image, f"{fn} (exams {', '.join(batch.exam_ids[:3])}{', ...' if batch.size > 3 else ''})")
    return batch


def _check_generator(generator: object, fn: str) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _check_task(task: str, fn: str) -> str:
    if task not in TASKS:
        raise ValueError(f"{fn}: task must be one of {TASKS}, got {task!r}")
    return task


def _check_range(name: str, value: float, lo: float, hi: float, fn: str, hi_open: bool = False) -> float:
    v = float(value)
    if not (math.isfinite(v) and lo <= v and (v < hi if hi_open else v <= hi)):
        raise ValueError(f"{fn}: {name} must be in [{lo}, {hi}{')' if hi_open else ']'}, got {value!r}")
    return v


def _rand(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Uniform [0, 1) float64 draws from ``generator``, moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64).to(device)


def _spatial_fields(batch: Batch) -> dict[str, Tensor]:
    """The mask and the extras whose spatial axes follow the image (moved with it)."""
    out: dict[str, Tensor] = {}
    if batch.mask is not None:
        out["mask"] = batch.mask
    for key, value in batch.extras.items():
        if value.ndim == batch.image.ndim and tuple(value.shape[2:]) == batch.spatial_shape:
            out[f"extras/{key}"] = value
    return out


def _rebuild(batch: Batch, image: Tensor, fields: dict[str, Tensor]) -> Batch:
    extras = {k: fields.get(f"extras/{k}", v) for k, v in batch.extras.items()}
    return batch.replace(image=image, mask=fields.get("mask", batch.mask), extras=extras)


def _extent_mm(batch: Batch) -> Tensor:
    """``(B, d)`` field extent in mm per grid axis (x = last spatial axis first), float64."""
    shape = torch.tensor(batch.spatial_shape[::-1], dtype=torch.float64)
    spacing = torch.tensor([s[::-1] for s in batch.spacing], dtype=torch.float64)
    return (spacing * shape).to(batch.device)


def _context(batch: Batch) -> ops.OpContext:
    return ops.OpContext(colour=ops.is_colour(batch.image, batch.domain), luma=ops.luma_weights(batch.domain))


def _warp_all(z: Tensor, fields: dict[str, Tensor], binary: dict[str, bool], theta: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    return ops.warp(z, theta), {k: ops.warp(v, theta, binary[k], background="zero") for k, v in fields.items()}


def _apply_slot(
    z: Tensor,
    fields: dict[str, Tensor],
    binary: dict[str, bool],
    table: Sequence[ops.Op],
    draws: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    ctx: ops.OpContext,
    extent: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Apply one op per case: ``draws = (op index, level, sign, aux, active)``, each ``(n,)``."""
    op_idx, level, sign, aux, active = draws
    d = z.ndim - 2
    out_z: Tensor | None = None
    out_fields: dict[str, Tensor] = {}
    for k, op in enumerate(table):  # every case reads the slot's input and gets one op
        idx = (active & (op_idx == k)).nonzero().squeeze(1)
        if idx.numel() == 0 or op.name == "identity":
            continue
        if out_z is None:
            out_z = z.clone()
        if op.intensity is not None:
            out_z[idx] = op.intensity(z[idx], level[idx], sign[idx], ctx)
            continue
        assert op.geometric is not None
        forward, shift = op.geometric(level[idx], sign[idx], aux[idx], d)
        theta = ops.grid_theta(forward, shift, extent[idx])
        moved_z, moved = _warp_all(z[idx], {k2: v[idx] for k2, v in fields.items()}, binary, theta)
        out_z[idx] = moved_z
        for k2, v in moved.items():
            out_fields.setdefault(k2, fields[k2].clone())[idx] = v
    if out_z is None:
        return z, fields
    return out_z, {k: out_fields.get(k, v) for k, v in fields.items()}


def _slot_draws(
    generator: torch.Generator, n: int, n_ops: int, level: Tensor | None, severity: float, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Op index, level (given, or AugMix's U[min(0.1, s), s] / 10), sign (+-1) and aux, each ``(n,)``."""
    u = _rand(generator, (4, n), device)
    op_idx = (u[0] * n_ops).long().clamp(max=n_ops - 1)
    if level is None:
        low = min(0.1, severity)
        level = (low + (severity - low) * u[1]) / 10.0
    sign = torch.where(u[2] < 0.5, -1.0, 1.0).to(torch.float64)
    return op_idx, level, sign, u[3]


def _chain(
    batch: Batch,
    generator: torch.Generator,
    table: Sequence[ops.Op],
    slots: int,
    depth: Tensor,
    level: Tensor | None,
    severity: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``slots`` op slots on every case (case i takes ops while slot < depth[i])."""
    x = batch.image
    ctx = _context(batch)
    lo, scale = ops.robust_range(x, joint_channels=ctx.colour)
    z0 = ops.to_unit(x, lo, scale)
    z, fields = z0, _spatial_fields(batch)
    binary = {k: ops.is_binary(v) for k, v in fields.items()}
    dtypes = {k: v.dtype for k, v in fields.items()}
    fields = {k: v.to(x.dtype) if binary[k] else v for k, v in fields.items()}  # soft through the chain
    soft = dict.fromkeys(fields, False)
    extent = _extent_mm(batch)
    for s in range(slots):
        op_idx, lv, sign, aux = _slot_draws(generator, batch.size, len(table), level, severity, x.device)
        draws = (op_idx, lv.to(x.dtype), sign.to(x.dtype), aux, depth > s)
        z, fields = _apply_slot(z, fields, soft, table, draws, ctx, extent)
    # binary fields were interpolated as floats through the chain; threshold once, at the end
    fields = {k: (v >= 0.5).to(dtypes[k]) if binary[k] else v for k, v in fields.items()}
    return ops.from_unit(z, z0, x, lo, scale, batch.domain), fields


# -- standard augmentation -----------------------------------------------------------------------
def standard_augment(
    batch: Batch,
    generator: torch.Generator,
    *,
    flip: bool = True,
    max_rotate_deg: float = 10.0,
    max_scale: float = 0.1,
    intensity: float = 0.1,
    flip_axes: Sequence[int] = (-1,),
) -> Batch:
    """Random flip, small rotation + isotropic scaling, and a mild intensity gain/offset.

    Per case: each axis of ``flip_axes`` (spatial axes, negative from the last; default only
    left-right, since an up-down flip of a radiograph is not an admissible exam) flips with
    probability 1/2; rotation angles (one in 2-D, three Euler angles in 3-D, in physical space) are
    U[-max_rotate_deg, max_rotate_deg]; scale U[1 - max_scale, 1 + max_scale]; in robust-range
    units z -> a z + b with a in U[1 - intensity, 1 + intensity], b in U[-intensity, intensity].
    Masks and spatial extras follow flips and the affine. All options at 0 / False: identity.
    """
    fn = "standard_augment"
    batch = _check_batch(batch, fn)
    generator = _check_generator(generator, fn)
    max_rotate_deg = _check_range("max_rotate_deg", max_rotate_deg, 0.0, 180.0, fn)
    max_scale = _check_range("max_scale", max_scale, 0.0, 1.0, fn, hi_open=True)
    intensity = _check_range("intensity", intensity, 0.0, 1.0, fn, hi_open=True)
    d = batch.spatial_dims
    axes = []
    for a in flip_axes:
        if not -d <= int(a) < d:
            raise ValueError(f"{fn}: flip_axes entry {a} is not a spatial axis of a {d}-D image")
        axes.append(2 + int(a) % d)
    n, dev = batch.size, batch.device
    u_flip = _rand(generator, (n, len(axes)), dev)
    u_rot = _rand(generator, (n, 1 if d == 2 else 3), dev)
    u_scale, u_gain, u_offset = _rand(generator, (3, n), dev)

    image, fields = batch.image, _spatial_fields(batch)
    if flip:
        for i, axis in enumerate(axes):
            sel = u_flip[:, i] < 0.5
            view = (n,) + (1,) * (image.ndim - 1)
            image = torch.where(sel.view(view), image.flip(axis), image)
            fields = {k: torch.where(sel.view(view), v.flip(axis), v) for k, v in fields.items()}
    if max_rotate_deg > 0 or max_scale > 0:
        angles = torch.deg2rad((2.0 * u_rot - 1.0) * max_rotate_deg)
        scale = 1.0 + (2.0 * u_scale - 1.0) * max_scale
        forward = ops.euler_rotation(angles) * scale.view(-1, 1, 1)
        theta = ops.grid_theta(forward, torch.zeros(n, d, dtype=torch.float64, device=dev), _extent_mm(batch))
        binary = {k: ops.is_binary(v) for k, v in fields.items()}
        image, fields = _warp_all(image, fields, binary, theta)
    if intensity > 0:
        lo, rng = ops.robust_range(image, joint_channels=ops.is_colour(image, batch.domain))
        z0 = ops.to_unit(image, lo, rng)
        gain = (1.0 + (2.0 * u_gain - 1.0) * intensity).to(image.dtype).view(-1, *([1] * (image.ndim - 1)))
        offset = ((2.0 * u_offset - 1.0) * intensity).to(image.dtype).view(-1, *([1] * (image.ndim - 1)))
        image = ops.from_unit(z0 + (gain - 1.0) * z0 + offset, z0, image, lo, rng, batch.domain)
    return _rebuild(batch, image, fields)


# -- RandAugment ---------------------------------------------------------------------------------
def randaugment(
    batch: Batch,
    generator: torch.Generator,
    *,
    n_ops: int = 2,
    magnitude: float = 9,
    op_names: Sequence[str] | None = None,
) -> Batch:
    """RandAugment (Cubuk et al. 2020): per case, ``n_ops`` ops drawn uniformly (with replacement)
    from the table, all at one ``magnitude`` in [0, 10] (level = magnitude / 10), signs random.

    The table is RandAugment's 14 ops, adapted: ``color`` and ``autocontrast`` only on RGB images,
    ``shear_z``/``translate_z`` added in 3-D (rotations and shears there act in a plane chosen
    per case). ``op_names`` restricts the table (names from ``baselines_ops.RANDAUGMENT_OPS``).
    Every op with a magnitude is the identity at magnitude 0.
    """
    fn = "randaugment"
    batch = _check_batch(batch, fn)
    generator = _check_generator(generator, fn)
    if int(n_ops) != n_ops or n_ops < 0:
        raise ValueError(f"{fn}: n_ops must be a non-negative integer, got {n_ops!r}")
    level = _check_range("magnitude", magnitude, 0.0, 10.0, fn) / 10.0
    colour = ops.is_colour(batch.image, batch.domain)
    table = ops.select_ops(op_names, ops.RANDAUGMENT_OPS, batch.spatial_dims, colour, f"{fn}: op_names")
    lv = torch.full((batch.size,), level, dtype=torch.float64, device=batch.device)
    depth = torch.full((batch.size,), int(n_ops), device=batch.device)
    image, fields = _chain(batch, generator, table, int(n_ops), depth, lv, 0.0)
    return _rebuild(batch, image, fields)


# -- AugMix --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugMixParts:
    """What :func:`augmix` mixes: ``chains (width, B, C, *spatial)`` (and their moved spatial
    fields), Dirichlet ``weights (B, width)`` and Beta ``m (B,)``."""

    chains: Tensor
    chain_fields: dict[str, Tensor]
    weights: Tensor
    m: Tensor
    geometric: bool


def augmix_parts(
    batch: Batch,
    generator: torch.Generator,
    *,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    severity: float = 3,
    op_names: Sequence[str] | None = None,
    geometric: bool | None = None,
) -> AugMixParts:
    """The chains and mixing weights of :func:`augmix` (same arguments, same draws)."""
    fn = "augmix"
    batch = _check_batch(batch, fn)
    generator = _check_generator(generator, fn)
    if int(width) != width or width < 1:
        raise ValueError(f"{fn}: width must be an integer >= 1, got {width!r}")
    if int(depth) != depth or depth == 0 or depth > 16:
        raise ValueError(f"{fn}: depth must be -1 (random 1..3) or an integer in 1..16, got {depth!r}")
    if not (float(alpha) > 0 and math.isfinite(float(alpha))):
        raise ValueError(f"{fn}: alpha must be > 0, got {alpha!r}")
    severity = _check_range("severity", severity, 0.0, 10.0, fn)
    if geometric is None:
        geometric = batch.mask is None
    colour = ops.is_colour(batch.image, batch.domain)
    table = ops.select_ops(op_names, ops.AUGMIX_OPS, batch.spatial_dims, colour, f"{fn}: op_names", geometric)
    n, dev, width = batch.size, batch.device, int(width)
    weights = ops.sample_dirichlet(float(alpha), n, width, generator).to(dev)
    m = ops.sample_beta(float(alpha), n, generator).to(dev)
    slots = 3 if depth < 0 else int(depth)
    if depth < 0:
        chain_depth = (_rand(generator, (width * n,), dev) * 3).long().clamp(max=2) + 1
    else:
        chain_depth = torch.full((width * n,), slots, device=dev)
    rep = batch.select(torch.arange(n, device=dev).repeat(width))  # chain j of case i at row j*n + i
    image, fields = _chain(rep, generator, table, slots, chain_depth, None, severity)
    chains = image.reshape(width, *batch.image.shape)
    chain_fields = {k: v.reshape(width, n, *v.shape[1:]) for k, v in fields.items()}
    return AugMixParts(chains, chain_fields, weights, m, bool(geometric))


def mix(original: Tensor, chains: Tensor, weights: Tensor, m: Tensor) -> Tensor:
    """AugMix's mixture ``(1 - m) x + m sum_j w_j chain_j`` (convex: ``w`` on the simplex, m in [0, 1])."""
    view = (-1,) + (1,) * (original.ndim - 1)
    w = weights.t().to(original.dtype).reshape(chains.shape[0], *view)
    mixed = (w * chains).sum(0)
    mm = m.to(original.dtype).view(view)
    return (1.0 - mm) * original + mm * mixed


def augmix(
    batch: Batch,
    generator: torch.Generator,
    *,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    severity: float = 3,
    op_names: Sequence[str] | None = None,
    geometric: bool | None = None,
) -> Batch:
    """AugMix (Hendrycks et al. 2020): ``width`` chains of ``depth`` ops (-1: 1..3 per chain) from
    autocontrast (RGB only), equalize, posterize, rotate, solarize, shear and translate (each op's
    level U[0.1, severity] / 10), mixed with Dirichlet(alpha) weights and then with the original
    through m ~ Beta(alpha, alpha). The result is a convex combination, voxel by voxel.

    ``geometric`` (default: only when the batch has no mask) allows the geometric ops. Without
    them masks stay exactly as they are and every view stays aligned with the original, which
    the per-voxel JSD of a segmentation model needs; with them masks are mixed with the same
    weights (binary masks: weighted vote >= 0.5).
    """
    parts = augmix_parts(
        batch, generator, width=width, depth=depth, alpha=alpha, severity=severity,
        op_names=op_names, geometric=geometric,
    )
    image = mix(batch.image, parts.chains, parts.weights, parts.m)
    fields = _spatial_fields(batch)
    if parts.geometric:
        for k, v in fields.items():
            mixed = mix(v.to(image.dtype), parts.chain_fields[k].to(image.dtype), parts.weights, parts.m)
            fields[k] = ((mixed >= 0.5) if ops.is_binary(v) else mixed).to(v.dtype)
    return _rebuild(batch, image, fields)


# -- AugMix's Jensen-Shannon consistency ---------------------------------------------------------
def jensen_shannon_consistency(
    logits_clean: Tensor, logits_aug1: Tensor, logits_aug2: Tensor, task: str, *, reduction: str = "mean"
) -> Tensor:
    """AugMix's JS divergence of the three predictive distributions from their mean M:

        JS = (KL(p_c || M) + KL(p_1 || M) + KL(p_2 || M)) / 3 = H(M) - mean_i H(p_i),

    in nats, 0 iff the three agree, symmetric in its arguments, at most log(min(3, K)) for K
    outcomes. ``multiclass``: softmax over dim 1 of ``(B, K)``. ``multilabel``: a Bernoulli JS per
    finding of ``(B, F)``, averaged over findings (so at most log 2). ``segmentation``: per voxel
    of ``(B, K, *spatial)`` (softmax for K > 1, Bernoulli for K = 1), averaged over voxels. log M is
    a log-sum-exp of the log-probabilities, so no probability is clamped.

    Returns the batch mean (``reduction="mean"``) or per-case values ``(B,)`` (``"none"``).
    """
    fn = "jensen_shannon_consistency"
    _check_task(task, fn)
    if reduction not in ("mean", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean' or 'none', got {reduction!r}")
    for name, t in (("logits_aug1", logits_aug1), ("logits_aug2", logits_aug2)):
        if t.shape != logits_clean.shape:
            raise ValueError(f"{fn}: {name} {tuple(t.shape)} differs from logits_clean {tuple(logits_clean.shape)}")
    want = (4, 5) if task == "segmentation" else (2,)
    if logits_clean.ndim not in want:
        shape = "(B, K, *spatial) with 2 or 3 spatial axes" if task == "segmentation" else "(B, K)"
        raise ValueError(f"{fn}: {task} logits must be {shape}, got {tuple(logits_clean.shape)}")
    stacked = torch.stack([logits_clean, logits_aug1, logits_aug2], 0).float()
    if task == "multiclass" or (task == "segmentation" and stacked.shape[2] > 1):
        log_p = F.log_softmax(stacked, dim=2)  # (3, B, K, ...)
    else:  # Bernoulli: outcomes on a new axis 2
        log_p = torch.stack([F.logsigmoid(stacked), F.logsigmoid(-stacked)], 2)  # (3, B, 2, F, ...)
    log_m = torch.logsumexp(log_p, 0, keepdim=True) - math.log(3.0)
    js = (log_p.exp() * (log_p - log_m)).sum(2).mean(0)  # (B, ...) per finding / voxel
    per_case = (js.flatten(1).mean(1) if js.ndim > 1 else js).clamp_min(0.0)  # rounding can dip below 0
    return per_case.mean() if reduction == "mean" else per_case


# -- test-time augmentation ----------------------------------------------------------------------
def _shift(x: Tensor, shift: Sequence[int], fill: Tensor) -> Tensor:
    """Translate ``x (B, C, *spatial)`` by whole voxels; vacated voxels take ``fill`` (broadcast)."""
    out = fill.expand_as(x).clone()
    src, dst = [slice(None), slice(None)], [slice(None), slice(None)]
    for s, size in zip(shift, x.shape[2:]):
        if abs(s) >= size:
            return out
        src.append(slice(max(0, -s), size - max(0, s)))
        dst.append(slice(max(0, s), size - max(0, -s)))
    out[tuple(dst)] = x[tuple(src)]
    return out


def tta_views(
    spatial_shape: Sequence[int],
    n: int,
    generator: torch.Generator | None,
    flip_axes: Sequence[int] = (-1,),
    max_shift: float = 0.03,
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The ``n`` TTA views as (flipped spatial axes, integer shift per spatial axis).

    View 0 is the identity. View i flips by bit pattern ``i mod 2^len(flip_axes)``; its shift is
    0 for the first block and then, without a generator, +-m along one axis at a time (axes in
    turn), or with a generator, U{-m..m} per axis, m = round(max_shift * size) voxels (>= 1 when
    max_shift > 0).
    """
    d = len(spatial_shape)
    axes = tuple(sorted({int(a) % d for a in flip_axes}))
    limits = [max(1, round(max_shift * s)) if max_shift > 0 else 0 for s in spatial_shape]
    views = []
    n_flip = 2 ** len(axes)
    for i in range(n):
        flipped = tuple(a for b, a in enumerate(axes) if (i % n_flip) >> b & 1)
        j = i // n_flip
        shift = [0] * d
        if j > 0 and max_shift > 0:
            if generator is None:
                axis = ((j - 1) // 2) % d
                shift[axis] = limits[axis] * (1 if (j - 1) % 2 == 0 else -1)
            else:
                u = torch.rand(d, generator=generator, device=generator.device, dtype=torch.float64).tolist()
                shift = [min(int(v * (2 * m + 1)), 2 * m) - m for v, m in zip(u, limits)]
        views.append((flipped, tuple(shift)))
    return views


def _output_probabilities(logits: Tensor, task: str) -> Tensor:
    if task == "multiclass" or (task == "segmentation" and logits.shape[1] > 1):
        return torch.softmax(logits.float(), dim=1)
    return torch.sigmoid(logits.float())


def tta_predict(
    forward: Callable[[Batch], Tensor],
    batch: Batch,
    generator: torch.Generator | None,
    *,
    n: int = 8,
    task: str,
    flip_axes: Sequence[int] = (-1,),
    max_shift: float = 0.03,
) -> Tensor:
    """Mean probabilities over ``n`` flipped / shifted views of ``batch`` (see :func:`tta_views`).

    ``forward`` maps a Batch to logits: ``(B, K)`` for classification, ``(B, K, *spatial)`` for
    segmentation. Probabilities are softmax (multiclass, or segmentation with K > 1) or sigmoid.
    Segmentation outputs are flipped and shifted back before averaging, and each voxel is
    averaged over the views that saw it (view 0, the original, sees every voxel). Vacated voxels of
    a shifted image take each channel's minimum (masks: 0). Returns float32 probabilities.
    """
    fn = "tta_predict"
    _check_task(task, fn)
    batch = _check_batch(batch, fn)
    if generator is not None:
        _check_generator(generator, fn)
    if int(n) != n or n < 1:
        raise ValueError(f"{fn}: n must be an integer >= 1, got {n!r}")
    max_shift = _check_range("max_shift", max_shift, 0.0, 0.5, fn)
    d = batch.spatial_dims
    for a in flip_axes:
        if not -d <= int(a) < d:
            raise ValueError(f"{fn}: flip_axes entry {a} is not a spatial axis of a {d}-D image")
    image, fields = batch.image, _spatial_fields(batch)
    background = image.flatten(2).amin(-1).reshape(*image.shape[:2], *([1] * d))
    zero = torch.zeros((), dtype=image.dtype, device=image.device)
    total: Tensor | None = None
    cover: Tensor | None = None
    for flipped, shift in tta_views(batch.spatial_shape, int(n), generator, flip_axes, max_shift):
        dims = [2 + a for a in flipped]
        img = _shift(image.flip(dims) if dims else image, shift, background)
        moved = {k: _shift(v.flip(dims) if dims else v, shift, zero.to(v.dtype)) for k, v in fields.items()}
        logits = forward(_rebuild(batch, img, moved))
        if task == "segmentation":
            if logits.ndim != image.ndim or logits.shape[0] != batch.size or logits.shape[2:] != image.shape[2:]:
                raise ValueError(
                    f"{fn}: segmentation logits must be (B, K, *spatial) = ({batch.size}, K, "
                    f"{', '.join(map(str, batch.spatial_shape))}), got {tuple(logits.shape)}"
                )
            probs = _output_probabilities(logits, task)
            back = [-s for s in shift]
            seen = _shift(torch.ones_like(probs[:, :1]), back, torch.zeros((), device=probs.device))
            probs = _shift(probs, back, torch.zeros((), device=probs.device))
            probs, seen = (probs.flip(dims), seen.flip(dims)) if dims else (probs, seen)
        else:
            if logits.ndim != 2 or logits.shape[0] != batch.size:
                raise ValueError(f"{fn}: {task} logits must be (B, K) with B = {batch.size}, got {tuple(logits.shape)}")
            probs = _output_probabilities(logits, task)
            seen = torch.ones((), device=probs.device)
        total = probs * seen if total is None else total + probs * seen
        cover = seen if cover is None else cover + seen
    assert total is not None and cover is not None
    return total / cover
