"""Real anatomy from nilearn's ICBM152 2009a template: CSF / GM / WM fractions at 1.5 mm.

nilearn ships the 1 mm symmetric ICBM152 2009a T1 template and its grey- and white-matter
probability maps beside its dataset code (``nilearn/datasets/data/mni_icbm152_*_09a_converted``);
they are read here directly with nibabel (no network, no nilearn resampling). CSF is the brain
mask (T1 > 0.2 of its maximum, nilearn's own ``load_mni152_brain_mask`` rule) minus GM and WM.

Why 1.5 mm: the paper reports small-lesion recall for lesions under 10 mm³. At 2 mm a voxel is
8 mm³, so every such lesion is a single voxel; at 1.5 mm (3.375 mm³) lesions under 10 mm³ span
one to two voxels while the volume stays small enough for a CPU demo. The crop (108 × 120 × 60 mm
around the lateral ventricles: MNI x −54…54, y −64…56, z −6…54) holds the periventricular white
matter and nearby cortex, where juxtacortical lesions sit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

SPACING_MM = (1.5, 1.5, 1.5)
GRID = (72, 80, 40)  # output voxels at SPACING_MM
# 1 mm template index ranges of the crop (template origin at index (98, 134, 72))
CROP_1MM = (slice(44, 152), slice(70, 190), slice(66, 126))
FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


class TemplateMissingError(FileNotFoundError):
    """The ICBM152 files that ship with nilearn are not where this nilearn keeps them."""


def template_dir() -> Path:
    """Folder of nilearn's packaged ICBM152 files (no download)."""
    import nilearn.datasets

    return Path(nilearn.datasets.__file__).parent / "data"


def load_template_1mm() -> Tensor:
    """(3, 108, 120, 60) float32 CSF, GM, WM fractions of the 1 mm crop, lightly smoothed.

    The [1/4, 1/2, 1/4] smoothing per axis is the anti-alias filter for resampling to 1.5 mm.
    """
    import nibabel as nib

    folder = template_dir()
    arrays = {}
    for key, name in FILES.items():
        path = folder / name
        if not path.is_file():
            raise TemplateMissingError(
                f"{path}: ICBM152 2009a file missing; it ships with nilearn>=0.10 (reinstall nilearn)"
            )
        arrays[key] = np.asarray(nib.load(str(path)).dataobj[CROP_1MM], dtype=np.float32) / 255.0
    brain = (arrays["t1"] > 0.2).astype(np.float32)
    gm = np.clip(arrays["gm"], 0, 1) * brain
    wm = np.clip(arrays["wm"], 0, 1) * brain
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.clip(brain - gm - wm, 0, 1)
    maps = torch.from_numpy(np.stack([csf, gm, wm]))
    k = torch.tensor([0.25, 0.5, 0.25])
    x = maps[None]
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = 3
        w = k.view(1, 1, *shape).expand(3, 1, *shape).contiguous()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = 1
        x = F.conv3d(F.pad(x, pad, mode="replicate"), w, groups=3)
    return x[0].contiguous()


def resample_to_grid(maps_1mm: Tensor, theta: Tensor | None = None) -> Tensor:
    """Sample ``maps_1mm (C, 108, 120, 60)`` onto the 1.5 mm grid, optionally under an affine.

    ``theta (3, 4)`` maps normalised output coordinates (−1…1, spatial axis order) to input
    ones (``align_corners=False``); None is the identity (plain 1 mm → 1.5 mm resampling).
    Returns (C, *GRID).
    """
    if theta is None:
        theta = torch.cat([torch.eye(3), torch.zeros(3, 1)], 1)
    # grid_sample takes (x, y, z) = (last, middle, first) spatial axes: flip the axis order
    perm = torch.tensor([2, 1, 0])
    t = theta[perm][:, torch.cat([perm, torch.tensor([3])])]
    grid = F.affine_grid(t[None].float(), (1, maps_1mm.shape[0], *GRID), align_corners=False)
    out = F.grid_sample(maps_1mm[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0]
