"""Steady-state MR signal equations and tissue relaxation times (Bloch-informed contrast).

All times in ms, angles in degrees, proton density relative to free water (CSF = 1).

Signal equations (magnitude, perfect spoiling, TE << TR unless stated):

* spin echo (SE): ``S = PD (1 − e^(−TR/T1)) e^(−TE/T2)``;
* spoiled gradient echo (SPGR / FLASH): ``S = PD sin α (1 − E1) / (1 − cos α E1) e^(−TE/T2*)``,
  ``E1 = e^(−TR/T1)``; T2* is taken as 0.7 T2 for brain tissue (an approximation; a T2* map is
  rarely available);
* inversion recovery (IR, FLAIR with a long TI): ``S = |PD (1 − 2 e^(−TI/T1) + e^(−TR/T1)) e^(−TE/T2)|``
  (180° inversion, 90° readout, TR measured from inversion; a tissue is nulled at TI = T1 ln 2
  when TR >> T1).

Relaxation times (T1, T2 in ms) used for synthesis, per field strength:

=========  =================  =================  =======================================
tissue     1.5 T (T1, T2)     3 T (T1, T2)       source
=========  =================  =================  =======================================
WM         884, 72            1084, 69           Stanisz et al., MRM 54:507 (2005), table 1
GM         1124, 95           1820, 99           Stanisz et al., MRM 54:507 (2005), table 1
CSF        4000, 2000         4000, 2000         free water, approximate (e.g. Lu et al.,
                                                 MRM 54:1403 (2005): CSF T1 ≈ 4.2 s at 3 T)
lesion     1326, 158          1626, 152          assumption: T1 1.5× and T2 2.2× WM, within
                                                 reported ranges for T2-hyperintense MS lesions
=========  =================  =================  =======================================

Relative proton density: CSF 1.0, GM 0.80, WM 0.70, lesion 0.85 (typical textbook values;
WM ≈ 0.69–0.72 and GM ≈ 0.78–0.82 of water).
"""

from __future__ import annotations

import torch
from torch import Tensor

TISSUES = ("csf", "gm", "wm", "lesion")
FIELDS_T = (1.5, 3.0)
RELAXATION_MS: dict[float, dict[str, tuple[float, float]]] = {
    1.5: {"csf": (4000.0, 2000.0), "gm": (1124.0, 95.0), "wm": (884.0, 72.0), "lesion": (1326.0, 158.0)},
    3.0: {"csf": (4000.0, 2000.0), "gm": (1820.0, 99.0), "wm": (1084.0, 69.0), "lesion": (1626.0, 152.0)},
}
PROTON_DENSITY = {"csf": 1.0, "gm": 0.8, "wm": 0.7, "lesion": 0.85}
T2STAR_OVER_T2 = 0.7
SEQUENCES = ("se", "spgr", "ir")


def spin_echo(pd: Tensor, t1: Tensor, t2: Tensor, tr: Tensor | float, te: Tensor | float) -> Tensor:
    """S = PD (1 − e^(−TR/T1)) e^(−TE/T2)."""
    return pd * (1 - torch.exp(-tr / t1)) * torch.exp(-te / t2)


def spoiled_gradient_echo(
    pd: Tensor, t1: Tensor, t2s: Tensor, tr: Tensor | float, te: Tensor | float, flip_deg: Tensor | float
) -> Tensor:
    """S = PD sin α (1 − E1) / (1 − cos α E1) e^(−TE/T2*), E1 = e^(−TR/T1)."""
    a = torch.deg2rad(torch.as_tensor(flip_deg, dtype=pd.dtype, device=pd.device))
    e1 = torch.exp(-tr / t1)
    return pd * torch.sin(a) * (1 - e1) / (1 - torch.cos(a) * e1) * torch.exp(-te / t2s)


def inversion_recovery(
    pd: Tensor, t1: Tensor, t2: Tensor, tr: Tensor | float, te: Tensor | float, ti: Tensor | float
) -> Tensor:
    """|PD (1 − 2 e^(−TI/T1) + e^(−TR/T1)) e^(−TE/T2)| (magnitude reconstruction)."""
    return (pd * (1 - 2 * torch.exp(-ti / t1) + torch.exp(-tr / t1)) * torch.exp(-te / t2)).abs()


def tissue_table(field_t: float, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor]:
    """(PD, T1, T2) of :data:`TISSUES` at ``field_t`` (1.5 or 3.0 T), each (4,)."""
    if field_t not in RELAXATION_MS:
        raise ValueError(f"no relaxation table for {field_t} T (have {sorted(RELAXATION_MS)})")
    rel = RELAXATION_MS[field_t]
    t1 = torch.tensor([rel[t][0] for t in TISSUES], dtype=dtype)
    t2 = torch.tensor([rel[t][1] for t in TISSUES], dtype=dtype)
    pd = torch.tensor([PROTON_DENSITY[t] for t in TISSUES], dtype=dtype)
    return pd, t1, t2


def tissue_signals(
    sequence: str,
    field_t: float,
    tr: Tensor | float,
    te: Tensor | float,
    ti: Tensor | float = 0.0,
    flip_deg: Tensor | float = 90.0,
) -> Tensor:
    """Signal of each tissue of :data:`TISSUES` for a protocol.

    Protocol values may be floats (-> (4,)) or (B,) tensors (-> (B, 4)), float64.
    """
    pd, t1, t2 = tissue_table(field_t)

    def col(v: Tensor | float) -> Tensor:
        t = torch.as_tensor(v, dtype=torch.float64)
        return t.unsqueeze(-1) if t.ndim == 1 else t

    tr_, te_, ti_, fa_ = col(tr), col(te), col(ti), col(flip_deg)
    if sequence == "se":
        return spin_echo(pd, t1, t2, tr_, te_)
    if sequence == "spgr":
        return spoiled_gradient_echo(pd, t1, t2 * T2STAR_OVER_T2, tr_, te_, fa_)
    if sequence == "ir":
        return inversion_recovery(pd, t1, t2, tr_, te_, ti_)
    raise ValueError(f"unknown sequence {sequence!r} (choose from {SEQUENCES})")


def synthesise(tissue: Tensor, signals: Tensor) -> Tensor:
    """Partial-volume image Σ_t f_t S_t: ``tissue (B, T, *sp)``, ``signals (T,)`` or (B, T) -> (B, 1, *sp).

    With 3 tissue channels (CSF, GM, WM) the first three signals are used.
    """
    t = tissue.shape[1]
    s = signals.to(device=tissue.device, dtype=tissue.dtype)
    s = s.expand(tissue.shape[0], -1) if s.ndim == 1 else s
    s = s[:, :t].reshape(tissue.shape[0], t, *[1] * (tissue.ndim - 2))
    return (tissue * s).sum(1, keepdim=True)
