"""Training loops enable gradients themselves: a model fitted lazily on first use is fitted from
inside an evaluation's or an editor's ``torch.no_grad()``, and must train there as anywhere."""

from __future__ import annotations

import torch
from torch import nn

from c3_core.batch import Sample
from c3_core.editors.nets import fit_one_cycle
from c3_core.model import ModelBundle
from c3_core.reference_models import SmallCNN
from c3_core.reference_training import train_reference


def test_fit_one_cycle_trains_under_no_grad_and_leaves_the_mode_alone() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    net = nn.Linear(3, 1)
    before = float(nn.functional.mse_loss(net(x), y).detach())
    steps = list(torch.randperm(64, generator=g).split(8)) * 20
    with torch.no_grad():
        fit_one_cycle(net, steps, 0.05, lambda idx: nn.functional.mse_loss(net(x[idx]), y[idx]))
        assert not torch.is_grad_enabled()  # the caller's mode is restored
    after = float(nn.functional.mse_loss(net(x), y).detach())
    assert after < 0.1 * before


def test_train_reference_trains_under_no_grad() -> None:
    g = torch.Generator().manual_seed(1)
    samples = []
    for i in range(16):
        label = torch.tensor([float(i % 2)])
        image = torch.randn(1, 16, 16, generator=g) + 2.0 * label  # class 1 is brighter
        samples.append(Sample(image, f"case-{i}", "toy", "display", (1.0, 1.0), label))
    torch.manual_seed(0)
    bundle = ModelBundle(SmallCNN(1, 1), "multilabel", ("bright",), "display", name="toy.cnn")
    start = {k: v.clone() for k, v in bundle.network.state_dict().items()}
    with torch.no_grad():
        state = train_reference(bundle, samples, epochs=2, batch_size=8, lr=1e-2, seed=0)
        assert not torch.is_grad_enabled()
    assert any(not torch.equal(start[k], v) for k, v in state.items() if v.is_floating_point())
