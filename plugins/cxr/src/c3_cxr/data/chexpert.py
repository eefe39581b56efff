"""CheXpert / MIMIC-CXR style cohorts: a CSV of image paths with the five findings.

Labels follow CheXpert: 1 positive, 0 negative, −1 uncertain, blank unmentioned. Uncertain labels
follow an explicit ``uncertain`` policy: ``"zeros"``, ``"ones"`` or ``"ignore"`` (NaN, masked in
metrics and losses); blanks are negative. ``frontal_only`` keeps rows whose ``Frontal/Lateral``
(or ``ViewPosition`` PA/AP) says frontal. Images: PNG/JPEG (8/16-bit, taken as display grey
levels) or DICOM (pydicom: rescale slope/intercept and the VOI LUT applied, MONOCHROME1
inverted). Images are mapped to log-attenuation through the reference window, resized to
``size``. Patient names and ids never leave the loader: exam ids are keyed hashes of the path.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_cxr.data.phantom import FINDINGS

POLICIES = ("zeros", "ones", "ignore")


class ChestCohortError(ValueError):
    """A malformed cohort CSV or image; the message names the file and row."""


def pseudonym(value: str) -> str:
    return "cxr-" + hashlib.blake2b(value.encode(), digest_size=6).hexdigest()


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
    def __init__(self, csv_path: str | Path, uncertain: str = "ignore", frontal_only: bool = True, size: int = 128, image_root: str | Path | None = None) -> None:
        if uncertain not in POLICIES:
            raise ChestCohortError(f"uncertain policy must be one of {POLICIES}, got {uncertain!r}")
        self.path, self.size = Path(csv_path), size
        root = Path(image_root) if image_root else self.path.parent
        self.rows: list[tuple[int, Path, torch.Tensor]] = []
        try:
            with self.path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                cols = reader.fieldnames or []
                missing = [c for c in ("Path", *FINDINGS) if c not in cols]
                if missing:
                    raise ChestCohortError(f"{self.path}: missing column(s) {missing}")
                for n, row in enumerate(reader, start=2):
                    view = (row.get("Frontal/Lateral") or row.get("ViewPosition") or "Frontal").strip()
                    if frontal_only and view not in ("Frontal", "PA", "AP"):
                        continue
                    labels = torch.tensor([parse_label(row[f], uncertain, f"{self.path}: row {n}, column {f!r}") for f in FINDINGS])
                    image = root / row["Path"]
                    if not image.is_file():
                        raise ChestCohortError(f"{self.path}: row {n}: image file {row['Path']!r} not found")
                    self.rows.append((n, image, labels))
        except OSError as exc:
            raise ChestCohortError(f"{self.path}: cannot read ({exc.strerror})") from None
        if not self.rows:
            raise ChestCohortError(f"{self.path}: no usable rows")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Sample:
        row, path, labels = self.rows[i]
        grey = read_dicom(path) if path.suffix.lower() in (".dcm", ".dicom") else read_picture(path)
        t = torch.from_numpy(grey)[None, None]
        t = torch.nn.functional.interpolate(t, size=(self.size, self.size), mode="area")[0]
        mu = t * 4.0  # inverse of the reference display window (c3_cxr.domains.to_display)
        return Sample(mu, pseudonym(str(path)), "cxr", "log_attenuation", (1.0, 1.0), label=labels)


def make_chexpert_dataset(*, source: str | None = None, split: str = "test", **options: object) -> ChexpertCSV:
    """Dataset factory registered as ``cxr.chexpert_csv`` (``source`` = the CSV path)."""
    if source is None:
        raise ValueError("cxr.chexpert_csv needs source=PATH to a CSV")
    return ChexpertCSV(source, **options)  # type: ignore[arg-type]
