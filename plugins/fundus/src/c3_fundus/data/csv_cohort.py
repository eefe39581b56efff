"""EyePACS / Messidor-2 / APTOS style cohorts: a CSV of image files and DR grades 0-4.

Accepted columns (first match wins): image — ``image`` (EyePACS), ``id_code`` (APTOS),
``image_id`` (Messidor-2 Kaggle), ``filename``; grade — ``level`` (EyePACS), ``diagnosis``
(APTOS), ``adjudicated_dr_grade`` (Messidor-2), ``grade``. Image paths are relative to
``image_root`` (default: the CSV's folder) and must resolve inside it, symlinks followed (else a
:class:`~c3_core.datapaths.CohortPathError` naming the row and column); every row is checked when
the dataset is made, before any image is read. A name without extension tries .png, .jpeg, .jpg,
.tif, .tiff. Referable DR = grade >= 2.
Rows whose grade is empty are skipped only when ``skip_ungraded=True`` (Messidor-2 has a few
ungradable images); otherwise they are errors.

Images are read with Pillow (PNG/JPEG/TIFF), must be RGB, and are resized to ``size`` px;
the FOV mask is extracted (a dark-threshold disc fit) into ``extras['fov']``, and the pixel
spacing is estimated from the FOV diameter assuming a 45° field (12 mm of retina).

Exam ids are the image path relative to the root, with the extension found (``a/1.png`` and
``b/1.png`` are two exams), or with ``id_column`` that column's value; ids must be unique. The
core replaces them with keyed pseudonyms before anything is written.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.datapaths import refuse_duplicate_ids, resolve_inside, stable_id

IMAGE_COLUMNS = ("image", "id_code", "image_id", "filename")
GRADE_COLUMNS = ("level", "diagnosis", "adjudicated_dr_grade", "grade")
EXTENSIONS = (".png", ".jpeg", ".jpg", ".tif", ".tiff")
RETINA_MM_ACROSS_FOV = 12.0


class FundusCohortError(ValueError):
    """A malformed cohort file or image; the message names the file and the 1-based CSV row."""


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

    def __init__(
        self,
        csv_path: str | Path,
        size: int = 128,
        skip_ungraded: bool = False,
        image_root: str | Path | None = None,
        id_column: str | None = None,
    ) -> None:
        self.path = Path(csv_path)
        self.size = int(size)
        if self.size < 16:
            raise FundusCohortError(f"{self.path}: size must be >= 16 px, got {size}")
        self.root = Path(image_root) if image_root else self.path.parent
        if image_root and not self.root.is_dir():
            raise FundusCohortError(f"{self.path}: image_root {str(self.root)!r} is not a folder")
        self.rows: list[tuple[int, Path, str, int]] = []
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
                if id_column and id_column not in cols:
                    raise FundusCohortError(f"{self.path}: id_column {id_column!r} is not a column; found {cols}")
                for n, row in enumerate(reader, start=2):  # row 1 is the header
                    self._add_row(n, row, img_col, grade_col, skip_ungraded, id_column)
        except OSError as exc:
            raise FundusCohortError(f"{self.path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise FundusCohortError(f"{self.path}: not a UTF-8 text CSV") from None
        if not self.rows:
            raise FundusCohortError(f"{self.path}: no graded rows")
        refuse_duplicate_ids(((exam_id, n) for n, _, exam_id, _ in self.rows), self.path)

    def _add_row(self, n: int, row: dict[str, str], img_col: str, grade_col: str, skip_ungraded: bool, id_column: str | None) -> None:
        """Check row ``n`` (its image name must stay inside the root, graded or not) and keep it if graded."""
        name = (row.get(img_col) or "").strip()
        if not name:
            raise FundusCohortError(f"{self.path}: row {n}, column {img_col!r}: empty image name")
        resolve_inside(self.root, name, source=self.path, row=n, column=img_col)
        raw = (row.get(grade_col) or "").strip()
        if raw == "" and skip_ungraded:
            return
        try:
            value = float(raw)
        except ValueError:
            raise FundusCohortError(f"{self.path}: row {n}, column {grade_col!r}: grade {raw!r} is not a number") from None
        if not math.isfinite(value) or value != int(value) or not 0 <= value <= 4:
            raise FundusCohortError(f"{self.path}: row {n}, column {grade_col!r}: grade {raw!r} is outside 0-4")
        path, found = self._resolve(name, n, img_col)
        if id_column:
            exam_id = (row.get(id_column) or "").strip()
            if not exam_id:
                raise FundusCohortError(f"{self.path}: row {n}, column {id_column!r}: empty exam id")
        else:
            exam_id = stable_id(self.root, found)
        self.rows.append((n, path, exam_id, int(value)))

    def _resolve(self, name: str, row: int, column: str) -> tuple[Path, str]:
        """(path to read, name with the extension found) of row ``row``'s image.

        A name without a known extension tries each of :data:`EXTENSIONS`; every candidate tried
        must stay inside the root (a ``1.png`` symlink leading out is refused even if it matches).
        """
        has_ext = Path(name).suffix.lower() in EXTENSIONS
        for candidate in [name] if has_ext else [name + s for s in EXTENSIONS]:
            if resolve_inside(self.root, candidate, source=self.path, row=row, column=column).is_file():
                return self.root / candidate, candidate
        raise FundusCohortError(f"{self.path}: row {row}, column {column!r}: image file {name!r} not found")

    def __len__(self) -> int:
        return len(self.rows)

    def case_ref(self, i: int) -> tuple[int, str]:
        """Case ``i``'s 1-based source row and stable id, without reading its image (so a failure
        row can name the row and the pseudonym)."""
        r = self.rows[i]
        return r[0], r[2]

    def __getitem__(self, i: int) -> Sample:
        row, path, exam_id, grade = self.rows[i]
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
            exam_id=exam_id,
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
