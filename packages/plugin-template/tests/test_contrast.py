import torch

from c3_plugin_template.functional.contrast import contrast_kernel


def test_contrast_preserves_mean_and_scales_deviation() -> None:
    img = torch.rand(3, 1, 8, 8)
    out = contrast_kernel(img, torch.tensor([0.5, 1.0, 1.5]))
    assert torch.allclose(out.mean(dim=(1, 2, 3)), img.mean(dim=(1, 2, 3)), atol=1e-6)
    assert torch.allclose(out.std(dim=(1, 2, 3)), img.std(dim=(1, 2, 3)) * torch.tensor([0.5, 1.0, 1.5]), atol=1e-5)
