"""EyePACS / Messidor-2 / APTOS style cohorts: a CSV of image files and DR grades 0-4.

Accepted columns (first match wins): image — ``image`` (EyePACS), ``id_code`` (APTOS),
``image_id`` (Messidor-2 Kaggle), ``filename``; grade — ``level`` (EyePACS), ``diagnosis``
(APTOS), ``adjudicated_dr_grade`` (Messidor-2), ``grade``. Image paths are relative to the CSV's
folder; a name without extension tries .png, .jpeg, .jpg, .tif. Referable DR = grade >= 2.
Rows whose grade is empty are skipped only when ``skip_ungraded=True`` (Messidor-2 has a few
ungradable images); otherwise they are errors.

Images are read with Pillow (PNG/JPEG/TIFF), must be RGB, and are resized to ``size`` px;
the FOV mask is extracted (a dark-threshold disc fit) into ``extras['fov']``, and the pixel
spacing is estimated from the FOV diameter assuming a 45° field (12 mm of retina).
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from c3_core.batch import Sample

IMAGE_COLUMNS = ("image", "id_code", "image_id", "filename")
GRADE_COLUMNS = ("level", "diagnosis", "adjudicated_dr_grade", "grade")
EXTENSIONS = (".png", ".jpeg", ".jpg", ".tif", ".tiff")
RETINA_MM_ACROSS_FOV = 12.0


class FundusCohortError(ValueError):
    """A malformed cohort file or image; the message names the file and the 1-based CSV row."""


def pseudonym(value: str) -> str:
    """A stable pseudonymous exam id (never the original file name)."""
    return "fundus-" + hashlib.blake2b(value.encode("utf-8"), digest_size=6).hexdigest()


def extract_fov(rgb: torch.Tensor, threshold: float = 0.06) -> torch.Tensor:
    """Field-of-view mask (1, H, W) of an sRGB photograph (3, H, W).

    Pixels brighter than ``threshold`` in the red channel are the retina; the mask is the disc
    with their centroid and equivalent radius (robust to dark lesions and vessels inside the FOV
    and to stray light outside it), clipped to the image. An image with no bright pixels gets an
    all-zero mask.
    """
    bright = (rgb[0] > threshold).float()
    area = float(bright.sum())
    h, w = rgb.shape[-2:]
    if area < 16:
        return torch.zeros(1, h, w)
    yy = torch.arange(h, dtype=torch.float32).view(h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, w)
    cy, cx = float((bright * yy).sum()) / area, float((bright * xx).sum()) / area
    r = math.sqrt(area / math.pi)
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).float().unsqueeze(0)


class FundusCSV(Dataset):
    """A graded fundus cohort read from a CSV (see the module docstring for the conventions)."""

    def __init__(self, csv_path: str | Path, size: int = 128, skip_ungraded: bool = False) -> None:
        self.path = Path(csv_path)
        self.size = int(size)
        if self.size < 16:
            raise FundusCohortError(f"{self.path}: size must be >= 16 px, got {size}")
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                cols = reader.fieldnames or []
                img_col = next((c for c in IMAGE_COLUMNS if c in cols), None)
                grade_col = next((c for c in GRADE_COLUMNS if c in cols), None)
                if img_col is None or grade_col is None:
                    raise FundusCohortError(
                        f"{self.path}: needs an image column (one of {', '.join(IMAGE_COLUMNS)}) and a grade column "
                        f"(one of {', '.join(GRADE_COLUMNS)}); found {cols}"
                    )
                self.rows: list[tuple[int, Path, int]] = []
                for n, row in enumerate(reader, start=2):  # row 1 is the header
                    raw = (row.get(grade_col) or "").strip()
                    if raw == "" and skip_ungraded:
                        continue
                    try:
                        value = float(raw)
                    except ValueError:
                        raise FundusCohortError(f"{self.path}: row {n}: grade {raw!r} is not a number") from None
                    if not math.isfinite(value) or value != int(value) or not 0 <= value <= 4:
                        raise FundusCohortError(f"{self.path}: row {n}: grade {raw!r} is outside 0-4")
                    name = (row.get(img_col) or "").strip()
                    if not name:
                        raise FundusCohortError(f"{self.path}: row {n}: empty image name")
                    self.rows.append((n, self._resolve(name, n), int(value)))
        except OSError as exc:
            raise FundusCohortError(f"{self.path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise FundusCohortError(f"{self.path}: not a UTF-8 text CSV") from None
        if not self.rows:
            raise FundusCohortError(f"{self.path}: no graded rows")

    def _resolve(self, name: str, row: int) -> Path:
        p = self.path.parent / name
        candidates = [p] if p.suffix.lower() in EXTENSIONS else [p.with_name(p.name + s) for s in EXTENSIONS]
        for c in candidates:
            if c.is_file():
                return c
        raise FundusCohortError(f"{self.path}: row {row}: image file {name!r} not found")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Sample:
        row, path, grade = self.rows[i]
        where = f"{path} (row {row} of {self.path.name})"
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode not in ("RGB", "RGBA"):
                    raise FundusCohortError(f"{where}: expected an RGB colour photograph, got mode {im.mode} (greyscale or palette)")
                im = im.convert("RGB").resize((self.size, self.size), Image.BICUBIC)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise FundusCohortError(f"{where}: not a readable image ({exc})") from None
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
        fov = extract_fov(image)
        diameter_px = 2.0 * math.sqrt(float(fov.sum()) / math.pi)
        spacing = RETINA_MM_ACROSS_FOV / diameter_px if diameter_px > 4 else RETINA_MM_ACROSS_FOV / self.size
        return Sample(
            image=image,
            exam_id=pseudonym(f"{self.path.name}:{path.name}"),
            modality="fundus",
            domain="srgb",
            spacing=(spacing, spacing),
            label=torch.tensor(grade),
            extras={"fov": fov},
        )


def make_csv_dataset(*, source: str | None = None, split: str = "test", **options: object) -> FundusCSV:
    """Dataset factory registered as ``fundus.csv``: ``source`` is the CSV path (all rows are one split)."""
    if source is None:
        raise ValueError("fundus.csv needs source=PATH to a CSV of image files and grades")
    return FundusCSV(source, **options)  # type: ignore[arg-type]
