"""Pieces the learned editors share: seeded initialisation, quiet construction, a conv block, a
per-device cache of an editor's model, seeded minibatches, the one-cycle AdamW loop and the
segmentor loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

M = TypeVar("M", bound=nn.Module)
T = TypeVar("T")


def init_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every Conv2d / Linear layer from ``generator`` with PyTorch's default scheme
    (Kaiming-uniform weights with a = sqrt(5), biases uniform in ±1/sqrt(fan_in))."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def built_quietly(factory: Callable[[], M]) -> M:
    """Construct a module without consuming the caller's global RNG (its default init is overwritten)."""
    with torch.random.fork_rng(devices=[]):
        return factory()


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 convolution (``stride``), GroupNorm (4 groups when ``cout`` allows, else 1), SiLU."""
    groups = 4 if cout % 4 == 0 else 1
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(groups, cout), nn.SiLU())


def model_on_device(cache: dict[str, Any], device: torch.device | str, load: Callable[[], T], move: Callable[[T, Any], T]) -> T:
    """``cache[str(device)]``, filled on first use: the CPU model from ``load()`` (once, kept under
    ``"cpu"``), moved with ``move(model, device)`` for any other device."""
    key = str(torch.device(device))
    if key not in cache:
        if "cpu" not in cache:
            cache["cpu"] = load()
        cache[key] = cache["cpu"] if key == "cpu" else move(cache["cpu"], device)
    return cache[key]


def minibatches(n: int, batch_size: int, epochs: int, g: torch.Generator) -> list[Tensor]:
    """Index chunks of ``batch_size`` from one ``randperm(n)`` per epoch, drawn from ``g`` up front."""
    return [chunk for _ in range(epochs) for chunk in torch.randperm(n, generator=g).split(batch_size)]


@torch.enable_grad()  # fitting may be triggered lazily from inside an editor's no-grad apply or an evaluation
def fit_one_cycle(net: nn.Module, steps: list[Tensor], lr: float, loss_fn: Callable[[Tensor], Tensor], params: Any = None) -> None:
    """AdamW (weight decay 1e-4) on ``params`` (default: all of ``net``'s) with a one-cycle schedule
    peaking at ``lr``: one step per entry of ``steps`` on ``loss_fn(entry)``; ``net`` left in eval
    mode. Gradients are enabled for the fit whatever the caller's grad mode."""
    opt = torch.optim.AdamW(net.parameters() if params is None else params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, len(steps)))
    net.train()
    for idx in steps:
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()


def segmentation_loss(logits: Tensor, y: Tensor) -> Tensor:
    """BCE with logits plus the soft Dice loss per channel (over batch and pixels) of ``(B, C, H, W)`` maps."""
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * y).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + y.sum((0, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
