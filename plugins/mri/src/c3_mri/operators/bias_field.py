"""B1 receive bias field: a smooth, strictly positive multiplicative field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_mri.functional.bias_field import log_bias_field, total_order_mask
from c3_mri.operators._base import MriOperator


@dataclass(frozen=True)
class BiasFieldParams:
    order: int  # maximum total order of the Legendre terms
    coefficients: tuple[float, ...]  # log-gain coefficient per tensor-product term ((order+1)^D)


class BiasField(MriOperator[BiasFieldParams]):
    """field = exp(Σ c_ijk P_i P_j P_k); coefficients ~ U(−s, s) for terms of total order 1..order."""

    id = "mri.bias_field"
    version = "1"
    severity = Severity("coefficient_scale", "natural-log gain per Legendre term", 0.0, 0.15, (0.03, 0.06, 0.1, 0.15))
    params_type = BiasFieldParams
    summary = "B1 receive bias: exp of a separable low-order Legendre field"

    def __init__(self, order: int = 3) -> None:
        if not 1 <= order <= 6:
            raise ValueError(f"{self.id}: order must be in 1..6, got {order}")
        self.order = int(order)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> BiasFieldParams:
        d = len(info.spatial_shape)
        mask = total_order_mask(self.order, d)
        u = torch.rand(mask.numel(), generator=generator, dtype=torch.float64) * 2 - 1
        return BiasFieldParams(self.order, tuple(float(v) for v in (u * severity * mask.double())))

    def _apply(self, batch: Batch, params: Sequence[BiasFieldParams]) -> Batch:
        order = params[0].order
        if any(p.order != order for p in params):
            groups = {p.order for p in params}
            raise ValueError(f"{self.id}: one batch cannot mix orders {sorted(groups)}")
        coeff = torch.tensor([p.coefficients for p in params], device=batch.device, dtype=torch.float32)
        field = torch.exp(log_bias_field(batch.spatial_shape, coeff, order)).unsqueeze(1)
        return batch.replace(image=batch.image * field)
