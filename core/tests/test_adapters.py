"""Registered operators run inside MONAI and TorchIO pipelines."""

from __future__ import annotations

import pytest
import torch
import toy_plugin

monai = pytest.importorskip("monai")
tio = pytest.importorskip("torchio")

from c3_core.adapters.monai import C3Transformd  # noqa: E402
from c3_core.adapters.torchio import C3TorchIOTransform  # noqa: E402


def _item() -> tuple[torch.Tensor, torch.Tensor]:
    s = toy_plugin.make_dataset()[1]
    return s.image, s.mask


def test_monai_dictionary_transform_moves_label_with_spatial_operator() -> None:
    img, mask = _item()
    t = C3Transformd(toy_plugin.ToyShift(), keys="image", mask_keys="label", severity=3, seed=0)
    out = monai.transforms.Compose([t])({"image": img, "label": mask})
    assert torch.equal(out["image"], torch.roll(img, 3, dims=-1))
    assert torch.equal(out["label"], torch.roll(mask, 3, dims=-1))
    assert out["image_c3_provenance"]["steps"][0]["op_id"] == "toy.shift"


def test_monai_transform_is_seeded_and_keeps_metatensor() -> None:
    img, mask = _item()
    meta_img = monai.data.MetaTensor(img, meta={"filename_or_obj": "x"})
    a = C3Transformd(toy_plugin.ToyNoise(), keys="image", severity=0.1, seed=3)({"image": meta_img})
    b = C3Transformd(toy_plugin.ToyNoise(), keys="image", severity=0.1, seed=3)({"image": meta_img})
    c = C3Transformd(toy_plugin.ToyNoise(), keys="image", severity=0.1, seed=4)({"image": meta_img})
    assert isinstance(a["image"], monai.data.MetaTensor) and a["image"].meta["filename_or_obj"] == "x"
    assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
    assert not torch.equal(a["image"].as_tensor(), c["image"].as_tensor())


def test_monai_transform_checks_severity() -> None:
    from c3_core.operator import SeverityError

    with pytest.raises(SeverityError, match="toy.noise"):
        C3Transformd(toy_plugin.ToyNoise(), keys="image", severity=5.0)


def test_torchio_transform_moves_label_map() -> None:
    img, mask = _item()
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=img[..., None]),
        seg=tio.LabelMap(tensor=mask[..., None].long()),
    )
    out = tio.Compose([C3TorchIOTransform(toy_plugin.ToyShift(), severity=2, seed=1)])(subject)
    assert torch.equal(out["image"].data[..., 0], torch.roll(img, 2, dims=-1))
    assert torch.equal(out["seg"].data[..., 0], torch.roll(mask, 2, dims=-1).long())
    assert out["c3_provenance"][0]["steps"][0]["params"] == {"dx": 2}
    assert torch.equal(subject["image"].data[..., 0], img)  # TorchIO copies the subject
