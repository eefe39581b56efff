"""Real anatomy from nilearn's ICBM152 2009 template: CSF/GM/WM fractions at 2 mm."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# crop of the 2 mm MNI grid (99 x 117 x 95) around the lateral ventricles: 128 x 128 x 64 mm
CROP = (slice(17, 81), slice(33, 97), slice(32, 64))
SPACING_MM = (2.0, 2.0, 2.0)


def load_tissue_fractions() -> Tensor:
    """(3, 64, 64, 32) float32 CSF, GM and WM fractions, from files that ship with nilearn."""
    import warnings

    from nilearn import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = np.asarray(datasets.load_mni152_gm_template(resolution=2).dataobj, dtype=np.float32)
        wm = np.asarray(datasets.load_mni152_wm_template(resolution=2).dataobj, dtype=np.float32)
        brain = np.asarray(datasets.load_mni152_brain_mask(resolution=2).dataobj, dtype=np.float32)
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    csf = np.clip(brain - gm - wm, 0, 1) * (brain > 0)
    stack = np.stack([csf, gm, wm])[(slice(None), *CROP)]
    return torch.from_numpy(np.ascontiguousarray(stack))
