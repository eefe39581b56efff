import torch

from c3_plugin_template.functional.contrast import contrast_kernel


def test_contrast_preserves_mean_and_scales_deviation() -> None:
    img = torch.rand(3, 1, 8, 8)
    out = contrast_kernel(img, torch.tensor([0.5, 1.0, 1.5]))
    assert torch.allclose(out.mean(dim=(1, 2, 3)), img.mean(dim=(1, 2, 3)), atol=1e-6)
    assert torch.allclose(out.std(dim=(1, 2, 3)), img.std(dim=(1, 2, 3)) * torch.tensor([0.5, 1.0, 1.5]), atol=1e-5)


def test_demo_training_is_the_same_bytes_whatever_the_process_rng() -> None:
    import torch

    from c3_plugin_template.models import demo_cnn, train_demo

    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(train_demo(demo_cnn(weights=None)))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
