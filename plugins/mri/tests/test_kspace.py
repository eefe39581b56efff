"""k-space artefacts against their closed forms: N/2 ghost, Gibbs overshoot, spike stripes, segmented motion."""

from __future__ import annotations

import math

import pytest
import torch

from c3_core.batch import Batch
from c3_core.seeding import generator_from_seed
from c3_mri.functional.kspace import rigid_theta, segment_lines, segmented_motion, truncate
from c3_mri.operators.kspace import (
    Ghosting,
    GhostParams,
    GibbsParams,
    GibbsTruncation,
    MotionParams,
    RigidMotion,
    Spike,
    SpikeParams,
)


def _batch(image: torch.Tensor, spacing: tuple[float, ...] | None = None) -> Batch:
    b, d = image.shape[0], image.ndim - 2
    sp = spacing or (1.0,) * d
    return Batch(image, tuple(f"e{i}" for i in range(b)), "mri", "magnitude", (sp,) * b)


def test_nyquist_ghost_has_the_declared_amplitude_and_position() -> None:
    img = torch.zeros(1, 1, 16, 32, dtype=torch.float64)
    img[0, 0, 8, 5] = 1.0
    out = Ghosting(phase_axis=1).apply(_batch(img), [GhostParams(0.2, 1)]).image[0, 0]
    assert float(out[8, 5]) == pytest.approx(0.8, abs=1e-6)  # (1 - a) object
    assert float(out[8, 5 + 16]) == pytest.approx(0.2, abs=1e-6)  # a ghost, shifted by N/2 along phase encode
    out[8, 5], out[8, 21] = 0.0, 0.0
    assert float(out.abs().max()) < 1e-6  # nothing else
    same = Ghosting().apply(_batch(img), [GhostParams(0.0, 1)]).image
    assert torch.allclose(same, img, atol=1e-12)


def test_gibbs_overshoot_of_a_step_is_about_nine_percent() -> None:
    n = 256
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., n // 4 : 3 * n // 4] = 1.0
    ring = truncate(x, torch.tensor([0.25], dtype=torch.float64))[0, 0]
    # the Wilbraham-Gibbs constant: overshoot -> 0.0895 of the jump as the kept band shrinks relative to n
    assert float(ring.max()) - 1.0 == pytest.approx(0.0895, abs=0.012)
    assert torch.allclose(truncate(x, torch.tensor([1.0], dtype=torch.float64)), x, atol=1e-12)  # all kept: identity
    out = GibbsTruncation().apply(_batch(x.float().unsqueeze(2).expand(1, 1, 4, n).contiguous()), [GibbsParams(0.5)]).image
    assert out.shape == (1, 1, 4, n) and out.dtype == torch.float32


def test_spike_adds_a_plane_wave_of_the_declared_amplitude() -> None:
    img = torch.ones(1, 1, 32, 32, dtype=torch.float64)
    p = SpikeParams(position=(0.25, 0.125), amplitude=0.3, phase_rad=0.4)
    out = Spike().apply(_batch(img), [p]).image[0, 0]
    # |1 + a exp(i(2 pi (fx x + fy y) + phi))| swings between 1 - a and 1 + a
    assert 0.7 - 1e-9 <= float(out.min()) and float(out.max()) <= 1.3 + 1e-9
    xs, ys = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    expected = (1 + 0.3 * torch.exp(1j * (2 * math.pi * (0.25 * xs + 0.125 * ys) + 0.4))).abs()
    assert torch.allclose(out, expected.double(), atol=1e-9)


def test_spike_is_a_pattern_not_a_brightness_change() -> None:
    img = torch.rand(6, 1, 24, 24, generator=torch.Generator().manual_seed(0)) + 1.0
    b = _batch(img)
    g = generator_from_seed(3)
    params = [Spike().sample_params(b.case_info(i), g, Spike.severity.extreme) for i in range(b.size)]
    assert all(max(abs(f) for f in p.position) >= 0.05 for p in params)
    out = Spike().apply(b, params)
    # a non-DC spike leaves the image mean nearly unchanged (magnitude only adds second order)
    assert torch.allclose(out.image.mean((1, 2, 3)), img.mean((1, 2, 3)), rtol=0.1)


