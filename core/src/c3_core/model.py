"""What a model factory returns, and safe weight loading."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from c3_core.domains import IntensityDomain, parse_domain

Task = Literal["multiclass", "multilabel", "segmentation"]
TASKS: tuple[str, ...] = ("multiclass", "multilabel", "segmentation")


class WeightsError(ValueError):
    """Weights that cannot be loaded safely or do not fit the architecture."""


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass
class ModelBundle:
    """A network plus what C3 must know to score it.

    ``network`` maps ``prepare(image)`` to logits ``(B, C)`` (classification) or
    ``(B, C, *spatial)`` (segmentation; C = 1 means a sigmoid foreground channel).
    ``input_domain`` is the intensity domain of the images it takes (before ``prepare``).
    ``prepare``, ``infer`` and the network must not write into the image they are given: an
    evaluation forwards one tensor of originals and counterfactuals through the model and then
    through the gate's teacher.
    ``infer`` optionally replaces the plain forward (e.g. sliding-window inference).
    ``trained`` says whether the factory loaded trained weights: False for an architecture built
    without any (evaluation refuses it), None where the factory does not say.
    """

    network: nn.Module
    task: Task
    class_names: tuple[str, ...]
    input_domain: IntensityDomain
    prepare: Callable[[Tensor], Tensor] = _identity
    infer: Callable[[nn.Module, Tensor], Tensor] | None = None
    name: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    trained: bool | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        self.input_domain = parse_domain(self.input_domain)

    def to(self, device: torch.device | str) -> ModelBundle:
        self.network.to(device)
        return self

    @torch.no_grad()
    def logits(self, image: Tensor) -> Tensor:
        """Logits for a batch of images in ``input_domain`` (eval mode, no grad)."""
        self.network.eval()
        x = self.prepare(image)
        return self.infer(self.network, x) if self.infer is not None else self.network(x)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Softmax over classes for multiclass, sigmoid otherwise (1-channel segmentation too)."""
        if self.task == "multiclass" or (self.task == "segmentation" and logits.shape[1] > 1):
            return torch.softmax(logits.float(), dim=1)
        return torch.sigmoid(logits.float())


def load_state_dict_safely(path: str | Path, network: nn.Module, *, strict: bool = True) -> None:
    """Load weights into ``network`` from safetensors or a ``weights_only`` torch file.

    Never unpickles arbitrary objects. Raises :class:`WeightsError` naming the file.
    """
    p = Path(path)
    try:
        p.stat()
    except PermissionError:
        raise WeightsError(f"{p}: permission denied (cannot reach the weights file)") from None
    except OSError:
        raise WeightsError(f"{p}: weights file not found") from None
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found")
    if not os.access(p, os.R_OK):
        raise WeightsError(f"{p}: permission denied (the weights file is not readable)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        raise WeightsError(f"{p}: cannot read weights safely ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{p}: expected a state dict, found {type(state).__name__}")
    try:
        network.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(f"{p}: weights do not fit the architecture: {' '.join(first)}") from None


def load_torchscript(path: str | Path) -> nn.Module:
    """Load a TorchScript archive (no pickle of Python objects) or raise WeightsError."""
    p = Path(path)
    try:
        return torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{p}: not a loadable TorchScript archive ({exc})") from None
