"""NIfTI cohorts: a CSV (columns image, mask, site[, tissue]) or a folder of ``*_mask.nii.gz`` pairs.

Volumes are read with nibabel; voxel spacing comes from the header (zooms) and the orientation
is kept as stored (canonical RAS reorientation is the user's choice upstream). Each problem is
reported with the file it concerns.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from c3_core.batch import Sample


class NiftiCohortError(ValueError):
    """A malformed cohort file or volume; the message names the file (and CSV row)."""


def pseudonym(value: str) -> str:
    return "mri-" + hashlib.blake2b(value.encode(), digest_size=6).hexdigest()


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


class NiftiCohort(Dataset):
    """Rows of (image, mask, site[, tissue]); ``split`` "test" keeps ``held_out_site`` only,
    "train" everything else, "all" every row."""

    def __init__(self, source: str | Path, split: str = "all", held_out_site: str | None = None) -> None:
        self.source = Path(source)
        rows = self._rows()
        if split not in ("all", "train", "test"):
            raise NiftiCohortError(f"unknown split {split!r} (all, train, test)")
        if split != "all" and held_out_site is None:
            sites = sorted({r[3] for r in rows})
            held_out_site = sites[-1]
        if split == "test":
            rows = [r for r in rows if r[3] == held_out_site]
        elif split == "train":
            rows = [r for r in rows if r[3] != held_out_site]
        self.rows = rows

    def _rows(self) -> list[tuple[int, Path, Path | None, str, Path | None]]:
        if self.source.is_dir():
            images = sorted(p for p in self.source.glob("*.nii*") if "_mask" not in p.name and "_tissue" not in p.name)
            out = []
            for i, img in enumerate(images):
                stem = img.name.split(".nii")[0]
                mask = img.with_name(f"{stem}_mask.nii.gz")
                out.append((i + 1, img, mask if mask.exists() else None, "site0", None))
            if not out:
                raise NiftiCohortError(f"{self.source}: no NIfTI images in folder")
            return out
        try:
            with self.source.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "image" not in reader.fieldnames:
                    raise NiftiCohortError(f"{self.source}: needs columns image, mask, site (found {reader.fieldnames})")
                out = []
                for n, row in enumerate(reader, start=2):
                    if not (row.get("image") or "").strip():
                        raise NiftiCohortError(f"{self.source}: row {n}: empty image path")
                    base = self.source.parent
                    mask = base / row["mask"] if (row.get("mask") or "").strip() else None
                    tissue = base / row["tissue"] if (row.get("tissue") or "").strip() else None
                    out.append((n, base / row["image"], mask, (row.get("site") or "site0").strip(), tissue))
        except OSError as exc:
            raise NiftiCohortError(f"{self.source}: cannot read ({exc.strerror})") from None
        if not out:
            raise NiftiCohortError(f"{self.source}: no rows")
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Sample:
        row, img_path, mask_path, site, tissue_path = self.rows[i]
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
        return Sample(torch.from_numpy(image)[None], pseudonym(f"{site}/{img_path.name}"), "mri", "magnitude", spacing, mask=mask, extras=extras)


def make_nifti_dataset(*, source: str | None = None, split: str = "all", **options: object) -> NiftiCohort:
    """Dataset factory registered as ``mri.nifti``."""
    if source is None:
        raise ValueError("mri.nifti needs source=PATH to a CSV or folder")
    return NiftiCohort(source, split=split, **options)  # type: ignore[arg-type]
