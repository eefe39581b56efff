"""k-space artefact kernels on magnitude images ``(B, C, *sp)`` (2-D or 3-D).

The magnitude image is treated as the object (zero phase); k-space is its DFT over the spatial
axes, frequencies in cycles per voxel from ``torch.fft.fftfreq`` (no shifting needed), and the
artefacted image is the magnitude of the inverse DFT.
"""

from __future__ import annotations

import math

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


SLAB_ELEMENTS = 1 << 18  # voxels per slab of add_spike's loop on the CPU (its scratch holds 2x: A cos θ, A sin θ)


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
    # on the CPU, slab by slab (rows of the last axis, one case at a time), each slab small enough to
    # stay in cache: the volume is read once (plus the mean) and the output written once. A cos θ and
    # A sin θ are rank-2 outer products (the rows' phasor times the last axis' cos and sin): both come
    # from one small matmul with an inner dimension of 2, [re, im] @ [[cos, sin], [−sin, cos]], into a
    # slab-sized scratch buffer (the same two products and one sum per voxel as the broadcast passes
    # above, in one pass)
    n = sp[-1]
    rows = x[0].numel() // n  # rows of the last axis per case
    step = max(1, SLAB_ELEMENTS // n)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    flat_x, flat_out = x.reshape(b, rows, n), out.view(b, rows, n)
    phasor = torch.stack([re.expand(b, c, *sp[:-1], 1).reshape(b, rows), im.expand(b, c, *sp[:-1], 1).reshape(b, rows)], -1)
    scratch = torch.empty((min(step, rows), 2 * n), dtype=x.dtype, device=x.device)
    for i in range(b):
        turn = torch.stack([torch.cat([cos[i].view(n), sin[i].view(n)]), torch.cat([-sin[i].view(n), cos[i].view(n)])])
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            both = torch.mm(phasor[i, r0:r1], turn, out=scratch[: r1 - r0])  # [A cos θ | A sin θ] per row
            real, imag = both[:, :n].add_(flat_x[i, r0:r1]), both[:, n:]  # x + A cos θ, A sin θ
            torch.mul(real, real, out=flat_out[i, r0:r1]).addcmul_(imag, imag).sqrt_()
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


IDENTITY_TOLERANCE = 1e-12  # a pose within this of [I | 0] (normalised units) is the object itself
# voxels per piece of segmented_motion's loop on the CPU: its buffers (the grid: 12 bytes a voxel) stay
# below glibc's largest mmap threshold (32 MiB), so they are reused, not page-faulted anew; few pieces,
# since each is a few dozen parallel regions
CHUNK_ELEMENTS = 1 << 21

Box = tuple[tuple[int, int], ...]  # (start, stop) voxel index range per spatial axis


def pose_grid(theta: Tensor, shape: tuple[int, ...], dtype: torch.dtype, box: Box | None = None) -> Tensor:
    """``grid_sample`` grid ``(*box sizes, d)`` of one affine pose ``theta (d, d+1)`` over the output
    voxels ``box`` (index ranges per axis, default the whole ``shape``; they may run past it).

    The same sampling positions as ``F.affine_grid(theta[None], (1, 1, *shape), align_corners=False)``
    (to float rounding, ~1e-7 of the half-width): the normalised centre of voxel i along an axis of
    n voxels is (2i + 1) / n − 1, and the affine map is a sum of one term per axis, so the leading
    axes are summed on their small grid in float64 and the last axis is added in one broadcast pass
    that writes the grid (no (..., d + 1) homogeneous base grid and no batched matmul). The result
    is a strided view of d coordinate planes.
    """
    d = len(shape)
    box = tuple((0, n) for n in shape) if box is None else box
    th = theta.to(torch.float64)

    def term(axis: int) -> Tensor:  # (voxels of the box along ``axis``, d): their (x, y[, z]) grid offsets
        start, stop = box[axis]
        index = torch.arange(start, stop, device=th.device, dtype=torch.float64)
        centre = (2.0 * index + 1.0) / shape[axis] - 1.0
        return centre.unsqueeze(1) * th[:, d - 1 - axis].unsqueeze(0)  # grid column j is spatial axis d - 1 - j

    sizes = [stop - start for start, stop in box]
    lead = th[:, d].view(d, *[1] * (d - 1))  # the translation, then one leading axis at a time
    for axis in range(d - 1):
        view = [1] * (d - 1)
        view[axis] = sizes[axis]
        lead = lead + term(axis).t().reshape(d, *view)  # (d, *sizes[:-1]), float64
    # one plane per grid coordinate, each a broadcast add along the contiguous last axis (a grid built
    # as (..., d) directly is an add whose innermost dimension has d elements: an order of magnitude
    # slower); grid_sample reads the grid through its strides, so the (..., d) view is not copied
    last = term(d - 1).to(dtype).t().contiguous()  # (d, n_last), contiguous: the add's inner loop vectorises
    planes = torch.add(lead.to(dtype).unsqueeze(-1), last.view(d, *[1] * (d - 1), sizes[-1]))
    return planes.permute(*range(1, d + 1), 0)


def resample_rigid(x: Tensor, theta: Tensor, slabs: int = 1, box: Box | None = None) -> Tensor:
    """One case ``x (C, *sp)`` resampled into pose ``theta (d, d+1)`` (bilinear/trilinear, zeros
    outside) over the output voxels ``box`` (default all) -> ``(C, *box sizes)``: the box of
    ``F.grid_sample(x[None], F.affine_grid(theta[None], ...), align_corners=False)[0]``.

    ``slabs``: the box is cut into that many slabs along the first spatial axis, sampled as the
    batch of one ``grid_sample`` call over an expanded (stride-0) input: the CPU kernel of a 3-D
    ``grid_sample`` runs its batch in parallel and nothing else, so one case in one piece uses one
    thread. Every output voxel depends only on its own grid position, so the result does not depend
    on ``slabs`` or on the box.
    """
    c, sp = x.shape[0], tuple(x.shape[1:])
    box = tuple((0, n) for n in sp) if box is None else box
    (start, stop), rest = box[0], box[1:]
    rows = stop - start
    slabs = max(1, min(int(slabs), rows))
    depth = -(-rows // slabs)  # rows per slab; the last slab may run past the box (cropped)
    grid = pose_grid(theta, sp, x.dtype, ((start, start + depth * slabs), *rest))
    grid = grid.view(slabs, depth, *grid.shape[1:])
    moved = F.grid_sample(x.unsqueeze(0).expand(slabs, c, *sp), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # (slabs, C, depth, ...)
    return moved.transpose(0, 1).reshape(c, depth * slabs, *moved.shape[3:])[:, :rows]


def _line_runs(segment_of_line: Tensor) -> list[tuple[int, int, int]]:
    """Runs ``(start, stop, segment)`` of consecutive phase-encode lines (DFT order) of one segment."""
    seg = [int(v) for v in segment_of_line.tolist()]
    runs, start = [], 0
    for i in range(1, len(seg) + 1):
        if i == len(seg) or seg[i] != seg[start]:
            runs.append((start, i, seg[start]))
            start = i
    return runs


def segmented_motion(x: Tensor, theta: Tensor, segment_of_line: Tensor, axis: int) -> Tensor:
    """Rigid motion between k-space segments along the phase-encode ``axis``.

    ``theta (B, S, d, d+1)`` is the pose of segment s (grid_sample convention); ``segment_of_line
    (B, n)`` (long) says which segment acquired each phase-encode line (DFT order). Each line of
    the output's k-space comes from the object in that segment's pose.

    The segment masks act along the phase-encode axis only, so the DFTs along the other axes
    cancel: per segment, the object in that pose, its real 1-D FFT along that axis (half the
    spectrum; line n − k is the conjugate of line k), and only the segment's own lines copied into
    the combined k-space; then one 1-D inverse FFT and the magnitude. A pose equal to the identity
    (the reference segment) is the object itself, not resampled. Each line is independent of the
    others, so on the CPU a case is computed in pieces of whole lines (up to ``CHUNK_ELEMENTS``
    voxels, cut along another axis) whose buffers are reused, and each resampling runs as
    ``torch.get_num_threads()`` slabs (see :func:`resample_rigid`). Cases are computed one at a time.
    """
    b, c = x.shape[:2]
    s = theta.shape[1]
    sp = tuple(x.shape[2:])
    d = len(sp)
    dim = 1 + axis  # the phase-encode axis of one case (C, *sp)
    n = sp[axis]
    half = n // 2 + 1  # lines 0..n//2 of the real FFT; line j > n//2 is conj(line n - j)
    slabs = torch.get_num_threads() if x.device.type == "cpu" else 1
    cut = 1 if axis == 0 else 0  # pieces along this spatial axis
    # pieces matter for the CPU's memory (and caches); a GPU takes the whole case at once
    pieces = -(-c * math.prod(sp) // CHUNK_ELEMENTS) if x.device.type == "cpu" else 1
    step = -(-sp[cut] // max(1, min(pieces, sp[cut])))  # as even as possible
    step = -(-step // slabs) * slabs  # whole slabs
    identity = torch.eye(d, d + 1, dtype=theta.dtype, device=theta.device)
    complex_dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    track = torch.is_grad_enabled() and (x.requires_grad or theta.requires_grad)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for i in range(b):
        runs = _line_runs(segment_of_line[i])
        poses = [(seg, [(a, e) for a, e, q in runs if q == seg]) for seg in range(s)]
        still = [bool((theta[i, seg] - identity).abs().max() <= IDENTITY_TOLERANCE) for seg in range(s)]
        for lo in range(0, sp[cut], step):
            hi = min(sp[cut], lo + step)
            box = tuple((lo, hi) if a == cut else (0, sp[a]) for a in range(d))
            k = torch.empty((c, *(e - a for a, e in box)), device=x.device, dtype=complex_dtype)
            for seg, lines in poses:
                if not lines:
                    continue
                if still[seg]:
                    moved = x[i].narrow(1 + cut, lo, hi - lo)
                else:
                    moved = resample_rigid(x[i], theta[i, seg], slabs, box)
                spectrum = torch.fft.rfft(moved, dim=dim)
                for a, e in lines:
                    if a < half:  # non-negative frequencies: as they are
                        top = min(e, half)
                        k.narrow(dim, a, top - a).copy_(spectrum.narrow(dim, a, top - a))
                    if e > half:  # negative frequencies: line j is conj(line n - j), in reverse order
                        first = max(a, half)
                        k.narrow(dim, first, e - first).copy_(spectrum.narrow(dim, n - e + 1, e - first).flip(dim).conj())
            z = torch.view_as_real(torch.fft.ifft(k, dim=dim))
            re, im = z[..., 0], z[..., 1]
            # |z| as sqrt(re² + im²) (complex abs, a hypot, costs ~10x more on the CPU), in place in the
            # output unless autograd is recording (it takes no out= arguments)
            dest = out[i].narrow(1 + cut, lo, hi - lo)
            if track:
                dest.copy_((re * re).addcmul(im, im).sqrt())
            else:
                torch.mul(re, re, out=dest).addcmul_(im, im).sqrt_()
    return out


def segment_lines(n: int, segments: int, device: torch.device | str = "cpu") -> tuple[Tensor, int]:
    """Segment index of each phase-encode line (DFT order) for a sequential acquisition in
    ``segments`` contiguous blocks of k_y from −k_max to +k_max, and the index of the segment that
    holds the k-space centre (it defines the reference pose)."""
    f = torch.fft.fftfreq(n, device=device)
    rank = torch.argsort(torch.argsort(f))  # position in the −k_max..+k_max sweep
    seg = torch.clamp((rank * segments) // n, max=segments - 1)
    return seg.long(), int(seg[0])

