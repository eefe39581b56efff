"""Model factory ``mri.unet3d``: a MONAI 3D U-Net with sliding-window inference.

* ``weights=None`` — random initialisation (tests);
* ``weights="demo"`` — the demo reference model: a small U-Net (channels 8-16-32) trained by
  :func:`train_demo` on the demo cohort's "train" split (sites A and B), shipped in
  ``c3_mri/weights`` and loaded by :func:`c3_core.cache.cached_weights` after a SHA-256 check;
* a path — a safetensors file or a ``torch.save``'d state dict, loaded with ``weights_only``;
* any other name (a MONAI bundle / model-zoo name) fails: there is no network here and this
  plugin never downloads weights.

The network takes ``prepare(image)``: each case divided by its 99th-percentile intensity (MR
magnitude has no absolute scale), and returns one lesion logit per voxel.

Model factory ``mri.demo_teacher``: the validity gate's teacher for ``mri.demo`` only, a separately
trained segmenter (MONAI SegResNet, seed 1; see :func:`demo_teacher`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from c3_core.batch import Batch
from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, WeightsError, load_state_dict_safely
from c3_core.reference_training import seeded_training, train_reference

DEMO_WEIGHTS = "c3_mri-unet3d-demo-v2"
DEMO_ARCH = {"channels": (8, 16, 32), "strides": (2, 2), "num_res_units": 0}
DEMO_PATCH = (32, 32, 24)
TEACHER_WEIGHTS = "c3_mri-demo_teacher-v1"
TEACHER_SEED = 1  # the demo U-Net trains with seed 0
TEACHER_EPOCHS = 32


def normalise(x: Tensor) -> Tensor:
    """Divide each case by its 99th-percentile intensity (site-independent scale)."""
    flat = x.flatten(1)
    k = max(1, int(0.99 * flat.shape[1]))
    p99 = flat.kthvalue(k, dim=1).values.clamp_min(1e-6)
    return x / p99.view(-1, *[1] * (x.ndim - 1))


def _network(channels: Sequence[int], strides: Sequence[int], num_res_units: int) -> nn.Module:
    from monai.networks.nets import UNet

    if len(strides) != len(channels) - 1:
        raise ValueError(f"mri.unet3d: {len(channels)} channel levels need {len(channels) - 1} strides, got {len(strides)}")
    return UNet(
        spatial_dims=3, in_channels=1, out_channels=1, channels=tuple(channels), strides=tuple(strides),
        num_res_units=num_res_units,
    )


def sliding_window(roi: Sequence[int], overlap: float = 0.25, sw_batch_size: int = 4) -> Callable[[nn.Module, Tensor], Tensor]:
    """An ``infer(network, x)`` that runs MONAI's sliding-window inference over ``roi`` patches."""
    roi_t = tuple(int(r) for r in roi)

    def infer(net: nn.Module, x: Tensor) -> Tensor:
        from monai.inferers import sliding_window_inference

        size = tuple(min(r, s) for r, s in zip(roi_t, x.shape[2:]))
        return sliding_window_inference(x, size, sw_batch_size=sw_batch_size, predictor=net, overlap=overlap)

    return infer


