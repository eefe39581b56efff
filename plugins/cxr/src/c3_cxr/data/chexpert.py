"""CheXpert / MIMIC-CXR style cohorts: a CSV of image paths with the five findings.

Labels follow CheXpert: 1 positive, 0 negative, −1 uncertain, blank unmentioned. Uncertain labels
follow an explicit ``uncertain`` policy: ``"zeros"``, ``"ones"`` or ``"ignore"`` (NaN, masked in
metrics and losses); blanks are negative. ``frontal_only`` keeps rows whose ``Frontal/Lateral``
(or ``ViewPosition`` PA/AP) says frontal. Images: PNG/JPEG (8/16-bit, taken as display grey
levels) or DICOM (pydicom: rescale slope/intercept and the VOI LUT applied, MONOCHROME1
inverted). Images are mapped to log-attenuation through the reference window, resized to
``size``.

Paths are taken relative to ``image_root`` (default: the CSV's folder) and must resolve inside it
(:func:`c3_core.datapaths.resolve_inside`; an escaping row is a
:class:`~c3_core.datapaths.CohortPathError`). Exam ids are the image path relative to that root
(e.g. ``patient01/study1/view1_frontal.jpg``) or, with ``id_column``, that column's value; DICOM
patient fields never go into them, and the core replaces them with keyed pseudonyms before
anything is written.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.datapaths import refuse_duplicate_ids, resolve_inside, stable_id
from c3_cxr.data.phantom import FINDINGS

POLICIES = ("zeros", "ones", "ignore")


class ChestCohortError(ValueError):
    """A malformed cohort CSV or image; the message names the file and row."""


def read_dicom(path: Path) -> np.ndarray:
    """Display grey levels in [0, 1] (bright = attenuating) from a DICOM radiograph."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, OSError, EOFError) as exc:
        raise ChestCohortError(f"{path}: not a readable DICOM image ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 2:
        raise ChestCohortError(f"{path}: expected a single 2-D grey image, got shape {arr.shape}")
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds).astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    out = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    if getattr(ds, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        out = 1.0 - out  # MONOCHROME1: low values are displayed bright
    return out.astype(np.float32)


def read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise ChestCohortError(f"{path}: not a readable image ({exc})") from None
    if arr.ndim == 3:
        if arr.shape[2] in (3, 4) and np.allclose(arr[..., 0], arr[..., 1]):
            arr = arr[..., 0]
        else:
            raise ChestCohortError(f"{path}: expected a grey radiograph, got {arr.shape[2]} colour channels")
    if arr.ndim != 2:
        raise ChestCohortError(f"{path}: expected a 2-D image, got shape {arr.shape}")
    return (arr.astype(np.float32) / (65535.0 if arr.dtype == np.uint16 else 255.0)).astype(np.float32)


def parse_label(raw: str, policy: str, where: str) -> float:
    text = (raw or "").strip()
    if text == "":
        return 0.0
    try:
        v = float(text)
    except ValueError:
        raise ChestCohortError(f"{where}: label {raw!r} is not one of -1, 0, 1 or blank") from None
    if v not in (-1.0, 0.0, 1.0):
        raise ChestCohortError(f"{where}: label {raw!r} is not one of -1, 0, 1 or blank")
    if v == -1.0:
        return {"zeros": 0.0, "ones": 1.0, "ignore": math.nan}[policy]
    return v


class ChexpertCSV(Dataset):
    """Rows of a CheXpert / MIMIC-CXR CSV (see the module docstring for the conventions).

    Image paths (column ``Path``) are taken relative to ``image_root`` (default: the CSV's folder)
    and must resolve inside it; the whole CSV is checked when the dataset is made, before any
    image is read. ``id_column`` names a column holding each exam's id; without it the id is the
    image path relative to the root. Ids must be unique among the kept rows.
    """

    def __init__(
        self,
        csv_path: str | Path,
        uncertain: str = "ignore",
        frontal_only: bool = True,
        size: int = 128,
        image_root: str | Path | None = None,
        id_column: str | None = None,
    ) -> None:
        if uncertain not in POLICIES:
            raise ChestCohortError(f"uncertain policy must be one of {POLICIES}, got {uncertain!r}")
        self.path, self.size = Path(csv_path), size
        self.root = Path(image_root) if image_root else self.path.parent
        if image_root and not self.root.is_dir():
            raise ChestCohortError(f"{self.path}: image_root {str(self.root)!r} is not a folder")
        self.rows: list[tuple[int, Path, str, torch.Tensor]] = []
        try:
            with self.path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                cols = reader.fieldnames or []
                missing = [c for c in ("Path", *FINDINGS, *([id_column] if id_column else [])) if c not in cols]
                if missing:
                    raise ChestCohortError(f"{self.path}: missing column(s) {missing}")
                for n, row in enumerate(reader, start=2):
                    self._add_row(n, row, uncertain, frontal_only, id_column)
        except OSError as exc:
            raise ChestCohortError(f"{self.path}: cannot read ({exc.strerror})") from None
        if not self.rows:
            raise ChestCohortError(f"{self.path}: no usable rows")
        refuse_duplicate_ids(((exam_id, n) for n, _, exam_id, _ in self.rows), self.path)

    def _add_row(self, n: int, row: dict[str, str], uncertain: str, frontal_only: bool, id_column: str | None) -> None:
        """Check row ``n`` (every row's path must stay inside the root) and keep it if it is wanted."""
        name = (row.get("Path") or "").strip()
        if not name:
            raise ChestCohortError(f"{self.path}: row {n}, column 'Path': empty image path")
        resolve_inside(self.root, name, source=self.path, row=n, column="Path")
        image = self.root / name  # read as named (checked above), so the suffix says the format
        view = (row.get("Frontal/Lateral") or row.get("ViewPosition") or "Frontal").strip()
        if frontal_only and view not in ("Frontal", "PA", "AP"):
            return
        labels = torch.tensor([parse_label(row[f], uncertain, f"{self.path}: row {n}, column {f!r}") for f in FINDINGS])
        if not image.is_file():
            raise ChestCohortError(f"{self.path}: row {n}, column 'Path': image file {name!r} not found")
        if id_column:
            exam_id = (row.get(id_column) or "").strip()
            if not exam_id:
                raise ChestCohortError(f"{self.path}: row {n}, column {id_column!r}: empty exam id")
        else:
            exam_id = stable_id(self.root, name)
        self.rows.append((n, image, exam_id, labels))

    def __len__(self) -> int:
        return len(self.rows)

    def case_ref(self, i: int) -> tuple[int, str]:
        """Case ``i``'s 1-based source row and stable id, without reading its image (so a failure
        row can name the row and the pseudonym)."""
        r = self.rows[i]
        return r[0], r[2]

    def __getitem__(self, i: int) -> Sample:
        _, path, exam_id, labels = self.rows[i]
        grey = read_dicom(path) if path.suffix.lower() in (".dcm", ".dicom") else read_picture(path)
        t = torch.from_numpy(grey)[None, None]
        t = torch.nn.functional.interpolate(t, size=(self.size, self.size), mode="area")[0]
        mu = t * 4.0  # inverse of the reference display window (c3_cxr.domains.to_display)
        return Sample(mu, exam_id, "cxr", "log_attenuation", (1.0, 1.0), label=labels)


def make_chexpert_dataset(*, source: str | None = None, split: str = "test", **options: object) -> ChexpertCSV:
    """Dataset factory registered as ``cxr.chexpert_csv`` (``source`` = the CSV path)."""
    if source is None:
        raise ValueError("cxr.chexpert_csv needs source=PATH to a CSV")
    return ChexpertCSV(source, **options)  # type: ignore[arg-type]
