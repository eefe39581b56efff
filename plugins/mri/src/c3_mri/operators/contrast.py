"""Protocol contrast change from the Bloch steady-state equations.

With tissue maps (``extras["tissue"]``: CSF, GM, WM, lesion fractions) the image is changed by
the difference between the new and the reference protocol's partial-volume synthesis, scaled to
the image's intensity, so texture, bias and noise of the original are kept. Without tissue maps
the *Bloch-informed lookup* maps intensities monotonically through anchors at the tissue-class
signals of the reference protocol to those of the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import uniform
from c3_mri.functional.bloch import synthesise, tissue_signals
from c3_mri.operators._base import MriOperator


@dataclass(frozen=True)
class ContrastParams:
    sequence: str  # "se", "spgr" or "ir"
    field_t: float  # 1.5 or 3.0
    tr_ms: float
    te_ms: float
    ti_ms: float
    new_tr_ms: float
    new_te_ms: float
    new_ti_ms: float


def lookup(image: Tensor, anchors_from: Tensor, anchors_to: Tensor) -> Tensor:
    """Piecewise-linear monotone map through sorted anchors (extrapolated with the end slopes)."""
    order = torch.argsort(anchors_from)
    xf, xt = anchors_from[order], torch.cummax(anchors_to[order], 0).values  # enforce monotone
    xf = torch.cat([torch.zeros(1, dtype=xf.dtype, device=xf.device), xf])
    xt = torch.cat([torch.zeros(1, dtype=xt.dtype, device=xt.device), xt])
    idx = torch.bucketize(image.clamp_min(0), xf[1:-1])
    x0, x1, y0, y1 = xf[idx], xf[idx + 1], xt[idx], xt[idx + 1]
    w = (image - x0) / (x1 - x0).clamp_min(1e-9)
    return y0 + w * (y1 - y0)


class ProtocolContrast(MriOperator[ContrastParams]):
    id = "mri.contrast"
    version = "1"
    severity = Severity("protocol_change", "fraction of the admissible protocol range (TE ±25 %, TI ±300 ms, TR ±20 %)", 0.0, 1.0, (0.25, 0.5, 0.75, 1.0))
    params_type = ContrastParams
    summary = "Bloch-equation contrast change (SE / SPGR / IR) from tissue maps or a tissue-anchored lookup"

    def __init__(self, sequence: str = "ir", field_t: float = 3.0, tr_ms: float = 9000.0, te_ms: float = 100.0, ti_ms: float = 2500.0) -> None:
        if sequence not in ("se", "spgr", "ir") or field_t not in (1.5, 3.0):
            raise ValueError(f"{self.id}: sequence must be se/spgr/ir and field_t 1.5 or 3.0")
        self.base = (sequence, float(field_t), float(tr_ms), float(te_ms), float(ti_ms))

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> ContrastParams:
        seq, field, tr, te, ti = self.base
        return ContrastParams(
            seq, field, tr, te, ti,
            new_tr_ms=tr * (1 + 0.2 * severity * uniform(generator, -1, 1)),
            new_te_ms=te * (1 + 0.25 * severity * uniform(generator, -1, 1)),
            new_ti_ms=max(0.0, ti + 300.0 * severity * uniform(generator, -1, 1)),
        )

    def _apply(self, batch: Batch, params: Sequence[ContrastParams]) -> Batch:
        out = []
        tissue = batch.extras.get("tissue")
        for i, p in enumerate(params):
            old = tissue_signals(p.sequence, p.field_t, p.tr_ms, p.te_ms, p.ti_ms)
            new = tissue_signals(p.sequence, p.field_t, p.new_tr_ms, p.new_te_ms, p.new_ti_ms)
            x = batch.image[i : i + 1]
            if tissue is not None:
                t = tissue[i : i + 1].to(x.dtype)
                s_old, s_new = synthesise(t, old), synthesise(t, new)
                brain = t[:, 1:3].sum(1, keepdim=True) > 0.5
                scale = x[brain].median() / s_old[brain].median().clamp_min(1e-9) if bool(brain.any()) else torch.tensor(1.0)
                out.append((x + scale * (s_new - s_old)).clamp_min(0))
            else:
                wm = float(x.flatten().kthvalue(max(1, int(0.75 * x.numel()))).values)  # WM ~ bright upper quartile
                scale = wm / float(old[2])
                out.append(lookup(x, (old * scale).to(x), (new * scale).to(x)))
        return batch.replace(image=torch.cat(out, 0).to(batch.image.dtype))
