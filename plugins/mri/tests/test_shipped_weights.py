"""The demo model and demo teacher weights ship with c3-mri (package data, SHA-256 in
weights/weights.json, made by scripts/make_demo_weights.py) and load without any training."""

from __future__ import annotations

import json
import re
from pathlib import Path

from c3_core.cache import shipped_manifest
from c3_core.testing import check_shipped_weights
from c3_mri import models

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_demo_model_and_teacher_load_their_shipped_files_without_training(tmp_path: Path) -> None:
    check_shipped_weights("c3_mri", {models.DEMO_WEIGHTS: models.unet3d, models.TEACHER_WEIGHTS: models.demo_teacher}, tmp_path)


def test_packaging_ships_the_model_weights() -> None:
    text = PYPROJECT.read_text(encoding="utf-8")
    data = re.search(r"^\[tool\.setuptools\.package-data\]\s*\nc3_mri = \[(.*)\]$", text, re.M)
    assert data and '"weights/*.safetensors"' in data.group(1) and '"weights/weights.json"' in data.group(1)


def test_the_demo_gate_was_calibrated_with_the_shipped_teacher() -> None:
    gate = json.loads((Path(models.__file__).parent / "gates" / "demo.json").read_text(encoding="utf-8"))
    assert gate["teacher_weights_sha256"] == shipped_manifest("c3_mri")[models.TEACHER_WEIGHTS]["sha256"]
