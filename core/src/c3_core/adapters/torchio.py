"""Run a C3 operator as a TorchIO transform on every ScalarImage of a Subject.

Example::

    import torchio as tio
    from c3_core.adapters.torchio import C3TorchIOTransform
    t = tio.Compose([tio.ToCanonical(), C3TorchIOTransform(BiasField(), severity=0.3, seed=0)])

Label maps move with spatial operators. TorchIO images are ``(C, W, H, D)``; a 2-D image has
``D == 1`` and is given to the operator as 2-D. Provenance is stored in
``subject["c3_provenance"]`` (a list, one entry per image).
"""

from __future__ import annotations

from typing import Any

import torchio as tio

from c3_core.adapters._single import apply_one
from c3_core.operator import Operator
from c3_core.seeding import generator_from_seed


class C3TorchIOTransform(tio.Transform):
    """Apply ``operator`` at ``severity`` (physical units) with a seeded ``torch.Generator``."""

    def __init__(self, operator: Operator[Any], severity: float | None = None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.operator = operator
        self.severity = operator.severity.check(operator.severity.extreme if severity is None else severity, operator.id)
        self.seed = seed
        self.generator = generator_from_seed(seed)
        self.args_names = ["operator", "severity", "seed"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        labels = subject.get_images_dict(intensity_only=False, include=None)
        label_names = [n for n, im in labels.items() if isinstance(im, tio.LabelMap)]
        provenance = list(subject.get("c3_provenance", []))
        for name, image in subject.get_images_dict(intensity_only=True).items():
            flat = image.data.shape[-1] == 1 and 2 in self.operator.spatial_dims
            data = image.data[..., 0] if flat else image.data
            spacing = image.spacing[:2] if flat else image.spacing
            masks = []
            if self.operator.spatial:
                masks = [subject[n].data[..., 0] if flat else subject[n].data for n in label_names]
            new, moved, prov = apply_one(
                self.operator, data.float(), masks, spacing, str(subject.get("exam_id", name)),
                self.generator, self.severity,
            )
            image.set_data((new[..., None] if flat else new).to(image.data.dtype))
            for n, m in zip(label_names, moved):
                subject[n].set_data(m[..., None] if flat else m)
            provenance.append(prov | {"image": name})
        subject["c3_provenance"] = provenance
        return subject

    def is_invertible(self) -> bool:
        return False


__all__ = ["C3TorchIOTransform"]
