"""Batch invariants, operator base-class validation, severity ranges, provenance round trip."""

from __future__ import annotations

import pytest
import torch
import toy_plugin

from c3_core.batch import Batch, Sample, check_finite, collate, concat
from c3_core.domains import IntensityDomain, parse_domain
from c3_core.operator import SeverityError
from c3_core.provenance import params_from_dict, params_to_dict
from c3_core.seeding import derive_seed, generator_from_seed


def _batch(n: int = 3) -> Batch:
    ds = toy_plugin.make_dataset(n=n)
    return collate([ds[i] for i in range(n)])


def test_collate_select_repeat_concat() -> None:
    b = _batch(3)
    assert b.image.shape == (3, 1, 16, 16) and b.spatial_dims == 2 and b.exam_ids == ("toy-000", "toy-001", "toy-002")
    s = b.select([2, 0])
    assert s.exam_ids == ("toy-002", "toy-000") and torch.equal(s.image[0], b.image[2])
    r = b.repeat_interleave(2)
    assert r.exam_ids == ("toy-000", "toy-000", "toy-001", "toy-001", "toy-002", "toy-002")
    c = concat([b, s])
    assert c.size == 5 and torch.equal(c.mask[3], b.mask[2])
    pixels = torch.full((2, 1, 16, 16), 7.0)  # rows the caller already gathered: kept, the rest selected
    given = b.select([2, 0], image=pixels)
    assert given.image is pixels and torch.equal(given.mask, s.mask) and given.exam_ids == s.exam_ids
    with pytest.raises(ValueError, match="1 image rows for 2 indices"):
        b.select([2, 0], image=pixels[:1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": torch.zeros(2, 4, 4)}, "must be (B, C, H, W)"),
        ({"image": torch.zeros(2, 1, 4, 4, dtype=torch.int64)}, "floating point"),
        ({"exam_ids": ("a",)}, "1 exam ids for a batch of 2"),
        ({"spacing": ((1.0,), (1.0,))}, "must have 2 positive"),
        ({"spacing": ((1.0, -1.0), (1.0, 1.0))}, "must have 2 positive"),
        ({"mask": torch.zeros(2, 1, 5, 4)}, "does not match image"),
    ],
)
def test_batch_rejects_inconsistent_input(kwargs: dict, message: str) -> None:
    base = {
        "image": torch.zeros(2, 1, 4, 4),
        "exam_ids": ("a", "b"),
        "modality": "toy",
        "domain": "display",
        "spacing": ((1.0, 1.0), (1.0, 1.0)),
    }
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Batch(**(base | kwargs))


def test_collate_rejects_mixed_shapes_and_domains() -> None:
    a = Sample(torch.zeros(1, 4, 4), "a", "toy", "display", (1.0, 1.0))
    with pytest.raises(ValueError, match="different image shapes"):
        collate([a, Sample(torch.zeros(1, 5, 4), "b", "toy", "display", (1.0, 1.0))])
    with pytest.raises(ValueError, match="exam b"):
        collate([a, Sample(torch.zeros(1, 4, 4), "b", "toy", "srgb", (1.0, 1.0))])


def test_domain_parsing_and_finite_check() -> None:
    assert parse_domain("hu") is IntensityDomain.HU
    with pytest.raises(ValueError, match="unknown intensity domain 'kelvin'"):
        parse_domain("kelvin")
    with pytest.raises(ValueError, match="scan.nii: image has 1 NaN"):
        check_finite(torch.tensor([0.0, float("nan")]), "scan.nii")


def test_operator_validates_domain_modality_severity_and_params() -> None:
    op = toy_plugin.ToyGain()
    b = _batch(2)
    g = generator_from_seed(0)
    with pytest.raises(SeverityError, match=r"toy.gain: severity 7.5 is outside the admissible range \[0, 6\] dB"):
        op.sample_params(b.case_info(0), g, 7.5)
    params = [op.sample_params(b.case_info(i), g, 3.0) for i in range(2)]
    with pytest.raises(ValueError, match="expects intensity domain 'display', got 'srgb'"):
        op.apply(b.replace(domain="srgb"), params)
    with pytest.raises(ValueError, match="1 params for a batch of 2"):
        op.apply(b, params[:1])
    with pytest.raises(TypeError, match="expected GainParams"):
        op.apply(b, [toy_plugin.NoiseParams(0.1, 1)] * 2)
    out = op.apply(b, params)
    assert out.mask is b.mask
    ratio = out.image / b.image
    assert torch.allclose(ratio[0], torch.full_like(ratio[0], 10 ** (params[0].gain_db / 20)))


def test_provenance_params_round_trip() -> None:
    p = toy_plugin.NoiseParams(sigma=0.25, seed=123456789012)
    assert params_from_dict(toy_plugin.NoiseParams, params_to_dict(p)) == p
    with pytest.raises(ValueError, match="unknown parameter"):
        params_from_dict(toy_plugin.NoiseParams, {"sigma": 1.0, "seed": 1, "mu": 0})


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, "exam-1", 0) == derive_seed(0, "exam-1", 0)
    seeds = {derive_seed(s, e, k) for s in range(3) for e in ("a", "b") for k in range(4)}
    assert len(seeds) == 24
    assert 0 <= derive_seed(5, "x", 1) < 2**63
