"""Model factories: the demo reference CNN, the demo teacher and torchxrayvision's DenseNet-121 (five findings)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from c3_core.batch import Batch
from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, WeightsError, load_state_dict_safely
from c3_core.reference_models import PoolResNet, SmallCNN
from c3_core.reference_training import seeded_training, train_reference
from c3_cxr.data.phantom import FINDINGS
from c3_cxr.domains import to_display
from c3_cxr.functional.filters import gaussian_blur_batched

DEMO_WEIGHTS = "c3_cxr-demo_cnn-v1"
TEACHER_WEIGHTS = "c3_cxr-demo_teacher-v1"
DEMO_SEED = 0
TEACHER_SEED = 1  # the demo model trains with seed 0
TEACHER_SIZE = 64  # px: the teacher sees the radiograph at half the demo model's resolution


def _prepare(x: Tensor) -> Tensor:
    return (to_display(x) - 0.5) / 0.25


def demo_cnn(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    """Small reference CNN; ``weights="demo"``: the weights the plugin ships (``weights/``), checked by SHA-256."""
    net = SmallCNN(1, len(FINDINGS), width=16, depth=4)
    bundle = ModelBundle(net, "multilabel", FINDINGS, "log_attenuation", prepare=_prepare, name="cxr.demo_cnn")
    if weights == "demo":
        path = cached_weights(DEMO_WEIGHTS, lambda: _train_demo(bundle))
        load_state_dict_safely(path, net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    bundle.trained = weights is not None
    return bundle.to(device)


def _train_demo(bundle: ModelBundle, seed: int = DEMO_SEED) -> dict[str, Tensor]:
    """The demo CNN's recipe (used only where the plugin ships no weights file): a seeded
    initialisation (a fresh PyTorch process starts from a random seed), one thread, 12 epochs, seed 0."""
    from c3_cxr.data.demo import ChestDemo

    with seeded_training(seed):
        bundle.network.load_state_dict(SmallCNN(1, len(FINDINGS), width=16, depth=4).state_dict())
        return train_reference(bundle, ChestDemo("train"), epochs=12, batch_size=32, lr=3e-3, seed=seed)


def _prepare_teacher(x: Tensor) -> Tensor:
    d = torch.nn.functional.interpolate(to_display(x), size=(TEACHER_SIZE, TEACHER_SIZE), mode="area")
    return (d - 0.5) / 0.25


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def reader_augment(batch: Batch, g: torch.Generator) -> Batch:
    """Generic acquisition augmentation for the teacher (none of it is a registered operator): a
    smooth additive background in the photon domain, contrast and offset, blur, noise and a small
    affine. The teacher stands in for a reader, whose call moves with the finding, not the exposure."""
    x = batch.image
    b = x.shape[0]
    field = torch.nn.functional.interpolate(torch.rand((b, 1, 4, 4), generator=g), size=x.shape[-2:], mode="bicubic",
                                            align_corners=False).clamp_min(0.0)
    counts = torch.exp(-x)
    level = _uniform(b, 0.0, 0.8, g).view(-1, 1, 1, 1) * counts.mean(dim=(1, 2, 3), keepdim=True)
    x = -torch.log(counts + level * field / field.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6))
    x = x * _uniform(b, 0.8, 1.2, g).view(-1, 1, 1, 1) + _uniform(b, -0.3, 0.3, g).view(-1, 1, 1, 1)
    x = gaussian_blur_batched(x, _uniform(b, 0.0, 1.5, g))
    x = x + _uniform(b, 0.0, 0.05, g).view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
    angle = _uniform(b, -0.1, 0.1, g)
    scale = _uniform(b, 0.9, 1.1, g)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * torch.cos(angle), -scale * torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = scale * torch.sin(angle), scale * torch.cos(angle)
    theta[:, :, 2] = _uniform(2 * b, -0.06, 0.06, g).view(b, 2)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return batch.replace(image=x.clamp_min(0.0))


def _train_teacher(bundle: ModelBundle) -> dict[str, Tensor]:
    from c3_cxr.data.demo import ChestDemo

    with seeded_training(TEACHER_SEED):
        bundle.network.load_state_dict(PoolResNet(1, len(FINDINGS)).state_dict())  # a seeded initialisation
        return train_reference(bundle, ChestDemo("train"), epochs=30, batch_size=32, lr=3e-3, seed=TEACHER_SEED,
                               augment=reader_augment)


def demo_teacher(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    """The validity gate's teacher for ``cxr.demo`` only: :class:`PoolResNet` on 64 px, seed 1,
    trained on the demo train split and shipped in ``c3_cxr/weights`` (SHA-256 checked).

    Independent of ``cxr.demo_cnn`` (another architecture, input size and seed), so the evaluated
    model never gates itself. Trained on phantoms: it must not judge real radiographs.
    """
    if options:
        raise TypeError(f"cxr.demo_teacher: unknown option(s) {sorted(options)}")
    net = PoolResNet(1, len(FINDINGS))
    bundle = ModelBundle(net, "multilabel", FINDINGS, "log_attenuation", prepare=_prepare_teacher, name="cxr.demo_teacher",
                         metadata={"architecture": "PoolResNet (64 px)", "seed": str(TEACHER_SEED)})
    if weights == "demo":
        load_state_dict_safely(cached_weights(TEACHER_WEIGHTS, lambda: _train_teacher(bundle)), net)
    elif weights is not None:
        load_state_dict_safely(weights, net)
    bundle.trained = weights is not None
    return bundle.to(device)


# torchxrayvision's names for the five findings (its classifier rows), in FINDINGS order
XRV_NAMES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion")


class _XrvFive(nn.Module):
    """torchxrayvision DenseNet-121 features with a five-finding linear head (raw logits)."""

    def __init__(self) -> None:
        super().__init__()
        import torchxrayvision as xrv

        self.backbone = xrv.models.DenseNet(weights=None, op_threshs=None)
        self.head = nn.Linear(1024, len(FINDINGS))

    def head_from_backbone(self) -> bool:
        """Copy the backbone classifier's rows for the five findings into the head (pretrained
        weights then score them as torchxrayvision does); False if one is not among its outputs."""
        names = list(getattr(self.backbone, "pathologies", []))
        if not all(n in names for n in XRV_NAMES):
            return False
        rows = [names.index(n) for n in XRV_NAMES]
        with torch.no_grad():
            self.head.weight.copy_(self.backbone.classifier.weight[rows])
            self.head.bias.copy_(self.backbone.classifier.bias[rows])
        return True

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone.features2(x))


def densenet121(*, weights: str | None = None, device: str = "cpu", pretrained: str | None = None, **options: object) -> ModelBundle:
    """DenseNet-121 at 224 px, 1 channel, xrv's [−1024, 1024] input scale.

    ``pretrained`` names torchxrayvision weights (e.g. ``"densenet121-res224-chex"``); they are
    downloaded by torchxrayvision and fail with a clear message offline.
    """
    net = _XrvFive()
    if pretrained is not None:
        import torchxrayvision as xrv

        try:
            net.backbone = xrv.models.DenseNet(weights=pretrained, op_threshs=None)
        except Exception as exc:  # noqa: BLE001 - xrv raises several kinds when offline
            raise WeightsError(f"cxr.densenet121: cannot load torchxrayvision weights {pretrained!r} (offline?): {exc}") from None
    trained = pretrained is not None and net.head_from_backbone()
    if weights is not None:
        load_state_dict_safely(weights, net)
        trained = True

    def prepare(x: Tensor) -> Tensor:
        d = torch.nn.functional.interpolate(to_display(x), size=(224, 224), mode="bilinear", align_corners=False)
        return d * 2048.0 - 1024.0

    return ModelBundle(
        net, "multilabel", FINDINGS, "log_attenuation", prepare=prepare, name="cxr.densenet121", trained=trained
    ).to(device)
