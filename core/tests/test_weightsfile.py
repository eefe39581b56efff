"""safetensors bytes that depend only on the tensors and the metadata (c3_core.weightsfile)."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open
from safetensors.torch import load, save

from c3_core.weightsfile import safetensors_bytes


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"head.weight": torch.randn(3, 4, generator=g), "body.0.bias": torch.randn(4, generator=g).half(),
            "body.0.weight": torch.randn(4, 2, 3, generator=g)}


def test_the_same_weights_and_metadata_give_the_same_bytes(tmp_path) -> None:  # noqa: ANN001
    """Twenty saves with the metadata keys inserted in different orders are one byte string
    (safetensors' own writer orders them differently from save to save); it reads back to the
    same tensors and metadata, and its header stays 8-byte aligned."""
    tensors = _tensors()
    items = [("architecture", "demo_cnn"), ("dataset", "fundus.demo"), ("task", "multiclass"),
             ("class_names", json.dumps(["no DR", "PDR"])), ("modality", "fundus"), ("note", "σ ≥ 1")]
    outputs = {safetensors_bytes(tensors, dict(items[i % 6:] + items[: i % 6])) for i in range(20)}
    assert len(outputs) == 1
    raw = outputs.pop()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and json.loads(raw[8 : 8 + n])["__metadata__"] == dict(sorted(items))
    back = load(raw)
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    path = tmp_path / "w.safetensors"
    path.write_bytes(raw)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == dict(items)
        assert torch.equal(f.get_tensor("head.weight"), tensors["head.weight"])


def test_no_metadata_or_one_key_is_safetensors_own_bytes() -> None:
    tensors = _tensors()
    assert safetensors_bytes(tensors) == save(tensors)
    assert safetensors_bytes(tensors, {"format": "x"}) == save(tensors, metadata={"format": "x"})
