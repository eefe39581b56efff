"""Reference checks of the fast kernels (issue 18): each against the plain formula it replaces."""

from __future__ import annotations

import math

import pytest
import torch

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
