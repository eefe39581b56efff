"""Pieces the learned editors share: seeded initialisation, quiet construction, a conv block, and a
per-device cache of an editor's model."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

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
