"""Reference checks of the fast kernels (issue 18): each against the plain formula it replaces."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import c3_mri.functional.bias_field as bias_field
import c3_mri.functional.kspace as kspace
from c3_core.batch import Batch
from c3_mri.functional.slice_profile import apply_along_axis, slice_matrix
from c3_mri.operators.slice_profile import SliceProfile, SliceProfileParams


def _spike_reference(
    x: torch.Tensor, flat_index: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor
) -> torch.Tensor:
    """|x + A e^(iθ)| in complex128: A = amplitude · case mean, θ = φ + 2π Σ k r / n."""
    b, c, *sp = x.shape
    ks, rest = [], flat_index.clone()
    for n in reversed(sp):
        ks.append(rest % n)
        rest = rest // n
    ks.reverse()
    theta = phase.double().view(b, *[1] * (len(sp) + 1)).expand(b, 1, *sp).clone()
    for axis, (n, k) in enumerate(zip(sp, ks)):
        shape = [b, 1] + [1] * len(sp)
        shape[2 + axis] = n
        theta = theta + (2 * math.pi / n) * ((k.view(-1, 1) * torch.arange(n).view(1, -1)) % n).double().view(shape)
    amp = amplitude.double().view(b, 1, *[1] * len(sp)) * x.double().mean(dim=tuple(range(2, x.ndim)), keepdim=True)
    return (x.double() + amp * torch.exp(1j * theta)).abs()


@pytest.mark.parametrize("shape", [(3, 2, 5, 6, 7), (2, 1, 9, 11)])
def test_spike_slabs_give_the_whole_volume_formula(shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(shape, generator=g)
    b, sp = shape[0], shape[2:]
    index = torch.randint(0, math.prod(sp), (b,), generator=g)
    amp, phase = torch.rand(b, generator=g) * 0.5, torch.rand(b, generator=g) * 6.0 - 3.0
    monkeypatch.setattr(kspace, "SLAB_ELEMENTS", 16)  # slabs of 2-3 rows: the loop splits every case
    slabs = kspace.add_spike(x, index, amp, phase)
    with torch.enable_grad():  # the whole-volume path
        whole = kspace.add_spike(x.clone().requires_grad_(), index, amp, phase).detach()
    assert torch.allclose(slabs, whole, rtol=2.4e-7, atol=0.0)  # the same passes (an FMA may round a tail differently)
    assert torch.allclose(slabs.double(), _spike_reference(x, index, amp, phase), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("thick", [False, True])
def test_slice_profile_leaves_zero_far_from_the_object_and_matches_the_dense_product(thick: bool) -> None:
    vol = torch.zeros(1, 1, 4, 4, 96)
    vol[..., 40:56] = 1.0
    out = SliceProfile(slice_axis=2, thick=thick).apply(
        Batch(vol, ("e0",), "mri", "magnitude", ((1.0, 1.0, 1.0),)), [SliceProfileParams(5.0, 2, "gaussian", thick)]
    ).image
    tiny = torch.finfo(torch.float32).tiny
    assert not bool(((out != 0) & (out.abs() < tiny)).any())  # no subnormal values
    assert bool((out[..., :8] == 0).all()) and bool((out[..., -8:] == 0).all())  # 32+ voxels away: exactly 0
    mat = slice_matrix(96, torch.tensor([5.0], dtype=torch.float64), "gaussian", thick)
    dense = apply_along_axis(vol.double(), mat, 2)  # float64: no weight is flushed
    assert torch.allclose(out.double(), dense, rtol=1e-6, atol=1e-7)


# -- rigid motion (issue 18): pose grids, slab-parallel resampling, real FFTs in cache-sized pieces --
def _motion_reference(x: torch.Tensor, theta: torch.Tensor, segment_of_line: torch.Tensor, axis: int) -> torch.Tensor:
    """The plain definition (mri.motion v2): every pose through ``affine_grid`` + ``grid_sample``, the
    complex 1-D FFT along the phase-encode axis, each segment's lines picked, inverse FFT, ``abs``."""
    b, c, *sp = x.shape
    dim = 2 + axis
    k = torch.zeros((b, c, *sp), dtype=torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    for seg in range(theta.shape[1]):
        grid = F.affine_grid(theta[:, seg].to(x.dtype), [b, c, *sp], align_corners=False)
        spectrum = torch.fft.fft(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), dim=dim)
        mask = (segment_of_line == seg).view(b, *[1] * (axis + 1), sp[axis], *[1] * (len(sp) - axis - 1))
        k = torch.where(mask, spectrum, k)
    return torch.fft.ifft(k, dim=dim).abs().to(x.dtype)


