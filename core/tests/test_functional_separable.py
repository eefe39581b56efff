"""c3_core.functional.separable: padded spectral filters as matrices, applied per case."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from c3_core.functional.separable import apply_separable, padded_filter_matrices


def _fft_filter(v: torch.Tensor, before: int, after: int, transfer) -> torch.Tensor:  # noqa: ANN001
    """The reference: reflect-pad, multiply the DFT, crop (float64, one row per case)."""
    n = v.shape[-1]
    x = F.pad(v.unsqueeze(1), (before, after), mode="reflect").squeeze(1)
    f = torch.fft.rfftfreq(x.shape[-1], dtype=torch.float64)
    return torch.fft.irfft(torch.fft.rfft(x) * transfer(f), n=x.shape[-1])[..., before : before + n]


@pytest.mark.parametrize(("n", "before", "after"), [(16, 3, 5), (9, 8, 8), (2, 1, 1), (40, 0, 0)])
def test_matrices_are_the_padded_fft_filter(n: int, before: int, after: int) -> None:
    sigma = torch.tensor([0.7, 2.5, 6.0], dtype=torch.float64).view(-1, 1)

    def transfer(f: torch.Tensor) -> torch.Tensor:
        return torch.exp(-2.0 * math.pi**2 * sigma**2 * f**2)

    v = torch.rand(3, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    m = padded_filter_matrices(n, before, after, transfer)
    assert m.shape == (3, n, n) and m.dtype == torch.float64
    torch.testing.assert_close(torch.einsum("bij,bj->bi", m, v), _fft_filter(v, before, after, transfer), rtol=0, atol=1e-12)


def test_a_unit_transfer_is_the_identity() -> None:
    m = padded_filter_matrices(12, 4, 6, lambda f: torch.ones(2, f.numel(), dtype=torch.float64))
    torch.testing.assert_close(m, torch.eye(12, dtype=torch.float64).expand(2, 12, 12), rtol=0, atol=1e-14)


def test_apply_separable_is_my_x_mx_transposed_per_case_and_channel() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 5, 4, generator=g)
    my, mx = torch.rand(2, 5, 5, generator=g), torch.rand(2, 4, 4, generator=g)
    out = apply_separable(image, my, mx)
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(out[b, c], my[b] @ image[b, c] @ mx[b].T)
