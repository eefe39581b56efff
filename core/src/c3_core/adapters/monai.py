"""Run a C3 operator as a MONAI dictionary transform.

Example::

    from c3_core.adapters.monai import C3Transformd
    from c3_mri.operators.bias_field import BiasField
    t = C3Transformd(BiasField(), keys="image", mask_keys="label", severity=0.3, seed=0)
    out = t({"image": img, "label": seg})     # img: (C, H, W, D) tensor or MetaTensor

Spacing comes from a MetaTensor's ``pixdim`` (else ``spacing`` or 1 mm). The image must already
be in the operator's intensity domain. Provenance is stored under ``"<key>_c3_provenance"``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from c3_core.adapters._single import apply_one
from c3_core.operator import Operator
from c3_core.seeding import generator_from_seed


class C3Transformd(Randomizable, MapTransform):
    """Apply ``operator`` at ``severity`` to ``keys``; ``mask_keys`` move with spatial operators."""

    def __init__(
        self,
        operator: Operator[Any],
        keys: KeysCollection,
        mask_keys: KeysCollection = (),
        severity: float | None = None,
        prob: float = 1.0,
        seed: int = 0,
        spacing: Sequence[float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.operator = operator
        self.mask_keys = (mask_keys,) if isinstance(mask_keys, str) else tuple(mask_keys)
        self.severity = operator.severity.check(operator.severity.extreme if severity is None else severity, operator.id)
        self.prob = float(prob)
        self.spacing = None if spacing is None else tuple(spacing)
        self.generator = generator_from_seed(seed)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> C3Transformd:
        """Reseed the transform's own ``torch.Generator`` (MONAI's ``set_determinism`` calls this)."""
        if seed is not None:
            self.generator = generator_from_seed(int(seed))
        return self

    def randomize(self, data: Any = None) -> bool:
        return bool(torch.rand((), generator=self.generator).item() < self.prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self.randomize():
            return d
        for key in self.key_iterator(d):
            img = d[key]
            spacing = self.spacing or _pixdim(img)
            masks = [torch.as_tensor(d[m]) for m in self.mask_keys if m in d] if self.operator.spatial else []
            new, moved, prov = apply_one(
                self.operator, torch.as_tensor(img), masks, spacing, str(d.get("exam_id", "monai-item")),
                self.generator, self.severity,
            )
            d[key] = _like(img, new)
            for m, t in zip([m for m in self.mask_keys if m in d], moved):
                d[m] = _like(d[m], t)
            d[f"{key}_c3_provenance"] = prov
        return d


def _pixdim(img: Any) -> tuple[float, ...]:
    n = torch.as_tensor(img).ndim - 1
    pixdim = getattr(img, "pixdim", None)
    if pixdim is not None:
        return tuple(float(v) for v in torch.as_tensor(pixdim).flatten()[:n])
    return (1.0,) * n


def _like(template: Any, value: torch.Tensor) -> Any:
    """Return ``value`` as the same type as ``template`` (MetaTensor keeps its metadata)."""
    if hasattr(template, "meta") and hasattr(template, "copy_meta_from"):
        out = type(template)(value)
        out.copy_meta_from(template)
        return out
    return value