def patch_augment(batch: Batch, generator: torch.Generator, patch: Sequence[int] = DEMO_PATCH) -> Batch:
    """Training augmentation: random left-right flip, intensity gain, and one patch per case,
    centred on a lesion voxel 70 % of the time (lesions are well under 1 % of voxels). With
    ``extras["lesion_weight"]`` (1 / lesion volume per lesion voxel) every lesion, small or large,
    is picked equally often."""
    flip = torch.rand(batch.size, generator=generator) < 0.5
    gain = 0.8 + 0.4 * torch.rand(batch.size, generator=generator)
    imgs, masks = [], []
    for i in range(batch.size):
        img, mask = batch.image[i], batch.mask[i]  # type: ignore[index]
        if bool(flip[i]):
            img, mask = img.flip(1), mask.flip(1)
        shape = img.shape[1:]
        weight = batch.extras["lesion_weight"][i, 0] if "lesion_weight" in batch.extras else mask[0]
        if float(weight.sum()) > 0 and float(torch.rand((), generator=generator)) < 0.7:
            flat = int(torch.multinomial(weight.flatten().double(), 1, generator=generator))
            centre = list(torch.unravel_index(torch.tensor(flat), weight.shape))
            centre = [int(c) for c in centre]
        else:
            centre = [int(torch.randint(0, n, (1,), generator=generator)) for n in shape]
        lo = [min(max(c - p // 2, 0), n - p) for c, p, n in zip(centre, patch, shape)]
        sl = tuple(slice(a, a + p) for a, p in zip(lo, patch))
        imgs.append(img[(slice(None), *sl)] * gain[i])
        masks.append(mask[(slice(None), *sl)])
    return batch.replace(image=torch.stack(imgs), mask=torch.stack(masks), extras={})


def _lesion_weight(mask: Tensor) -> Tensor:
    """1 / (voxels of its connected lesion) on lesion voxels, 0 elsewhere (scipy labelling)."""
    from scipy import ndimage

    lab, _ = ndimage.label(mask[0].numpy() > 0.5, structure=ndimage.generate_binary_structure(3, 3))
    sizes = torch.from_numpy(np.bincount(lab.ravel())).float()
    lab_t = torch.from_numpy(lab).long()
    w = torch.where(lab_t > 0, 1.0 / sizes[lab_t].clamp_min(1), torch.zeros(()))
    return w.unsqueeze(0).float()


class _FullVolumeNormalised(torch.utils.data.Dataset):
    """Demo training cases with the image pre-normalised on the full volume (so patches see the
    same scale as full-volume inference), identity ``prepare`` during training."""

    def __init__(self, base: torch.utils.data.Dataset) -> None:
        from dataclasses import replace

        self.items = [
            replace(s, image=normalise(s.image[None])[0], extras={"lesion_weight": _lesion_weight(s.mask)})  # type: ignore[arg-type]
            for s in (base[i] for i in range(len(base)))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):  # noqa: ANN204
        return self.items[i]


def train_demo(epochs: int = 80, seed: int = 0) -> dict[str, Tensor]:
    """Train the demo U-Net on ``mri.demo`` "train" (sites A, B); returns its state dict."""
    from c3_mri.data.demo import MriDemo

    with seeded_training(seed):
        bundle = _bundle(_network(**DEMO_ARCH), roi=(72, 80, 40), name="mri.unet3d[demo]")
        data = _FullVolumeNormalised(MriDemo("train"))
        plain = ModelBundle(bundle.network, "segmentation", ("lesion",), "magnitude", name="train")
        return train_reference(plain, data, epochs=epochs, batch_size=4, lr=1e-2, seed=seed, augment=patch_augment)


def _bundle(net: nn.Module, roi: Sequence[int], name: str) -> ModelBundle:
    return ModelBundle(net, "segmentation", ("lesion",), "magnitude", prepare=normalise, infer=sliding_window(roi), name=name)


def unet3d(
    *,
    weights: str | Path | None = None,
    device: str = "cpu",
    channels: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    num_res_units: int | None = None,
    roi: Sequence[int] = (96, 96, 96),
    **options: object,
) -> ModelBundle:
    """MONAI UNet (1 channel in, 1 lesion logit out) with sliding-window inference over ``roi``.

    Defaults: channels (16, 32, 64, 128), strides (2, 2, 2), 2 residual units; with
    ``weights="demo"`` the demo architecture (8, 16, 32), (2, 2), 1 unit is used and must not be
    overridden.
    """
    if options:
        raise TypeError(f"mri.unet3d: unknown option(s) {sorted(options)}")
    if weights == "demo":
        if channels is not None or strides is not None or num_res_units is not None:
            raise ValueError("mri.unet3d: weights='demo' has a fixed architecture; do not pass channels/strides/num_res_units")
        bundle = _bundle(_network(**DEMO_ARCH), roi, "mri.unet3d[demo]")
        load_state_dict_safely(cached_weights(DEMO_WEIGHTS, train_demo), bundle.network)
        bundle.trained = True
        return bundle.to(device)
    net = _network(channels or (16, 32, 64, 128), strides or (2, 2, 2), 2 if num_res_units is None else num_res_units)
    bundle = _bundle(net, roi, "mri.unet3d")
    if weights is not None:
        path = Path(weights)
        if not path.exists() and path.suffix == "" and "/" not in str(weights):
            raise WeightsError(
                f"mri.unet3d: {weights!r} is neither 'demo' nor a weights file; named pretrained weights "
                "(MONAI model zoo) are not downloaded by c3-mri — download them yourself and pass the file path"
            )
        load_state_dict_safely(path, net)
    bundle.trained = weights is not None
    return bundle.to(device)


class _Padded(nn.Module):
    """Zero-pads each spatial axis to a multiple of ``multiple`` (the encoder's total stride),
    runs ``net`` and crops its output back to the input grid."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net, self.multiple = net, int(multiple)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[2:]
        pad: list[int] = []
        for n in reversed(shape):
            pad += [0, (-n) % self.multiple]
        y = self.net(nn.functional.pad(x, pad)) if any(pad) else self.net(x)
        return y[(slice(None), slice(None), *(slice(0, n) for n in shape))]


def _teacher_network() -> nn.Module:
    from monai.networks.nets import SegResNet

    net = SegResNet(spatial_dims=3, init_filters=8, in_channels=1, out_channels=1, blocks_down=(1, 1, 1), blocks_up=(1, 1))
    return _Padded(net, 4)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _blur_axis(x: Tensor, sigma: Tensor, axis: int) -> Tensor:
    """Gaussian blur of ``x (B, 1, *sp)`` along spatial ``axis`` with per-case σ (voxels)."""
    r = 3
    offs = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (offs.view(1, -1) / sigma.clamp_min(1e-3).view(-1, 1)) ** 2)
    k = torch.where(sigma.view(-1, 1) > 0, k / k.sum(1, keepdim=True), (offs == 0).to(x.dtype).expand_as(k))
    moved = x.movedim(2 + axis, -1)
    padded = nn.functional.pad(moved.reshape(-1, 1, moved.shape[-1]), (r, r), mode="replicate")
    per_case = padded.view(x.shape[0], -1, moved.shape[-1] + 2 * r)
    out = torch.stack([nn.functional.conv1d(per_case[i].unsqueeze(1), k[i].view(1, 1, -1)) for i in range(x.shape[0])])
    return out.view(moved.shape).movedim(-1, 2 + axis)


def reader_augment(batch: Batch, generator: torch.Generator) -> Batch:
    """The teacher's training augmentation: the demo U-Net's (:func:`patch_augment`), then generic
    acquisition changes (none of them a registered operator): a smooth multiplicative field, a
    contrast power, blur along one axis and noise. The teacher stands in for a reader, whose
    mask moves with the lesion, not with the scanner."""
    batch = patch_augment(batch, generator)
    x = batch.image.clamp_min(0.0)
    b, sp = x.shape[0], x.shape[2:]
    coarse = torch.rand((b, 1, 3, 3, 3), generator=generator) * 2 - 1
    field = nn.functional.interpolate(coarse, size=tuple(sp), mode="trilinear", align_corners=True)
    x = x * torch.exp(_uniform(b, 0.0, 0.4, generator).view(-1, 1, 1, 1, 1) * field)
    x = x ** _uniform(b, 0.7, 1.4, generator).view(-1, 1, 1, 1, 1)
    axis = int(torch.randint(0, 3, (1,), generator=generator))
    x = _blur_axis(x, _uniform(b, 0.0, 1.2, generator), axis)
    noise = _uniform(b, 0.0, 0.08, generator).view(-1, 1, 1, 1, 1)
    x = (x + noise * torch.randn(x.shape, generator=generator)).abs()
    return batch.replace(image=x)


def train_teacher(epochs: int = TEACHER_EPOCHS, seed: int = TEACHER_SEED) -> dict[str, Tensor]:
    """Train the demo teacher on ``mri.demo`` "train" (sites A, B) on lesion-centred patches like
    the demo U-Net, with another network, seed and :func:`reader_augment`; returns its state dict."""
    from c3_mri.data.demo import MriDemo

    with seeded_training(seed):
        net = _teacher_network()  # a seeded initialisation
        data = _FullVolumeNormalised(MriDemo("train"))
        plain = ModelBundle(net, "segmentation", ("lesion",), "magnitude", name="train")
        return train_reference(plain, data, epochs=epochs, batch_size=4, lr=1e-2, seed=seed, augment=reader_augment)


def demo_teacher(*, weights: str | Path | None = None, device: str = "cpu", roi: Sequence[int] = (72, 80, 40),
                 **options: object) -> ModelBundle:
    """The validity gate's teacher for ``mri.demo`` only: a MONAI SegResNet (8 initial filters,
    GroupNorm residual blocks), seed 1, trained on the demo train split and shipped in
    ``c3_mri/weights`` (SHA-256 checked). Its masks m*(x) give the gate's IoU test.

    Independent of the demo U-Net (another architecture and seed), so the evaluated model never
    gates itself. Trained on phantoms: it must not judge real MR exams.
    """
    if options:
        raise TypeError(f"mri.demo_teacher: unknown option(s) {sorted(options)}")
    net = _teacher_network()
    bundle = _bundle(net, roi, "mri.demo_teacher")
    bundle.metadata = {"architecture": "monai SegResNet (init_filters 8)", "seed": str(TEACHER_SEED)}
    if weights == "demo":
        load_state_dict_safely(cached_weights(TEACHER_WEIGHTS, train_teacher), net)
    elif weights is not None:
        load_state_dict_safely(Path(weights), net)
    bundle.trained = weights is not None
    return bundle.to(device)


def time_demo_training() -> float:  # pragma: no cover - used by the README numbers
    t = time.perf_counter()
    train_demo()
    return time.perf_counter() - t
