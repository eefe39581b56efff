"""Model factories: the demo reference CNN, the demo teacher and timm EfficientNet-B3 (five DR grades).

All take sRGB images (the dataset domain) and output logits over the five ICDR grades. The
referable-DR probability is derived from the grade probabilities: P(grade >= 2).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.batch import Batch
from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, WeightsError, load_state_dict_safely
from c3_core.reference_models import PoolResNet, SmallCNN
from c3_core.reference_training import seeded_training, train_reference
from c3_fundus.grades import GRADE_NAMES, REFERABLE_FROM_GRADE

DEMO_WEIGHTS = "c3_fundus-demo_cnn-v2"
TEACHER_WEIGHTS = "c3_fundus-demo_teacher-v1"
DEMO_SEED = 0
TEACHER_SEED = 1  # the demo model trains with seed 0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def referable_probability(grade_probabilities: Tensor) -> Tensor:
    """P(referable DR) = sum of the probabilities of grades >= 2; (B, 5) -> (B,)."""
    if grade_probabilities.ndim != 2 or grade_probabilities.shape[1] != len(GRADE_NAMES):
        raise ValueError(f"expected grade probabilities (B, {len(GRADE_NAMES)}), got {tuple(grade_probabilities.shape)}")
    return grade_probabilities[:, REFERABLE_FROM_GRADE:].sum(dim=1)


def _normalise_demo(x: Tensor) -> Tensor:
    return (x - 0.35) / 0.25


def _augment(batch: Batch, generator: torch.Generator) -> Batch:
    """Left/right flips (left and right eyes) and small exposure changes, from ``generator``."""
    b = batch.size
    flip = torch.rand(b, generator=generator) < 0.5
    gain = 2.0 ** ((torch.rand(b, generator=generator) - 0.5) * 0.4)
    img = torch.where(flip.view(-1, 1, 1, 1), batch.image.flip(-1), batch.image)
    return batch.replace(image=(img * gain.view(-1, 1, 1, 1)).clamp(0, 1))


def _train_demo(bundle: ModelBundle, seed: int = DEMO_SEED) -> dict[str, Tensor]:
    from c3_fundus.data.demo import FundusDemo

    with seeded_training(seed):
        bundle.network.load_state_dict(SmallCNN(3, len(GRADE_NAMES), width=16, depth=4).state_dict())
        return train_reference(bundle, FundusDemo("train"), epochs=12, batch_size=32, lr=3e-3, seed=seed, augment=_augment)


def demo_cnn(*, weights: str | None = None, device: str = "cpu", **options: Any) -> ModelBundle:
    """The demo's reference model (core SmallCNN, 5 grades) for sRGB (3, 128, 128) images.

    ``weights=None``: random init; ``"demo"``: the weights shipped in ``c3_fundus/weights`` (SHA-256
    checked; made by scripts/make_demo_weights.py from the demo train split); a path: safetensors or a ``weights_only`` torch file for this architecture.
    """
    if options:
        raise TypeError(f"fundus.demo_cnn: unknown option(s) {sorted(options)}")
    net = SmallCNN(3, len(GRADE_NAMES), width=16, depth=4)
    bundle = ModelBundle(
        net, "multiclass", GRADE_NAMES, "srgb", prepare=_normalise_demo, name="fundus.demo_cnn",
        metadata={"referable": "P(grade >= 2) = sum of softmax over grades 2-4", "input": "sRGB (3, 128, 128)"},
    )
    if weights == "demo":
        load_state_dict_safely(cached_weights(DEMO_WEIGHTS, lambda: _train_demo(bundle)), net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    bundle.trained = weights is not None
    return bundle.to(device)


def _train_teacher(bundle: ModelBundle) -> dict[str, Tensor]:
    from c3_fundus.data.demo import FundusDemo

    with seeded_training(TEACHER_SEED):
        bundle.network.load_state_dict(PoolResNet(3, len(GRADE_NAMES), width=12).state_dict())  # a seeded initialisation
        return train_reference(bundle, FundusDemo("train"), epochs=12, batch_size=32, lr=3e-3, seed=TEACHER_SEED, augment=_augment)


def demo_teacher(*, weights: str | None = None, device: str = "cpu", **options: Any) -> ModelBundle:
    """The validity gate's teacher for ``fundus.demo`` only: :class:`PoolResNet` (width 12), seed 1,
    trained on the demo train split and shipped in ``c3_fundus/weights`` (SHA-256 checked).

    Independent of ``fundus.demo_cnn`` (another architecture and seed), so the evaluated model
    never gates itself. Trained on phantoms: it must not judge real photographs.
    """
    if options:
        raise TypeError(f"fundus.demo_teacher: unknown option(s) {sorted(options)}")
    net = PoolResNet(3, len(GRADE_NAMES), width=12)
    bundle = ModelBundle(
        net, "multiclass", GRADE_NAMES, "srgb", prepare=_normalise_demo, name="fundus.demo_teacher",
        metadata={"architecture": "PoolResNet", "seed": str(TEACHER_SEED), "input": "sRGB (3, 128, 128)"},
    )
    if weights == "demo":
        load_state_dict_safely(cached_weights(TEACHER_WEIGHTS, lambda: _train_teacher(bundle)), net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    bundle.trained = weights is not None
    return bundle.to(device)


class _ImageNetPrepare:
    """sRGB [0, 1] -> optional resize to ``size`` px -> ImageNet normalisation."""

    def __init__(self, size: int | None) -> None:
        self.size = size

    def __call__(self, x: Tensor) -> Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std


def _cached_pretrained_file(model_name: str) -> str | None:
    """The locally cached hub weights of ``model_name`` (no network), or None."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def _hub_reachable(timeout_s: float = 2.0) -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def efficientnet_b3(
    *, weights: str | None = None, device: str = "cpu", pretrained: bool = False, input_size: int | None = None, **options: Any
) -> ModelBundle:
    """timm EfficientNet-B3 with a five-grade head (sRGB input; ``input_size`` resizes, e.g. 300).

    ``weights``: a path (safe load) to a five-grade state dict. ``pretrained=True``: ImageNet
    weights for the backbone from the local Hugging Face cache, or downloaded when the hub is
    reachable; offline (or with ``HF_HUB_OFFLINE=1``) it fails at once with a WeightsError instead
    of retrying for most of a minute.
    """
    if options:
        raise TypeError(f"fundus.efficientnet_b3: unknown option(s) {sorted(options)}")
    import timm

    net = timm.create_model("efficientnet_b3", pretrained=False, num_classes=len(GRADE_NAMES))
    if pretrained:
        path = _cached_pretrained_file("efficientnet_b3")
        if path is None:
            offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
            if offline or not _hub_reachable():
                raise WeightsError(
                    "fundus.efficientnet_b3: pretrained=True needs the Hugging Face hub "
                    "(timm/efficientnet_b3.ra2_in1k), which is not reachable and not cached; "
                    "pass weights=PATH to a state dict instead"
                )
            net = timm.create_model("efficientnet_b3", pretrained=True, num_classes=len(GRADE_NAMES))
        else:
            backbone = timm.create_model("efficientnet_b3", pretrained=False)
            load_state_dict_safely(path, backbone)
            state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("classifier.")}
            net.load_state_dict(state, strict=False)
    if weights is not None:
        load_state_dict_safely(weights, net)
    return ModelBundle(
        net, "multiclass", GRADE_NAMES, "srgb", prepare=_ImageNetPrepare(input_size), name="fundus.efficientnet_b3",
        metadata={"referable": "P(grade >= 2) = sum of softmax over grades 2-4", "architecture": "timm efficientnet_b3"},
        trained=weights is not None,  # ImageNet weights alone leave the grade head untrained
    ).to(device)
