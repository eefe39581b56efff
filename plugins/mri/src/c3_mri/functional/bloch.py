"""Steady-state signal equations (spin echo, spoiled gradient echo, inversion recovery).

Relaxation times (ms) of brain tissue:

* grey and white matter at 1.5 T and 3 T: Stanisz G.J. et al., "T1, T2 relaxation and
  magnetization transfer in tissue at 3T", Magn. Reson. Med. 54:507-512 (2005): WM T1 884 / 1084,
  T2 72 / 69; GM T1 1124 / 1820, T2 95 / 99 (1.5 T / 3 T).
* CSF: T1 ≈ 4000 ms, T2 ≈ 2000 ms at both fields (free water; approximate literature values).
* MS lesions: T1 1.5x and T2 2.2x the white-matter values (lesions prolong both; an
  assumption within the ranges reported for T2-hyperintense lesions).
* proton density (relative): CSF 1.0, GM 0.80, WM 0.70, lesion 0.85.
"""

from __future__ import annotations

import torch
from torch import Tensor

TISSUES = ("csf", "gm", "wm", "lesion")
RELAXATION_MS = {
    1.5: {"csf": (4000.0, 2000.0), "gm": (1124.0, 95.0), "wm": (884.0, 72.0), "lesion": (1326.0, 158.0)},
    3.0: {"csf": (4000.0, 2000.0), "gm": (1820.0, 99.0), "wm": (1084.0, 69.0), "lesion": (1626.0, 152.0)},
}
PROTON_DENSITY = {"csf": 1.0, "gm": 0.8, "wm": 0.7, "lesion": 0.85}


def spin_echo(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float) -> Tensor:
    """S = PD (1 − e^(−TR/T1)) e^(−TE/T2) (TE << TR)."""
    return pd * (1 - torch.exp(-tr / t1)) * torch.exp(-te / t2)


def spoiled_gradient_echo(pd: Tensor, t1: Tensor, t2s: Tensor, tr: float, te: float, flip_deg: float) -> Tensor:
    """S = PD sin α (1 − E1) / (1 − cos α E1) e^(−TE/T2*), E1 = e^(−TR/T1)."""
    a = torch.deg2rad(torch.tensor(flip_deg, dtype=pd.dtype, device=pd.device))
    e1 = torch.exp(-tr / t1)
    return pd * torch.sin(a) * (1 - e1) / (1 - torch.cos(a) * e1) * torch.exp(-te / t2s)


def inversion_recovery(pd: Tensor, t1: Tensor, t2: Tensor, tr: float, te: float, ti: float) -> Tensor:
    """Magnitude IR (FLAIR with long TI): |PD (1 − 2 e^(−TI/T1) + e^(−TR/T1)) e^(−TE/T2)|."""
    return (pd * (1 - 2 * torch.exp(-ti / t1) + torch.exp(-tr / t1)) * torch.exp(-te / t2)).abs()


def tissue_signals(sequence: str, field_t: float, tr: float, te: float, ti: float = 0.0, flip_deg: float = 90.0) -> Tensor:
    """Signal of each tissue in :data:`TISSUES` order for a protocol -> (4,)."""
    rel = RELAXATION_MS[field_t]
    t1 = torch.tensor([rel[t][0] for t in TISSUES], dtype=torch.float64)
    t2 = torch.tensor([rel[t][1] for t in TISSUES], dtype=torch.float64)
    pd = torch.tensor([PROTON_DENSITY[t] for t in TISSUES], dtype=torch.float64)
    if sequence == "se":
        return spin_echo(pd, t1, t2, tr, te)
    if sequence == "spgr":
        return spoiled_gradient_echo(pd, t1, t2 * 0.7, tr, te, flip_deg)
    if sequence == "ir":
        return inversion_recovery(pd, t1, t2, tr, te, ti)
    raise ValueError(f"unknown sequence {sequence!r} (se, spgr, ir)")


def synthesise(tissue: Tensor, signals: Tensor) -> Tensor:
    """Partial-volume image Σ_t f_t · S_t from tissue fractions (B, 4, *sp) -> (B, 1, *sp)."""
    s = signals.to(tissue.dtype).to(tissue.device).view(1, -1, *[1] * (tissue.ndim - 2))
    return (tissue * s).sum(1, keepdim=True)
