"""The demo model and demo teacher weights ship with c3-mri (package data, SHA-256 in
weights/weights.json, made by scripts/make_demo_weights.py) and load without any training."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import c3_mri
from c3_mri import models

WEIGHTS = Path(c3_mri.__file__).parent / "weights"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SHIPPED = {models.DEMO_WEIGHTS: models.unet3d, models.TEACHER_WEIGHTS: models.demo_teacher}


def _manifest() -> dict[str, dict]:
    return json.loads((WEIGHTS / "weights.json").read_text(encoding="utf-8"))["weights"]


def test_shipped_demo_model_and_teacher_match_their_checksums() -> None:
    manifest = _manifest()
    assert set(SHIPPED) <= set(manifest)
    for name in SHIPPED:
        entry = manifest[name]
        data = (WEIGHTS / entry["file"]).read_bytes()
        assert entry["file"] == f"{name}.safetensors" and len(data) == entry["bytes"] < 3_000_000
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["command"].startswith("python scripts/make_demo_weights.py --modality mri")


def test_packaging_ships_the_model_weights() -> None:
    text = PYPROJECT.read_text(encoding="utf-8")
    data = re.search(r"^\[tool\.setuptools\.package-data\]\s*\nc3_mri = \[(.*)\]$", text, re.M)
    assert data and '"weights/*.safetensors"' in data.group(1) and '"weights/weights.json"' in data.group(1)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_demo_model_and_teacher_load_the_shipped_file_without_training(name: str, tmp_path, monkeypatch) -> None:
    from c3_core.evaluation.runner import weights_sha256

    monkeypatch.setenv("C3_CACHE_DIR", str(tmp_path))  # an empty cache: only the shipped file can supply weights
    monkeypatch.delenv("C3_IGNORE_SHIPPED_WEIGHTS", raising=False)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo weights were trained instead of loaded")

    monkeypatch.setattr(models, "train_reference", no_training)
    monkeypatch.setattr(models, "train_demo", no_training)
    monkeypatch.setattr(models, "train_teacher", no_training)
    bundle = SHIPPED[name](weights="demo")
    assert bundle.trained and weights_sha256(bundle) == _manifest()[name]["sha256"]
    assert not (tmp_path / "weights").exists()


def test_the_demo_gate_was_calibrated_with_the_shipped_teacher() -> None:
    gate = json.loads((WEIGHTS.parent / "gates" / "demo.json").read_text(encoding="utf-8"))
    assert gate["teacher_weights_sha256"] == _manifest()[models.TEACHER_WEIGHTS]["sha256"]
