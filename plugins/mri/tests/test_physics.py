"""MR physics: noise laws, bias field, B0 displacement, Bloch equations, slice profile."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from c3_core.batch import Batch
from c3_core.seeding import generator_from_seed
from c3_mri.functional.bloch import inversion_recovery, spin_echo, spoiled_gradient_echo
from c3_mri.functional.noise import noncentral_chi_magnitude
from c3_mri.operators.b0_distortion import B0Distortion, B0Params
from c3_mri.operators.bias_field import BiasField
from c3_mri.operators.contrast import ProtocolContrast, lookup
from c3_mri.operators.noise import MagnitudeNoise, reference_signal
from c3_mri.operators.slice_profile import SliceProfile, SliceProfileParams


def _batch(image: torch.Tensor, mask: torch.Tensor | None = None, spacing=(1.0, 1.0, 1.0)) -> Batch:  # noqa: ANN001
    b = image.shape[0]
    sp = tuple(spacing[: image.ndim - 2])
    return Batch(image, tuple(f"e{i}" for i in range(b)), "mri", "magnitude", (sp,) * b, mask=mask)


@pytest.mark.parametrize("snr", [2.0, 5.0])
def test_rician_noise_passes_ks_against_scipy(snr: float) -> None:
    sigma = 1.0
    signal = torch.full((200000,), snr * sigma, dtype=torch.float64)
    m = noncentral_chi_magnitude(signal, sigma, 1, generator_from_seed(1)).numpy()
    assert stats.kstest(m, stats.rice(b=snr, scale=sigma).cdf).pvalue > 0.01


def test_noncentral_chi_for_8_coils_passes_ks() -> None:
    sigma, s, coils = 1.0, 3.0, 8
    m = noncentral_chi_magnitude(torch.full((200000,), s, dtype=torch.float64), sigma, coils, generator_from_seed(2)).numpy()
    # M^2 / sigma^2 is non-central chi-square with 2L degrees of freedom, non-centrality (s / sigma)^2
    assert stats.kstest(m**2, stats.ncx2(df=2 * coils, nc=s**2).cdf).pvalue > 0.01


def test_noise_operator_hits_target_snr() -> None:
    img = torch.zeros(1, 1, 64, 64, 16)
    img[..., 8:56, 8:56, :] = 100.0
    out = MagnitudeNoise()(_batch(img), generator_from_seed(0), 20.0).image
    region = out[0, 0, 10:54, 10:54]
    assert float(reference_signal(img)) == pytest.approx(100.0)
    assert float(region.std()) == pytest.approx(100.0 / 20.0, rel=0.05)  # high SNR: Rician ~ Gaussian


def test_bias_field_positive_smooth_and_mask_untouched() -> None:
    img = torch.ones(2, 1, 32, 40, 24)
    mask = (torch.rand(2, 1, 32, 40, 24, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    b = _batch(img, mask, spacing=(4.0, 4.0, 4.0))  # 128 x 160 x 96 mm: a head-sized field of view
    out = BiasField()(b, generator_from_seed(3), BiasField.severity.extreme)
    field = out.image
    assert bool((field > 0).all())
    assert out.mask is b.mask
    log_field = field[0, 0].log()
    grad = max(float(torch.gradient(log_field, dim=a)[0].abs().max()) for a in range(3))
    assert grad < 0.15  # smooth: at most a 15 % gain change between neighbouring voxels
    assert float(field.max() / field.min()) > 1.2  # but the field is not flat


def test_b0_displacement_matches_formula_and_moves_mask() -> None:
    d = 48
    img = torch.zeros(1, 1, 16, d, 8)
    img[:, :, :, ::8] = 1.0  # grid lines across the phase-encode axis
    mask = torch.zeros(1, 1, 16, d, 8)
    mask[:, :, :, 20:28] = 1.0
    n_coeff = 27
    coeff = [0.0] * n_coeff
    coeff[1 * 9] = 0.0
    # a constant-gradient-free map: use a pure first-order term along x (index (1,0,0))
    coeff[9] = 1.0
    p = B0Params(peak_offresonance_hz=200.0, bandwidth_hz_per_px=100.0, phase_axis=1, shape_coefficients=tuple(coeff))
    out = B0Distortion().apply(_batch(img, mask), [p])
    # the map is 200 Hz * x / max|x| along axis 0, so row 0 shifts by -2 px and the last row by +2 px
    first, last = out.image[0, 0, 0, :, 0], out.image[0, 0, -1, :, 0]
    assert int(first[8:40].argmax()) + 8 == 8 - 2 + 8 or int(torch.argmax(first[4:12])) + 4 == 6
    assert int(torch.argmax(last[4:12])) + 4 == 10
    moved = out.mask[0, 0, -1, :, 0].nonzero().flatten()
    assert (int(moved.min()), int(moved.max())) == (22, 29)


def test_contrast_lookup_slabs_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    # the map runs in slabs of columns; a slab boundary anywhere (here every 7 or 1,000 values,
    # against one slab for the whole batch) changes nothing, anchors and ties included
    from c3_mri.operators import contrast

    g = generator_from_seed(11)
    x = (torch.rand(3, 5000, generator=g) * 16).round() / 8  # many values on the anchors
    anchors = torch.tensor([[0.25, 0.5, 1.0], [0.5, 0.5, 1.5], [0.125, 1.0, 1.75]])
    to = anchors * torch.tensor([[1.2, 0.8, 1.1]])
    monkeypatch.setattr(contrast, "LOOKUP_SLAB_ELEMENTS", 1 << 20)
    whole = contrast.lookup(x, anchors, to)
    for slab in (21, 3000):  # 7 and 1,000 columns per slab for 3 cases
        monkeypatch.setattr(contrast, "LOOKUP_SLAB_ELEMENTS", slab)
        assert torch.equal(contrast.lookup(x, anchors, to), whole)
    # two anchors at 0.5 (to 0.6 and 0.4): the map stays monotone, 0.5 goes to 0.6
    assert float(whole[1, (x[1] == 0.5).nonzero()[0, 0]]) == pytest.approx(0.6)


def test_signal_equations_hand_computed() -> None:
    pd, t1, t2 = torch.tensor(0.7, dtype=torch.float64), torch.tensor(1000.0, dtype=torch.float64), torch.tensor(80.0, dtype=torch.float64)
    assert float(spin_echo(pd, t1, t2, 500.0, 20.0)) == pytest.approx(0.7 * (1 - math.exp(-0.5)) * math.exp(-0.25))
    e1 = math.exp(-20 / 1000)
    a = math.radians(15)
    assert float(spoiled_gradient_echo(pd, t1, t2, 20.0, 5.0, 15.0)) == pytest.approx(0.7 * math.sin(a) * (1 - e1) / (1 - math.cos(a) * e1) * math.exp(-5 / 80))
    # inversion recovery nulls a tissue at TI = T1 ln 2 (TR >> T1)
    assert float(inversion_recovery(pd, t1, t2, 1e6, 10.0, 1000.0 * math.log(2))) == pytest.approx(0.0, abs=1e-9)


def test_slice_profile_fwhm_of_point_source() -> None:
    img = torch.zeros(1, 1, 5, 5, 81)
    img[..., 40] = 1.0
    out = SliceProfile().apply(_batch(img, spacing=(1.0, 1.0, 0.5)), [SliceProfileParams(4.0, 2, "gaussian", False)]).image[0, 0, 2, 2].double().numpy()
    half = out.max() / 2
    above = np.nonzero(out >= half)[0]
    # linear interpolation of the half-maximum crossings
    lo, hi = above[0], above[-1]
    left = lo - 1 + (half - out[lo - 1]) / (out[lo] - out[lo - 1])
    right = hi + (out[hi] - half) / (out[hi] - out[hi + 1])
    assert (right - left) * 0.5 == pytest.approx(4.0, rel=0.05)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)  # energy preserved


def test_contrast_lookup_is_monotone_and_changes_flair() -> None:
    x = torch.linspace(0, 1, 101)
    y = lookup(x[None], torch.tensor([[0.1, 0.5, 0.8]]), torch.tensor([[0.2, 0.4, 0.9]]))[0]
    assert bool((y[1:] >= y[:-1] - 1e-7).all())
    assert float(y[50]) == pytest.approx(0.4) and float(y[80]) == pytest.approx(0.9)  # anchors map exactly
    from c3_core.batch import collate
    from c3_mri.data.demo import MriDemo

    b = collate([MriDemo("test", n=1)[0]])
    out = ProtocolContrast()(b, generator_from_seed(5), 1.0)
    assert not torch.equal(out.image, b.image) and out.mask is b.mask
    no_tissue = ProtocolContrast()(b.replace(extras={}), generator_from_seed(5), 1.0)
    assert torch.isfinite(no_tissue.image).all()
