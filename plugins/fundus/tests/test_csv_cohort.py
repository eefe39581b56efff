"""EyePACS-style CSV loading and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c3_fundus.data.csv_cohort import FundusCohortError, FundusCSV


def _write(tmp: Path, name: str, mode: str = "RGB") -> None:
    arr = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(arr)
    (im if mode == "RGB" else im.convert("L")).save(tmp / name)


def test_reads_eyepacs_csv(tmp_path: Path) -> None:
    _write(tmp_path, "10_left.jpeg")
    (tmp_path / "labels.csv").write_text("image,level\n10_left,3\n")
    s = FundusCSV(tmp_path / "labels.csv", size=32)[0]
    assert s.image.shape == (3, 32, 32) and int(s.label) == 3
    assert "10_left" not in s.exam_id


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("image,level\na,7\n", "row 2: grade '7' is outside 0-4"),
        ("image,level\nmissing,1\n", "row 2: image file 'missing' not found"),
        ("name,level\na,1\n", "needs an image column"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path: Path, rows: str, message: str) -> None:
    _write(tmp_path, "a.png")
    (tmp_path / "c.csv").write_text(rows)
    with pytest.raises(FundusCohortError, match=message):
        FundusCSV(tmp_path / "c.csv")


def test_grayscale_and_corrupt_images(tmp_path: Path) -> None:
    _write(tmp_path, "g.png", mode="L")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "c.csv").write_text("image,level\ng.png,0\nbad.jpg,1\n")
    ds = FundusCSV(tmp_path / "c.csv")
    with pytest.raises(FundusCohortError, match="g.png .*expected an RGB"):
        ds[0]
    with pytest.raises(FundusCohortError, match="bad.jpg .*not a readable image"):
        ds[1]
