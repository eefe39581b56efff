"""NIfTI cohorts: a CSV (columns image, mask, site[, tissue]) or a folder of ``X.nii(.gz)`` images.

A CSV's paths are relative to ``image_root`` (default: the CSV's folder). A folder is scanned
recursively (hidden folders skipped, symlinked folders not entered); ``X_mask.nii(.gz)`` and
``X_tissue.nii(.gz)`` beside ``X.nii(.gz)`` are its mask and tissue map, and all its exams are
site ``site0``. Every path — image, mask and tissue — must resolve inside the root, symlinks
followed (else a :class:`~c3_core.datapaths.CohortPathError` naming the row and column), and is
checked when the cohort is made, before any volume is read.

Exam ids are the image path relative to the root (``sub-01/anat/FLAIR.nii.gz``) or, for a CSV
with ``id_column``, that column's value; ids must be unique. The core replaces them with keyed
pseudonyms before anything is written.

Volumes are read with nibabel; voxel spacing comes from the header (zooms) and the orientation
is kept as stored (canonical RAS reorientation is the user's choice upstream). Each problem is
reported with the file it concerns.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample
from c3_core.datapaths import refuse_duplicate_ids, resolve_inside, stable_id


class NiftiCohortError(ValueError):
    """A malformed cohort file or volume; the message names the file (and CSV row)."""


def _stored_zooms(img: object) -> tuple[float, ...]:
    """Voxel sizes (mm) as stored in the header. nibabel's checked load silently repairs a zero
    pixdim to 1 mm; a volume without a voxel size must be refused, not given 1 mm."""
    from nibabel.openers import ImageOpener

    file_map = img.file_map  # type: ignore[attr-defined]
    holder = file_map.get("header", file_map.get("image"))
    try:
        with ImageOpener(holder.filename) as fh:
            header = type(img.header).from_fileobj(fh, check=False)  # type: ignore[attr-defined]
        return tuple(float(z) for z in header.get_zooms()[:3])
    except Exception:  # noqa: BLE001 - a header we cannot re-read: fall back to nibabel's view
        return tuple(float(z) for z in img.header.get_zooms()[:3])  # type: ignore[attr-defined]


def read_volume(path: Path, what: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 3-D float32 array and its spacing (mm), or a :class:`NiftiCohortError` naming ``path``."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise NiftiCohortError(f"{path}: {what} file not found") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure
        raise NiftiCohortError(f"{path}: not a readable NIfTI {what} ({exc})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise NiftiCohortError(f"{path}: {what} must be 3-D, got shape {data.shape}")
    zooms = _stored_zooms(img)
    if len(zooms) != 3 or not all(np.isfinite(z) and z > 0 for z in zooms):
        raise NiftiCohortError(f"{path}: {what} header has no valid voxel spacing ({zooms})")
    if not np.isfinite(data).all():
        raise NiftiCohortError(f"{path}: {what} has {int((~np.isfinite(data)).sum())} NaN or Inf voxels")
    return data, zooms  # type: ignore[return-value]


class CohortRow(NamedTuple):
    """One exam of a cohort: where it came from (1-based CSV row, or rank in a folder scan), its
    files (as named, each checked to resolve inside the root), its site and its exam id."""

    row: int
    image: Path
    mask: Path | None
    site: str
    tissue: Path | None
    exam_id: str


def _stem(name: str) -> str:
    """``X`` of ``X.nii`` / ``X.nii.gz``."""
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]


def _is_volume(name: str) -> bool:
    return name.endswith((".nii", ".nii.gz"))


class NiftiCohort(Dataset):
    """Rows of (image, mask, site[, tissue]); ``split`` "test" keeps ``held_out_site`` only,
    "train" everything else, "all" every row.

    ``source`` is a CSV (paths relative to ``image_root``, default the CSV's folder; ``id_column``
    optionally names a column of exam ids) or a folder, scanned recursively. Every path must
    resolve inside the root; the whole cohort is checked here, before any volume is read.
    """

    def __init__(
        self,
        source: str | Path,
        split: str = "all",
        held_out_site: str | None = None,
        image_root: str | Path | None = None,
        id_column: str | None = None,
    ) -> None:
        self.source = Path(source)
        if split not in ("all", "train", "test"):
            raise NiftiCohortError(f"unknown split {split!r} (all, train, test)")
        is_folder = self.source.is_dir()
        if is_folder and (image_root or id_column):
            raise NiftiCohortError(f"{self.source}: image_root and id_column apply to a CSV, not to a folder")
        self.root = self.source if is_folder else (Path(image_root) if image_root else self.source.parent)
        if image_root and not self.root.is_dir():
            raise NiftiCohortError(f"{self.source}: image_root {str(self.root)!r} is not a folder")
        rows = self._scan() if is_folder else self._read_csv(id_column)
        refuse_duplicate_ids(((r.exam_id, r.row) for r in rows), self.source)
        if split != "all" and held_out_site is None:
            held_out_site = sorted({r.site for r in rows})[-1]
        if split == "test":
            rows = [r for r in rows if r.site == held_out_site]
        elif split == "train":
            rows = [r for r in rows if r.site != held_out_site]
        self.rows = rows

    def _scan(self) -> list[CohortRow]:
        """Every ``X.nii(.gz)`` under the folder (hidden folders skipped), sorted by relative path,
        with ``X_mask.nii(.gz)`` and ``X_tissue.nii(.gz)`` from the same folder when present."""
        names = sorted(
            rel
            for rel in (p.relative_to(self.source).as_posix() for p in self.source.rglob("*.nii*"))
            if _is_volume(rel) and not any(part.startswith(".") for part in rel.split("/"))
        )
        present = set(names)
        out = []
        for rel in names:
            folder, _, file_name = rel.rpartition("/")
            if _stem(file_name).endswith(("_mask", "_tissue")):
                continue
            resolve_inside(self.root, rel, source=self.source)
            partners: list[Path | None] = []
            for kind in ("_mask", "_tissue"):
                stem = (folder + "/" if folder else "") + _stem(file_name) + kind
                partner = next((stem + ext for ext in (".nii.gz", ".nii") if stem + ext in present), None)
                if partner:
                    resolve_inside(self.root, partner, source=self.source)
                partners.append(self.root / partner if partner else None)
            out.append(CohortRow(len(out) + 1, self.root / rel, partners[0], "site0", partners[1], stable_id(self.root, rel)))
        if not out:
            raise NiftiCohortError(f"{self.source}: no NIfTI images in folder")
        return out

    def _read_csv(self, id_column: str | None) -> list[CohortRow]:
        out = []
        try:
            with self.source.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                cols = reader.fieldnames or []
                if "image" not in cols:
                    raise NiftiCohortError(f"{self.source}: needs columns image, mask, site (found {reader.fieldnames})")
                if id_column and id_column not in cols:
                    raise NiftiCohortError(f"{self.source}: id_column {id_column!r} is not a column (found {cols})")
                for n, row in enumerate(reader, start=2):
                    out.append(self._csv_row(n, row, id_column))
        except OSError as exc:
            raise NiftiCohortError(f"{self.source}: cannot read ({exc.strerror})") from None
        if not out:
            raise NiftiCohortError(f"{self.source}: no rows")
        return out

    def _csv_row(self, n: int, row: dict[str, str], id_column: str | None) -> CohortRow:
        """Row ``n`` with its image, mask and tissue paths checked (inside the root, files present)."""
        paths: dict[str, Path | None] = {}
        for column in ("image", "mask", "tissue"):
            name = (row.get(column) or "").strip()
            if not name:
                if column == "image":
                    raise NiftiCohortError(f"{self.source}: row {n}, column 'image': empty image path")
                paths[column] = None
                continue
            if not resolve_inside(self.root, name, source=self.source, row=n, column=column).is_file():
                raise NiftiCohortError(f"{self.source}: row {n}, column {column!r}: {column} file {name!r} not found")
            paths[column] = self.root / name  # read as named: nibabel tells the format by the name
        if id_column:
            exam_id = (row.get(id_column) or "").strip()
            if not exam_id:
                raise NiftiCohortError(f"{self.source}: row {n}, column {id_column!r}: empty exam id")
        else:
            exam_id = stable_id(self.root, row["image"].strip())
        site = (row.get("site") or "site0").strip()
        return CohortRow(n, paths["image"], paths["mask"], site, paths["tissue"], exam_id)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.rows)

    def case_ref(self, i: int) -> tuple[int, str]:
        """Case ``i``'s 1-based source row and stable id, without reading its image (so a failure
        row can name the row and the pseudonym)."""
        r = self.rows[i]
        return r.row, r.exam_id

    def __getitem__(self, i: int) -> Sample:
        row, img_path, mask_path, _, tissue_path, exam_id = self.rows[i]
        image, spacing = read_volume(img_path, "image")
        mask = None
        if mask_path is not None:
            m, _ = read_volume(mask_path, "mask")
            if m.shape != image.shape:
                raise NiftiCohortError(f"{mask_path}: mask shape {m.shape} differs from image {img_path.name} {image.shape} (row {row})")
            mask = torch.from_numpy((m > 0.5).astype(np.float32))[None]
        extras = {}
        if tissue_path is not None:
            import nibabel as nib

            t = np.asarray(nib.load(str(tissue_path)).dataobj, dtype=np.float32)
            if t.shape[:3] != image.shape or t.ndim != 4:
                raise NiftiCohortError(f"{tissue_path}: tissue map must be (X, Y, Z, 4) matching the image")
            extras["tissue"] = torch.from_numpy(np.moveaxis(t, -1, 0).copy())
        return Sample(torch.from_numpy(image)[None], exam_id, "mri", "magnitude", spacing, mask=mask, extras=extras)


def make_nifti_dataset(*, source: str | None = None, split: str = "all", **options: object) -> NiftiCohort:
    """Dataset factory registered as ``mri.nifti``."""
    if source is None:
        raise ValueError("mri.nifti needs source=PATH to a CSV or folder")
    return NiftiCohort(source, split=split, **options)  # type: ignore[arg-type]
