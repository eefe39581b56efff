"""Contrast kernel: scale each image's deviations from its mean."""

from __future__ import annotations

from torch import Tensor


def contrast_kernel(image: Tensor, factor: Tensor) -> Tensor:
    """Scale deviations from each image's mean by ``factor`` (B,); the mean is preserved."""
    mean = image.mean(dim=tuple(range(1, image.ndim)), keepdim=True)
    return mean + factor.view(-1, *[1] * (image.ndim - 1)) * (image - mean)
