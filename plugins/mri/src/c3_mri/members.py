"""Seeded copies of the demo U-Net for the failure-prediction study's deep ensemble (``ExperimentSpec.members``)."""

from __future__ import annotations

from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, load_state_dict_safely


def demo_member(seed: int, device: str = "cpu") -> ModelBundle:
    """``mri.unet3d`` with the demo architecture trained by the demo model's own recipe
    (:func:`c3_mri.models.train_demo`: 80 epochs of lesion-centred 32 x 32 x 24 patches, batch 4,
    lr 1e-2, a seeded initialisation, one thread) with ``seed``; seed 0 is the shipped demo model.
    Other seeds train on first use (about a minute or two on one core) and are cached as
    ``c3_mri-unet3d-demo-v2-seed<N>``. Full-volume inference, like ``mri.unet3d`` with
    ``weights="demo"``. (The gate's teacher is another architecture, so no member gates itself.)
    """
    from c3_mri.models import DEMO_ARCH, DEMO_WEIGHTS, train_demo, unet3d

    s = int(seed)
    if s == 0:
        return unet3d(weights="demo", device=device)
    bundle = unet3d(channels=DEMO_ARCH["channels"], strides=DEMO_ARCH["strides"], num_res_units=DEMO_ARCH["num_res_units"])
    load_state_dict_safely(cached_weights(f"{DEMO_WEIGHTS}-seed{s}", lambda: train_demo(seed=s)), bundle.network)
    bundle.trained = True
    bundle.name = f"mri.unet3d[demo seed {s}]"
    return bundle.to(device)