def _motion_case(shape: tuple[int, ...], axis: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    b, c, *sp = shape
    d, segments = len(sp), 4
    x = torch.rand(shape, generator=g, dtype=dtype)
    angles = (torch.rand(b, segments, 3 if d == 3 else 1, generator=g, dtype=torch.float64) - 0.5) * 4.0  # degrees
    shifts = (torch.rand(b, segments, d, generator=g, dtype=torch.float64) - 0.5) * 3.0  # voxels
    seg, ref = kspace.segment_lines(sp[axis], segments)
    angles[:, ref], shifts[:, ref] = 0.0, 0.0  # the reference pose: the identity
    theta = kspace.rigid_theta(angles.reshape(b * segments, -1), shifts.reshape(b * segments, -1), tuple(sp))
    return x, theta.reshape(b, segments, d, d + 1), seg.unsqueeze(0).expand(b, -1).contiguous()


@pytest.mark.parametrize(("shape", "axis", "dtype", "tol"), [
    ((2, 1, 12, 14, 10), 1, torch.float64, 1e-12),
    ((1, 2, 11, 9, 13), 0, torch.float64, 1e-12),  # phase encode on axis 0: the pieces are cut along axis 1
    ((2, 1, 10, 12, 15), 2, torch.float32, 2e-6),
    ((3, 1, 17, 16), 1, torch.float64, 1e-12),
    ((2, 2, 15, 18), 0, torch.float32, 2e-6),
])
def test_motion_matches_the_grid_sample_definition(shape: tuple[int, ...], axis: int, dtype: torch.dtype, tol: float,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    x, theta, seg = _motion_case(shape, axis, dtype, seed=11)
    expected = _motion_reference(x, theta, seg, axis)
    whole = kspace.segmented_motion(x, theta, seg, axis)
    # agreement to float rounding: the identity pose is the object itself (the reference resampled it
    # through an identity grid: ~1e-7 relative in float32), real FFTs instead of complex ones
    assert torch.allclose(whole, expected, rtol=0.0, atol=tol * float(expected.abs().max()))
    monkeypatch.setattr(kspace, "CHUNK_ELEMENTS", 1)  # pieces of one line-set each: the same values
    assert torch.equal(kspace.segmented_motion(x, theta, seg, axis), whole)
    one_by_one = torch.cat([kspace.segmented_motion(x[i : i + 1], theta[i : i + 1], seg[i : i + 1], axis)
                            for i in range(x.shape[0])])
    assert torch.equal(one_by_one, whole)  # batch-invariant
    assert torch.equal(kspace.segmented_motion(x, theta, seg, axis), whole)  # deterministic


def test_motion_follows_autograd_and_matches_the_untracked_result() -> None:
    x, theta, seg = _motion_case((1, 1, 9, 10, 8), 1, torch.float64, seed=5)
    leaf = x.clone().requires_grad_()
    out = kspace.segmented_motion(leaf, theta, seg, 1)
    out.sum().backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) > 0.0
    assert torch.equal(out.detach(), kspace.segmented_motion(x, theta, seg, 1))


@pytest.mark.parametrize("shape", [(12, 14, 10), (17, 16)])
def test_pose_grid_is_affine_grid_and_resampling_does_not_depend_on_slabs_or_box(shape: tuple[int, ...]) -> None:
    d = len(shape)
    theta = kspace.rigid_theta(torch.tensor([[3.0, -2.0, 1.5][: 3 if d == 3 else 1]]), torch.tensor([[0.7, -1.2, 2.1][:d]]),
                               shape)[0]
    for dtype, tol in ((torch.float64, 1e-14), (torch.float32, 4e-7)):
        expected = F.affine_grid(theta[None].to(dtype), [1, 1, *shape], align_corners=False)[0]
        assert torch.allclose(kspace.pose_grid(theta, shape, dtype), expected, rtol=0.0, atol=tol)
    # a box that runs past the volume continues the same affine map
    box = ((3, shape[0] + 4), *((1, n - 1) for n in shape[1:]))
    grid = kspace.pose_grid(theta, shape, torch.float64, box)
    inner = kspace.pose_grid(theta, shape, torch.float64)[(slice(3, None), *(slice(1, n - 1) for n in shape[1:]))]
    assert grid.shape == (shape[0] + 1, *(n - 2 for n in shape[1:]), d)
    assert torch.allclose(grid[: shape[0] - 3], inner, rtol=0.0, atol=1e-15)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(3))
    whole = kspace.resample_rigid(x, theta, slabs=1)
    reference = F.grid_sample(x[None], F.affine_grid(theta[None].float(), [1, 2, *shape], align_corners=False),
                              mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    assert torch.allclose(whole, reference, rtol=0.0, atol=1e-5)
    for slabs in (2, 3, 5):
        assert torch.equal(kspace.resample_rigid(x, theta, slabs=slabs), whole)
    part = ((2, shape[0] - 1), *((0, n) for n in shape[1:]))
    assert torch.equal(kspace.resample_rigid(x, theta, slabs=2, box=part), whole[:, 2 : shape[0] - 1])


# -- bias field (issue 18): the field made, exponentiated and applied slab by slab ------------------
@pytest.mark.parametrize(("shape", "dtype"), [((2, 1, 9, 11, 7), torch.float32), ((2, 2, 9, 11, 7), torch.float64),
                                              ((3, 1, 13, 10), torch.float32)])
def test_bias_gain_slabs_equal_the_whole_field(shape: tuple[int, ...], dtype: torch.dtype,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(8)
    b, _, *sp = shape
    x = torch.rand(shape, generator=g, dtype=dtype)
    coeff = (torch.rand(b, 4 ** len(sp), generator=g) - 0.5) * 0.4
    spacing = torch.rand(b, len(sp), generator=g) + 0.5
    expected = x * bias_field.log_field(tuple(sp), spacing, coeff, 3).exp().unsqueeze(1).to(dtype)
    monkeypatch.setattr(bias_field, "SLAB_ELEMENTS", 16)  # slabs of 1-2 rows: the loop splits every case
    slabs = bias_field.apply_gain(x, spacing, coeff, 3)
    # the same matmul, exp and product per voxel; the matmul kernel chosen for a 1-row slab may round
    # the 4-term sum differently (an FMA): 1 ulp of the log field, ~1e-7 of the gain
    rtol = 5e-7 if dtype == torch.float32 else 1e-15
    assert slabs.dtype == dtype and torch.allclose(slabs, expected, rtol=rtol, atol=0.0)
    with torch.enable_grad():  # the whole-volume path
        whole = bias_field.apply_gain(x.clone().requires_grad_(), spacing, coeff, 3).detach()
    assert torch.equal(whole, expected)
    one_by_one = torch.cat([bias_field.apply_gain(x[i : i + 1], spacing[i : i + 1], coeff[i : i + 1], 3) for i in range(b)])
    assert torch.equal(one_by_one, slabs)  # batch-invariant
