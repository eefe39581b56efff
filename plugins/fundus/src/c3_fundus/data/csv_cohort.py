"""EyePACS / Messidor-2 / APTOS style cohorts: a CSV of image files and DR grades 0-4.

Accepted column names: image (``image``, ``id_code``, ``image_id``, ``filename``) and grade
(``level``, ``diagnosis``, ``grade``, ``adjudicated_dr_grade``). Image paths are relative to the
CSV's folder; a missing extension tries .png, .jpeg, .jpg. Referable DR = grade >= 2.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from c3_core.batch import Sample

IMAGE_COLUMNS = ("image", "id_code", "image_id", "filename")
GRADE_COLUMNS = ("level", "diagnosis", "grade", "adjudicated_dr_grade")


class FundusCohortError(ValueError):
    """A malformed cohort file or image; the message names the file and row."""


def pseudonym(value: str) -> str:
    """A stable pseudonymous exam id (never the original file name)."""
    return "fundus-" + hashlib.blake2b(value.encode(), digest_size=6).hexdigest()


def fov_mask(rgb: torch.Tensor, threshold: float = 0.04) -> torch.Tensor:
    """Field-of-view mask (1, H, W): pixels whose red channel is above a dark threshold."""
    return (rgb[0] > threshold).float().unsqueeze(0)


class FundusCSV(Dataset):
    def __init__(self, csv_path: str | Path, size: int = 128) -> None:
        self.path = Path(csv_path)
        self.size = size
        try:
            with self.path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                cols = reader.fieldnames or []
                img_col = next((c for c in IMAGE_COLUMNS if c in cols), None)
                grade_col = next((c for c in GRADE_COLUMNS if c in cols), None)
                if img_col is None or grade_col is None:
                    raise FundusCohortError(f"{self.path}: needs an image column {IMAGE_COLUMNS} and a grade column {GRADE_COLUMNS}; found {cols}")
                self.rows = []
                for n, row in enumerate(reader, start=2):
                    raw = (row[grade_col] or "").strip()
                    try:
                        grade = int(float(raw))
                    except ValueError:
                        raise FundusCohortError(f"{self.path}: row {n}: grade {raw!r} is not a number") from None
                    if not 0 <= grade <= 4 or float(raw) != grade:
                        raise FundusCohortError(f"{self.path}: row {n}: grade {raw!r} is outside 0-4")
                    self.rows.append((n, self._resolve(row[img_col], n), grade))
        except OSError as exc:
            raise FundusCohortError(f"{self.path}: cannot read ({exc.strerror})") from None
        if not self.rows:
            raise FundusCohortError(f"{self.path}: no rows")

    def _resolve(self, name: str, row: int) -> Path:
        p = self.path.parent / name
        candidates = [p] if p.suffix else [p.with_suffix(s) for s in (".png", ".jpeg", ".jpg")]
        for c in candidates:
            if c.is_file():
                return c
        raise FundusCohortError(f"{self.path}: row {row}: image file {name!r} not found")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Sample:
        row, path, grade = self.rows[i]
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode not in ("RGB", "RGBA"):
                    raise FundusCohortError(f"{path} (row {row}): expected an RGB colour photograph, got mode {im.mode}")
                im = im.convert("RGB").resize((self.size, self.size), Image.BICUBIC)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise FundusCohortError(f"{path} (row {row}): not a readable image ({exc})") from None
        image = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        return Sample(image, pseudonym(str(path.name)), "fundus", "srgb", (1.0, 1.0), torch.tensor(grade), extras={"fov": fov_mask(image)})


def make_csv_dataset(*, source: str | None = None, split: str = "test", **options: object) -> FundusCSV:
    """Dataset factory registered as ``fundus.csv`` (``source`` = the CSV path)."""
    if source is None:
        raise ValueError("fundus.csv needs source=PATH to a CSV")
    return FundusCSV(source, **options)  # type: ignore[arg-type]
