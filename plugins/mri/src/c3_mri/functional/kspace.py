"""k-space artefact kernels on magnitude images ``(B, C, *sp)`` (2-D or 3-D).

The magnitude image is treated as the object (zero phase); k-space is its DFT over the spatial
axes, frequencies in cycles per voxel from ``torch.fft.fftfreq`` (no shifting needed), and the
artefacted image is the magnitude of the inverse DFT.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def _dims(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def to_kspace(x: Tensor) -> Tensor:
    return torch.fft.fftn(x, dim=_dims(x))


def to_magnitude(k: Tensor) -> Tensor:
    return torch.fft.ifftn(k, dim=_dims(k)).abs()


def _axis_view(v: Tensor, axis: int, ndim_sp: int) -> Tensor:
    """(B, n) -> (B, 1, 1.., n, 1..) with n on spatial ``axis``."""
    shape = [v.shape[0], 1] + [1] * ndim_sp
    shape[2 + axis] = v.shape[1]
    return v.reshape(shape)


def truncate(x: Tensor, kept_fraction: Tensor) -> Tensor:
    """Keep the central ``kept_fraction (B,)`` of k-space along every spatial axis (Gibbs ringing).

    The mask is symmetric in frequency, so the truncated spectrum of a real image stays Hermitian
    and its inverse is real: computed with the real-input FFTs (half the spectrum), the magnitude
    is the absolute value of that real image.
    """
    dims = tuple(range(1, x.ndim - 1))  # the spatial axes of one case
    d = x.ndim - 2
    out = torch.empty_like(x)
    for i in range(x.shape[0]):  # case by case: a batched real FFT may round differently from a lone one
        k = torch.fft.rfftn(x[i], dim=dims)
        for axis, n in enumerate(x.shape[2:]):
            last = axis == d - 1
            f = (torch.fft.rfftfreq(n, device=x.device) if last else torch.fft.fftfreq(n, device=x.device)).abs()  # cycles / voxel
            keep = (f.unsqueeze(0) <= 0.5 * kept_fraction[i : i + 1].view(-1, 1) + 1e-9).to(k.real.dtype)  # as a batch would compare
            k.mul_(_axis_view(keep, axis, d)[0])  # one small factor per axis, in place
        out[i] = torch.fft.irfftn(k, s=x.shape[2:], dim=dims).abs_()
    return out


def nyquist_ghost(x: Tensor, amplitude: Tensor, axis: int) -> Tensor:
    """N/2 ghost: odd phase-encode lines scaled by (1 − 2a).

    The result is (1 − a) x + a x shifted by N/2 along ``axis`` (before the magnitude), so ``a``
    (B,) is the ghost's amplitude relative to the original object.
    """
    n = x.shape[2 + axis]
    if n % 2 == 0:
        # odd lines x (1 - 2a) in k-space == (1 - a) x + a x shifted by N/2 in image space (exact
        # for even N), so no FFT is needed
        a = amplitude.view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        return torch.roll(x, n // 2, dims=2 + axis).lerp_(x, 1.0 - a).abs_()  # three passes: roll, blend, magnitude
    k = to_kspace(x)
    odd = (torch.arange(n, device=x.device) % 2 == 1).to(x.dtype)
    scale = 1.0 - 2.0 * amplitude.view(-1, 1).to(x.dtype) * odd.unsqueeze(0)
    return to_magnitude(k * _axis_view(scale, axis, x.ndim - 2)).to(x.dtype)


SLAB_ELEMENTS = 1 << 17  # elements per slab of add_spike's slab loop on the CPU (512 KiB of float32)


def add_spike(x: Tensor, flat_index: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
    """Add a k-space spike per case at ``flat_index (B,)`` (index into the flattened spatial DFT).

    Its complex value is ``amplitude · k[0] · e^(iφ)`` where k[0] is the DC term (sum of the
    image), so in the image it is a plane-wave stripe pattern of amplitude ``amplitude`` × the
    image mean. One k-space sample is a plane wave in image space, so no FFT is needed: the
    inverse DFT of the spike is A e^(iθ(r)) with A = amplitude · mean and θ(r) = φ + Σ_axis
    2π k_axis r_axis / n_axis, and the magnitude of the zero-phase image plus it is

        |x + A e^(iθ)| = sqrt((x + A cos θ)² + (A sin θ)²),

    with A cos θ and A sin θ built separably (the phasor of the leading axes times the last
    axis' cos and sin): the DFT pair, exactly, in real element-wise passes. The square root of the
    sum of squares, not ``hypot``: the same value to float rounding (1 ulp), without hypot's guard
    against squares beyond the float range (intensities above 1e19), which costs ~2 ns a voxel on
    the CPU, more than the rest together. The mean is summed case by case (so a case gets the same
    value in any batch).
    """
    b, c = x.shape[:2]
    sp = x.shape[2:]
    ks, rest = [], flat_index.to(torch.int64)  # per-axis frequency index of the flat DFT index (C order)
    for n in reversed(sp):
        ks.append(rest % n)
        rest = rest // n
    ks.reverse()
    count = x[0, 0].numel()
    mean = torch.stack([x[i].reshape(c, -1).sum(-1) for i in range(b)]).double() / count  # (B, C); per case: batch-invariant
    amp = amplitude.double().view(-1, 1).to(mean.device) * mean  # A per case and channel
    angles = []
    for n, k in zip(sp, ks):
        r = torch.arange(n, device=x.device, dtype=torch.float64)
        angles.append((2.0 * torch.pi / n) * ((k.to(x.device).view(-1, 1) * r.view(1, -1)) % n))  # (B, n), reduced mod n
    lead = torch.polar(amp, phase.double().view(-1, 1).to(amp.device).expand(b, c)).view(b, c, *[1] * len(sp))
    for axis, angle in enumerate(angles[:-1]):
        shape = [b, 1] + [1] * len(sp)
        shape[2 + axis] = sp[axis]
        lead = lead * torch.polar(torch.ones_like(angle), angle).view(shape)  # small: the leading axes only
    last = [b, 1] + [1] * (len(sp) - 1) + [sp[-1]]
    cos, sin = torch.cos(angles[-1]).to(x.dtype).view(last), torch.sin(angles[-1]).to(x.dtype).view(last)
    re, im = lead.real.to(x.dtype), lead.imag.to(x.dtype)
    if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
        real = torch.mul(re, cos).addcmul_(im, sin, value=-1.0).add_(x)  # x + A cos θ
        imag = torch.mul(re, sin).addcmul_(im, cos)  # A sin θ
        return real.mul(real).addcmul_(imag, imag).sqrt_()
    # on the CPU, the same passes slab by slab (rows of the last axis, one case at a time), each slab
    # small enough to stay in cache: the volume is read once (plus the mean) and the output written
    # once, and A sin θ lives in a slab-sized scratch buffer instead of a second full-size one
    n = sp[-1]
    rows = x[0].numel() // n  # rows of the last axis per case
    step = max(1, SLAB_ELEMENTS // n)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    flat_x, flat_out = x.reshape(b, rows, n), out.view(b, rows, n)
    flat_re = re.expand(b, c, *sp[:-1], 1).reshape(b, rows, 1)
    flat_im = im.expand(b, c, *sp[:-1], 1).reshape(b, rows, 1)
    scratch = torch.empty((min(step, rows), n), dtype=x.dtype, device=x.device)
    for i in range(b):
        cos_i, sin_i = cos[i].view(1, n), sin[i].view(1, n)
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            real, imag = flat_out[i, r0:r1], scratch[: r1 - r0]
            re_s, im_s = flat_re[i, r0:r1], flat_im[i, r0:r1]
            torch.mul(re_s, cos_i, out=real).addcmul_(im_s, sin_i, value=-1.0).add_(flat_x[i, r0:r1])  # x + A cos θ
            torch.mul(re_s, sin_i, out=imag).addcmul_(im_s, cos_i)  # A sin θ
            real.mul_(real).addcmul_(imag, imag).sqrt_()
    return out


def rigid_theta(angles_deg: Tensor, shifts_vox: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Affine matrices (N, d, d+1) in ``grid_sample``'s normalised (x, y[, z]) convention.

    ``angles_deg (N, 3)`` (3-D: rotations about spatial axes 0, 1, 2; 2-D: (N, 1)) and
    ``shifts_vox (N, d)`` in voxels along the spatial axes. Rotation is about the volume centre,
    in voxel units (the caller makes the voxels isotropic-equivalent via spacing if it wishes).
    """
    d = len(shape)
    a = torch.deg2rad(angles_deg.double())
    n = a.shape[0]
    if d == 2:
        c, s = torch.cos(a[:, 0]), torch.sin(a[:, 0])
        rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    else:
        rot = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
        for ax in range(3):
            i, j = [q for q in range(3) if q != ax]
            c, s = torch.cos(a[:, ax]), torch.sin(a[:, ax])
            r = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
            r[:, i, i], r[:, i, j], r[:, j, i], r[:, j, j] = c, -s, s, c
            rot = rot @ r
    size = torch.tensor(shape, dtype=torch.float64)
    # centred voxel coordinates v -> normalised u = D v (align_corners=False); the moved object
    # is new(v) = old(R^T (v - t)), so the output at u samples the input at D R^T (D^-1 u - t)
    to_norm = torch.diag(2.0 / size)
    rot_t = rot.transpose(1, 2)
    lin_inv = to_norm @ rot_t @ torch.diag(size / 2.0)
    trans = -(to_norm @ rot_t @ shifts_vox.double().unsqueeze(-1))
    theta = torch.cat([lin_inv, trans], -1)
    flip = list(range(d))[::-1]  # spatial order -> grid_sample's (x, y, z)
    theta = theta[:, flip][:, :, flip + [d]]
    return theta


def segmented_motion(x: Tensor, theta: Tensor, segment_of_line: Tensor, axis: int) -> Tensor:
    """Rigid motion between k-space segments along the phase-encode ``axis``.

    ``theta (B, S, d, d+1)`` is the pose of segment s (grid_sample convention); ``segment_of_line
    (B, n)`` (long) says which segment acquired each phase-encode line (DFT order). Each line of
    the output's k-space comes from the object in that segment's pose.
    """
    b, c = x.shape[:2]
    s = theta.shape[1]
    sp = x.shape[2:]
    # the segment masks act along the phase-encode axis only, so the DFTs along the other axes
    # cancel: per segment, the object in that pose (one grid_sample over the batch), its 1-D FFT
    # along that axis, and only the segment's own lines copied into the combined k-space; then one
    # 1-D inverse FFT (no S-fold copy of the input, no masked sum over segments)
    dim = 2 + axis
    k = torch.empty((b, c, *sp), device=x.device, dtype=torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    for seg in range(s):
        grid = F.affine_grid(theta[:, seg].to(x.dtype), [b, c, *sp], align_corners=False)
        moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        spectrum = torch.fft.fft(moved, dim=dim)
        for i in range(b):  # the lines each case's segment acquired
            lines = (segment_of_line[i] == seg).nonzero().view(-1)
            k[i].index_copy_(dim - 1, lines, spectrum[i].index_select(dim - 1, lines))
    return torch.fft.ifft(k, dim=dim).abs().to(x.dtype)


def segment_lines(n: int, segments: int, device: torch.device | str = "cpu") -> tuple[Tensor, int]:
    """Segment index of each phase-encode line (DFT order) for a sequential acquisition in
    ``segments`` contiguous blocks of k_y from −k_max to +k_max, and the index of the segment that
    holds the k-space centre (it defines the reference pose)."""
    f = torch.fft.fftfreq(n, device=device)
    rank = torch.argsort(torch.argsort(f))  # position in the −k_max..+k_max sweep
    seg = torch.clamp((rank * segments) // n, max=segments - 1)
    return seg.long(), int(seg[0])

