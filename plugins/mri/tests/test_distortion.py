"""B0 distortion kernels: the 1-D interpolation along an axis and the inverse of the displacement."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from c3_mri.functional.distortion import AxisWarp, distort, inverse_positions, quadratic_inverse


def _grid_sample_along(volume: torch.Tensor, pos: torch.Tensor, axis: int) -> torch.Tensor:
    """The reference: ``grid_sample`` (bilinear / trilinear, border) with the other coordinates at
    the voxel centres, so only the axis interpolates."""
    b, _, *sp = volume.shape
    coords = [(torch.arange(n, dtype=volume.dtype) * 2 + 1) / n - 1 for n in sp]
    mesh = [c.view(*[n if a == i else 1 for a, n in enumerate(sp)]).expand(b, *sp) for i, c in enumerate(coords)]
    mesh[axis] = (2 * pos + 1) / sp[axis] - 1
    return F.grid_sample(volume, torch.stack(mesh[::-1], -1), mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.parametrize("shape", [(12, 10, 9), (16, 11)])
def test_axis_sampling_matches_grid_sample(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    volume = torch.rand(2, 3, *shape, generator=g)
    for axis, n in enumerate(shape):
        pos = torch.rand(2, *shape, generator=g) * (n + 4) - 2  # inside and beyond both ends
        pos[0].view(-1)[:3] = torch.tensor([0.0, n - 1.0, 2.0])  # exactly on voxels, the last included
        got = AxisWarp.at(pos, axis).sample(volume)
        torch.testing.assert_close(got, _grid_sample_along(volume, pos, axis), rtol=0, atol=2e-6)


def _quadratic_shift(shape: tuple[int, ...], axis: int, generator: torch.Generator) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """A shift Δ(p) = a + b·p + c·p² along ``axis`` whose coefficients vary across the other axes."""
    planes = [torch.rand(1, *[1 if i == axis else n for i, n in enumerate(shape)], generator=generator, dtype=torch.float64) for _ in range(3)]
    a, b, c = planes[0] * 4 - 2, (planes[1] - 0.5) * 0.3, (planes[2] - 0.5) * 0.01
    p = torch.arange(shape[axis], dtype=torch.float64).view(*[n if i == axis else 1 for i, n in enumerate(shape)]).unsqueeze(0)
    return (a + b * p + c * p * p).float(), (a, b, c)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_quadratic_inverse_is_exact(axis: int) -> None:
    shape = (20, 24, 18)
    shift, (a, b, c) = _quadratic_shift(shape, axis, torch.Generator().manual_seed(axis))
    p, dp_dq = quadratic_inverse(shift, axis)
    q = torch.arange(shape[axis], dtype=torch.float64).view(*[n if i == axis else 1 for i, n in enumerate(shape)]).unsqueeze(0)
    pd = p.double()
    assert float((pd + a + b * pd + c * pd * pd - q).abs().max()) < 2e-5  # p + Δ(p) = q, beyond the ends too
    torch.testing.assert_close(dp_dq.double(), 1.0 / (1.0 + b + 2.0 * c * pd), rtol=1e-5, atol=1e-6)
    # the fixed point (v2's inverse) agrees where it reads the field inside the volume, up to its
    # linear interpolation of the curved field between voxels (|c| / 8 = 6e-4 voxels here, per step)
    inside = (p > 1) & (p < shape[axis] - 2)
    iterated = inverse_positions(shift, axis, iterations=30)
    assert float((iterated - p)[inside].abs().max()) < 5e-3


def test_quadratic_inverse_needs_three_voxels() -> None:
    with pytest.raises(ValueError, match="at least 3 voxels"):
        quadratic_inverse(torch.zeros(1, 4, 2), 1)


def test_distortion_conserves_signal_away_from_the_edges() -> None:
    # a smooth blob displaced by a quadratic field: the Jacobian keeps its integral along each line
    shape = (6, 64)
    shift, _ = _quadratic_shift(shape, 1, torch.Generator().manual_seed(5))
    x = torch.arange(64, dtype=torch.float32)
    blob = torch.exp(-0.5 * ((x - 32) / 4) ** 2).expand(1, 1, *shape).contiguous()
    out, warp = distort(blob, shift, 1, quadratic=True)
    torch.testing.assert_close(out.sum(-1), blob.sum(-1), rtol=2e-3, atol=0)
    assert warp.positions.shape == (1, *shape)
