"""Scorers: differentiable per-finding probabilities over a pathology vocabulary.

A :class:`Scorer` maps images ``(B, C, H, W)`` in the editor's intensity domain to probabilities
``(B, F)`` in [0, 1], one column per name in ``names`` (the vocabulary), differentiably with
respect to the images. The diffusion editor's agreement term is
``sum_f |p_f(x_edit) - p_f(x)|`` (:func:`agreement`).

* :class:`TaskModelScorer` (the default) — the task model's own per-finding probabilities
  (sigmoid for multi-label, softmax for multiclass), optionally restricted to a sub-vocabulary.
* :class:`PromptScorer` — a text-image model the user supplies: an image encoder and, per finding,
  the embeddings of a positive and a negative prompt ("effusion" / "no effusion");
  ``p_f = softmax(s * [cos(e, t+_f), cos(e, t-_f)])[0]`` (CLIP-style zero-shot). The text side is
  precomputed; :func:`load_prompt_embeddings` reads it from safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from c3_core.model import ModelBundle


@runtime_checkable
class Scorer(Protocol):
    """``scorer(images) -> (B, len(names))`` probabilities, differentiable in ``images``."""

    names: tuple[str, ...]

    def __call__(self, images: Tensor) -> Tensor: ...


def agreement(p_edit: Tensor, p_ref: Tensor) -> Tensor:
    """Disagreement per case: ``sum_f |p_edit - p_ref|`` over the vocabulary, ``(B, F) -> (B,)``."""
    if p_edit.shape != p_ref.shape or p_edit.ndim != 2:
        raise ValueError(f"agreement needs two (B, F) tensors of one shape, got {tuple(p_edit.shape)} and {tuple(p_ref.shape)}")
    return (p_edit - p_ref).abs().sum(1)


def _select(names: Sequence[str], vocabulary: Sequence[str] | None, where: str) -> tuple[tuple[str, ...], list[int]]:
    if vocabulary is None:
        return tuple(names), list(range(len(names)))
    missing = [v for v in vocabulary if v not in names]
    if missing:
        raise ValueError(f"{where}: vocabulary term(s) {missing} are not among its outputs {list(names)}")
    if not vocabulary:
        raise ValueError(f"{where}: the vocabulary is empty")
    return tuple(vocabulary), [list(names).index(v) for v in vocabulary]


class TaskModelScorer:
    """The task model's per-finding probabilities (the default scorer).

    ``bundle`` is a classification :class:`~c3_core.model.ModelBundle` whose ``input_domain`` is the
    editor's domain; ``vocabulary`` (default: all class names) selects and orders the columns.
    The network is put in eval mode; gradients flow to the images only when the caller asks
    (:func:`torch.autograd.grad`), never into the weights.
    """

    def __init__(self, bundle: ModelBundle, vocabulary: Sequence[str] | None = None) -> None:
        if bundle.task == "segmentation":
            raise ValueError(f"TaskModelScorer needs a classification model; {bundle.name or 'the model'} is a segmentation model")
        self.bundle = bundle
        self.names, self._columns = _select(bundle.class_names, vocabulary, f"TaskModelScorer({bundle.name or 'model'})")
        bundle.network.eval()

    def __call__(self, images: Tensor) -> Tensor:
        b = self.bundle
        x = b.prepare(images)
        logits = b.infer(b.network, x) if b.infer is not None else b.network(x)
        return b.probabilities(logits)[:, self._columns]

    def to(self, device: torch.device | str) -> TaskModelScorer:
        self.bundle.to(device)
        return self


class PromptScorer:
    """A text-image scorer: image embeddings against positive / negative prompt embeddings.

    ``encoder`` maps images ``(B, C, H, W)`` (editor domain) to embeddings ``(B, D)``; ``positive``
    and ``negative`` are ``(F, D)`` text embeddings of one prompt pair per name; ``logit_scale``
    is the model's inverse temperature (CLIP uses 100). Probabilities are the softmax over the pair.
    """

    def __init__(
        self,
        encoder: Callable[[Tensor], Tensor],
        positive: Tensor,
        negative: Tensor,
        names: Sequence[str],
        logit_scale: float = 100.0,
    ) -> None:
        if positive.ndim != 2 or positive.shape != negative.shape:
            raise ValueError(f"PromptScorer: positive {tuple(positive.shape)} and negative {tuple(negative.shape)} must both be (F, D)")
        if len(names) != positive.shape[0]:
            raise ValueError(f"PromptScorer: {len(names)} names for {positive.shape[0]} prompt pairs")
        if not float(logit_scale) > 0:
            raise ValueError(f"PromptScorer: logit_scale must be > 0, got {logit_scale!r}")
        self.encoder = encoder
        self.positive = F.normalize(positive.float(), dim=1)
        self.negative = F.normalize(negative.float(), dim=1)
        self.names = tuple(names)
        self.logit_scale = float(logit_scale)
        if isinstance(encoder, nn.Module):
            encoder.eval()

    def __call__(self, images: Tensor) -> Tensor:
        e = F.normalize(self.encoder(images).float(), dim=1)
        if e.ndim != 2 or e.shape[1] != self.positive.shape[1]:
            raise ValueError(f"PromptScorer: the encoder gave {tuple(e.shape)}, expected (B, {self.positive.shape[1]})")
        pos = e @ self.positive.to(e.device).T
        neg = e @ self.negative.to(e.device).T
        return torch.sigmoid(self.logit_scale * (pos - neg))  # = softmax over (pos, neg), first entry

    def to(self, device: torch.device | str) -> PromptScorer:
        if isinstance(self.encoder, nn.Module):
            self.encoder.to(device)
        self.positive, self.negative = self.positive.to(device), self.negative.to(device)
        return self


def load_prompt_embeddings(path: str | Path) -> tuple[tuple[str, ...], Tensor, Tensor, float]:
    """``(names, positive, negative, logit_scale)`` from a safetensors file.

    The file holds tensors ``positive`` and ``negative`` ``(F, D)`` and metadata ``names`` (a JSON
    list of F strings) and ``logit_scale`` (a number); anything else raises ValueError naming the file.
    """
    p = Path(path)
    if p.suffix != ".safetensors":
        raise ValueError(f"{p}: prompt embeddings must be a .safetensors file")
    if not p.is_file():
        raise ValueError(f"{p}: file not found")
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if not {"positive", "negative"} <= keys:
                raise ValueError(f"{p}: needs tensors 'positive' and 'negative', found {sorted(keys)}")
            pos, neg = f.get_tensor("positive"), f.get_tensor("negative")
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the file is unusable
        raise ValueError(f"{p}: cannot read safetensors ({type(exc).__name__}: {exc})") from None
    try:
        names = json.loads(meta["names"])
        scale = float(meta.get("logit_scale", "100"))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{p}: metadata needs 'names' (JSON list) and a numeric 'logit_scale' ({exc})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != pos.shape[0]:
        raise ValueError(f"{p}: metadata 'names' must list {pos.shape[0]} strings")
    return tuple(names), pos, neg, scale
