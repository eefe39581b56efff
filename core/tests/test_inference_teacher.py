"""The training gate's teacher prepared for inference: folded batch norms, channels-last, checked."""

from __future__ import annotations

import torch
from torch import nn

from c3_core.model import ModelBundle
from c3_core.training.teacher import CheckedInferenceNetwork, fold_batch_norms, inference_teacher


def _convnet(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in net.modules():  # non-trivial running statistics: folding must use them
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval().requires_grad_(False)


def _bundle(net: nn.Module) -> ModelBundle:
    return ModelBundle(network=net, task="multiclass", class_names=("a", "b", "c"), input_domain="display")


def _images(n: int = 6, seed: int = 1, channels: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_folded_channels_last_teacher_agrees_and_is_used() -> None:
    teacher = _bundle(_convnet())
    fast = inference_teacher(teacher)
    assert fast is not teacher and isinstance(fast.network, CheckedInferenceNetwork)
    x = _images()
    reference = teacher.logits(x)
    out = fast.logits(x)
    assert fast.network.agrees is True
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.network.fast.modules())  # folded
    torch.testing.assert_close(fast.logits(_images(seed=2)), teacher.logits(_images(seed=2)), rtol=1e-4, atol=1e-5)
    assert out.is_contiguous()


def test_folding_uses_the_running_statistics() -> None:
    net = _convnet(seed=3)
    folded = fold_batch_norms(net)
    assert folded is not None
    x = _images(seed=4)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the original is untouched


class _ViewsItsInput(nn.Module):
    """Flattens its 3-channel input with .view: impossible on channels-last memory."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.head = nn.Linear(3 * 32 * 32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.view(x.shape[0], -1)) + self.conv(x).mean()


def test_a_network_the_rewrite_breaks_keeps_its_plain_forward() -> None:
    net = _ViewsItsInput().eval().requires_grad_(False)
    teacher = ModelBundle(network=net, task="multiclass", class_names=("a", "b"), input_domain="display")
    fast = inference_teacher(teacher)
    x = _images(channels=3)
    out = fast.logits(x)
    assert fast.network.agrees is False
    assert torch.equal(out, net(x))
    assert torch.equal(fast.logits(x), net(x))


class _Shifted(nn.Module):
    def __init__(self, inner: nn.Module, shift: float) -> None:
        super().__init__()
        self.inner, self.shift = inner, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + self.shift


def test_a_rewrite_that_disagrees_is_not_used() -> None:
    plain = _convnet()
    checked = CheckedInferenceNetwork(plain, _Shifted(_convnet(), 1e-2), channels_last=False)
    x = _images()
    assert torch.equal(checked(x), plain(x))
    assert checked.agrees is False
    close = CheckedInferenceNetwork(plain, _Shifted(_convnet(), 1e-6), channels_last=False)
    close(x)
    assert close.agrees is True


def test_nothing_to_rewrite_returns_the_teacher_itself() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 2)).eval()
    teacher = ModelBundle(network=mlp, task="multiclass", class_names=("a", "b"), input_domain="display")
    assert inference_teacher(teacher) is teacher


class _Branches(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, channels-last still applies."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _convnet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 2:  # never true for images in [0, 1]
            return -self.body(x)
        return self.body(x)


def test_an_untraceable_network_is_not_folded_but_still_checked() -> None:
    net = _Branches().eval().requires_grad_(False)
    assert fold_batch_norms(net) is None
    fast = inference_teacher(_bundle(net))
    x = _images()
    torch.testing.assert_close(fast.logits(x), net(x), rtol=1e-4, atol=1e-5)
    assert fast.network.agrees is True
    assert any(isinstance(m, nn.BatchNorm2d) for m in fast.network.fast.modules())