def test_segment_lines_cover_k_space_in_contiguous_blocks() -> None:
    seg, ref = segment_lines(16, 4)
    f = torch.fft.fftfreq(16)
    order = torch.argsort(f)
    assert seg[order].tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4  # sequential sweep -kmax..+kmax
    assert ref == int(seg[0]) == 2  # the segment that holds k = 0


def test_motion_without_movement_is_the_identity_and_a_shared_shift_is_a_shift() -> None:
    img = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
    img[0, 0, 8:14, 9:15] = torch.rand(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    still = MotionParams(1, 4, ((0.0,),) * 4, ((0.0, 0.0),) * 4)
    assert torch.allclose(RigidMotion().apply(_batch(img), [still]).image, img, atol=1e-9)
    # every segment moved by the same whole-voxel shift: the object is simply shifted, no ghosts
    seg, _ = segment_lines(24, 4)
    theta = rigid_theta(torch.zeros(4, 1), torch.tensor([[2.0, -3.0]] * 4), (24, 24))
    out = segmented_motion(img, theta.unsqueeze(0), seg.unsqueeze(0), axis=1)[0, 0]
    assert torch.allclose(out, torch.roll(img[0, 0], (2, -3), (0, 1)), atol=1e-6)


def test_motion_between_segments_spreads_energy_along_phase_encode_only() -> None:
    img = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    img[0, 0, 12:20, 12:20] = 1.0
    moved = [(0.0, 0.0)] * 4
    moved[0] = (2.0, 0.0)  # one outer segment saw the object shifted along axis 0 (read-out)
    p = MotionParams(1, 4, ((0.0,),) * 4, tuple(moved))
    out = RigidMotion().apply(_batch(img), [p]).image[0, 0]
    outside = out.clone()
    outside[10:22, 12:20] = 0.0
    # artefact energy outside the object (plus its 2-voxel motion range) stays in the object's rows:
    # ghosts replicate along the phase-encode axis (1), not along read-out (0)
    rows_with_ghost = (outside.abs() > 1e-3).any(1).nonzero().flatten()
    assert rows_with_ghost.numel() > 0 and int(rows_with_ghost.min()) >= 10 and int(rows_with_ghost.max()) < 22


def test_motion_severity_draws_within_range_and_keeps_the_reference_segment() -> None:
    img = torch.rand(3, 1, 16, 16, 8)
    amplitude = RigidMotion.severity.extreme
    out = RigidMotion(segments=4)(_batch(img, (1.0, 1.0, 2.0)), generator_from_seed(7), amplitude)
    assert out.image.shape == img.shape and torch.isfinite(out.image).all()
    op = RigidMotion(segments=4)
    info = _batch(img, (1.0, 1.0, 2.0)).case_info(0)
    params = op.sample_params(info, generator_from_seed(9), amplitude)
    _, ref = segment_lines(16, 4)
    assert all(v == 0.0 for v in params.translations_mm[ref] + params.rotations_deg[ref])
    assert all(abs(v) <= amplitude for seg in params.translations_mm + params.rotations_deg for v in seg)
    with pytest.raises(ValueError, match="segments"):
        RigidMotion(segments=1)


def test_ghost_shortcut_equals_the_k_space_definition() -> None:
    x = torch.rand(2, 1, 6, 10, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = torch.tensor([0.1, 0.2], dtype=torch.float64)
    k = torch.fft.fftn(x, dim=(2, 3, 4))
    odd = (torch.arange(10) % 2 == 1).double()
    scale = (1 - 2 * a.view(-1, 1) * odd).view(2, 1, 1, 10, 1)
    expected = torch.fft.ifftn(k * scale, dim=(2, 3, 4)).abs()
    from c3_mri.functional.kspace import nyquist_ghost

    assert torch.allclose(nyquist_ghost(x, a, 1), expected, atol=1e-12)
