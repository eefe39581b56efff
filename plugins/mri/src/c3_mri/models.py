"""Model factories: MONAI 3D U-Net (configurable) and the demo's small reference U-Net."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, load_state_dict_safely
from c3_core.reference_training import train_reference

DEMO_WEIGHTS = "c3_mri-demo_unet-v1"


def normalise(x: Tensor) -> Tensor:
    """Divide each case by its 99th-percentile intensity (site-independent scale)."""
    flat = x.flatten(1)
    k = max(1, int(0.99 * flat.shape[1]))
    p99 = flat.kthvalue(k, dim=1).values.clamp_min(1e-6)
    return x / p99.view(-1, *[1] * (x.ndim - 1))


def _network(channels: Sequence[int], strides: Sequence[int], num_res_units: int) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=tuple(channels), strides=tuple(strides), num_res_units=num_res_units)


def _sliding_window(roi: tuple[int, int, int]):  # noqa: ANN202
    from monai.inferers import sliding_window_inference

    def infer(net: nn.Module, x: Tensor) -> Tensor:
        return sliding_window_inference(x, roi, sw_batch_size=4, predictor=net, overlap=0.25)

    return infer


def unet3d(
    *,
    weights: str | None = None,
    device: str = "cpu",
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 2,
    roi: tuple[int, int, int] = (96, 96, 96),
    **options: object,
) -> ModelBundle:
    """MONAI UNet (1 channel in, 1 lesion logit out) with sliding-window inference over ``roi``."""
    net = _network(channels, strides, num_res_units)
    if weights is not None:
        load_state_dict_safely(weights, net)
    return ModelBundle(net, "segmentation", ("lesion",), "magnitude", prepare=normalise, infer=_sliding_window(tuple(roi)), name="mri.unet3d").to(device)


def _patch_augment(batch, generator, patch=(32, 32, 16)):  # noqa: ANN001, ANN202
    """Left-right flip and a patch per case, centred on a lesion voxel 70 % of the time
    (lesions are ~0.1 % of voxels; lesion-centred patches balance the classes)."""
    flip = torch.rand(batch.size, generator=generator) < 0.5
    imgs, masks = [], []
    for i in range(batch.size):
        img, mask = batch.image[i], batch.mask[i]
        if bool(flip[i]):
            img, mask = img.flip(1), mask.flip(1)
        shape = img.shape[1:]
        fg = (mask[0] > 0.5).nonzero()
        if len(fg) and float(torch.rand((), generator=generator)) < 0.7:
            centre = fg[int(torch.randint(0, len(fg), (1,), generator=generator))].tolist()
        else:
            centre = [int(torch.randint(0, n, (1,), generator=generator)) for n in shape]
        lo = [min(max(c - p // 2, 0), n - p) for c, p, n in zip(centre, patch, shape)]
        sl = tuple(slice(a, a + p) for a, p in zip(lo, patch))
        imgs.append(img[(slice(None), *sl)])
        masks.append(mask[(slice(None), *sl)])
    return batch.replace(image=torch.stack(imgs), mask=torch.stack(masks), extras={})


def demo_unet(*, weights: str | None = None, device: str = "cpu", **options: object) -> ModelBundle:
    """The demo's reference model (channels 8-16-32). ``weights="demo"`` trains it on sites A+B."""
    bundle = unet3d(weights=None, device="cpu", channels=(8, 16, 32), strides=(2, 2), num_res_units=1, roi=(64, 64, 32))
    bundle.name = "mri.demo_unet"
    if weights == "demo":
        from c3_mri.data.demo import MriDemo

        path = cached_weights(
            DEMO_WEIGHTS,
            lambda: train_reference(bundle, MriDemo("train"), epochs=250, batch_size=4, lr=5e-3, seed=0, augment=_patch_augment),
        )
        load_state_dict_safely(path, bundle.network)
    elif weights is not None:
        load_state_dict_safely(weights, bundle.network)
    return bundle.to(device)
