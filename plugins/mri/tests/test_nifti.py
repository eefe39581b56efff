"""NIfTI cohort loading and its errors, each naming the file; paths kept inside the data root; exam ids."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from c3_core.datapaths import CohortPathError
from c3_mri.data.nifti import NiftiCohort, NiftiCohortError


def _save(path: Path, data: np.ndarray, zooms=(1.0, 1.2, 3.0)) -> None:  # noqa: ANN001
    img = nib.Nifti1Image(data.astype(np.float32), np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms[: data.ndim] if data.ndim <= 3 else (*zooms, 1.0))
    nib.save(img, str(path))


def test_csv_cohort_with_held_out_site(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / f"s{i}.nii.gz", np.random.default_rng(i).random((8, 9, 4)))
        _save(tmp_path / f"s{i}_mask.nii.gz", (np.random.default_rng(i).random((8, 9, 4)) > 0.9).astype(np.float32))
    (tmp_path / "c.csv").write_text("image,mask,site\ns0.nii.gz,s0_mask.nii.gz,A\ns1.nii.gz,s1_mask.nii.gz,A\ns2.nii.gz,s2_mask.nii.gz,B\n")
    test = NiftiCohort(tmp_path / "c.csv", split="test", held_out_site="B")
    assert len(test) == 1 and len(NiftiCohort(tmp_path / "c.csv", split="train", held_out_site="B")) == 2
    s = test[0]
    assert s.spacing == pytest.approx((1.0, 1.2, 3.0)) and s.image.shape == (1, 8, 9, 4) and s.mask.shape == (1, 8, 9, 4)
    assert s.exam_id == "s2.nii.gz"


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        (np.full((4, 4, 4), np.nan), None, "NaN or Inf voxels"),
        (np.zeros((4, 4, 4, 3)), None, "must be 3-D"),
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), "mask shape"),
    ],
)
def test_bad_volumes_name_the_file(tmp_path: Path, image: np.ndarray, mask: np.ndarray | None, message: str) -> None:
    _save(tmp_path / "bad.nii.gz", image)
    row = "image,mask,site\nbad.nii.gz,,A\n"
    if mask is not None:
        _save(tmp_path / "bad_mask.nii.gz", mask)
        row = "image,mask,site\nbad.nii.gz,bad_mask.nii.gz,A\n"
    (tmp_path / "c.csv").write_text(row)
    with pytest.raises(NiftiCohortError, match=message) as err:
        NiftiCohort(tmp_path / "c.csv")[0]
    assert "bad" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("image,mask,site\nnope.nii.gz,,A\n")
    with pytest.raises(NiftiCohortError, match="c.csv: row 2, column 'image': image file 'nope.nii.gz' not found"):
        NiftiCohort(tmp_path / "c.csv")
    _save(tmp_path / "s.nii.gz", np.zeros((4, 4, 4)))
    (tmp_path / "c.csv").write_text("image,mask,site\ns.nii.gz,,A\ns.nii.gz,s_mask.nii.gz,A\n")
    with pytest.raises(NiftiCohortError, match="c.csv: row 3, column 'mask': mask file 's_mask.nii.gz' not found"):
        NiftiCohort(tmp_path / "c.csv")


def test_missing_spacing_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[84:88] = np.float32(0.0).tobytes()  # NIfTI-1 pixdim[2] (offset 76 + 2*4): no voxel size along y
    path.write_bytes(bytes(raw))
    (tmp_path / "c.csv").write_text("image,mask,site\nflat.nii,,A\n")
    with pytest.raises(NiftiCohortError, match=r"flat.nii: image header has no valid voxel spacing"):
        NiftiCohort(tmp_path / "c.csv")[0]


class _OpenAudit:
    """Records the paths handed to ``open`` while ``recording`` (an audit hook cannot be removed,
    so it is installed once and gated by the flag)."""

    def __init__(self) -> None:
        self.installed, self.recording, self.paths = False, False, []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.recording and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            self.paths.append(Path(os.fsdecode(args[0])).resolve())


_AUDIT = _OpenAudit()


@contextmanager
def _opened_files() -> Iterator[list[Path]]:
    if not _AUDIT.installed:
        sys.addaudithook(_AUDIT)
        _AUDIT.installed = True
    _AUDIT.paths, _AUDIT.recording = [], True
    try:
        yield _AUDIT.paths
    finally:
        _AUDIT.recording = False


def _bids(root: Path, subjects: int = 3, masks: bool = True) -> None:
    """``sub-0N/anat/FLAIR.nii.gz`` (+ ``FLAIR_mask.nii.gz``) for each subject under ``root``."""
    for i in range(1, subjects + 1):
        anat = root / f"sub-{i:02d}" / "anat"
        anat.mkdir(parents=True)
        _save(anat / "FLAIR.nii.gz", np.random.default_rng(i).random((6, 5, 4)))
        if masks:
            _save(anat / "FLAIR_mask.nii.gz", (np.random.default_rng(i).random((6, 5, 4)) > 0.8).astype(np.float32))


def test_bids_csv_gives_one_distinct_id_per_subject(tmp_path: Path) -> None:
    _bids(tmp_path)
    lines = "".join(f"sub-{i:02d}/anat/FLAIR.nii.gz,sub-{i:02d}/anat/FLAIR_mask.nii.gz,A\n" for i in (1, 2, 3))
    (tmp_path / "c.csv").write_text("image,mask,site\n" + lines)
    ids = [s.exam_id for s in NiftiCohort(tmp_path / "c.csv")]
    assert ids == ["sub-01/anat/FLAIR.nii.gz", "sub-02/anat/FLAIR.nii.gz", "sub-03/anat/FLAIR.nii.gz"]


def test_folder_scan_recurses_pairs_masks_and_tissue(tmp_path: Path) -> None:
    _bids(tmp_path, subjects=2)
    (tmp_path / "sub-02" / "anat" / "FLAIR_mask.nii.gz").unlink()
    _save(tmp_path / "sub-01" / "anat" / "FLAIR_tissue.nii.gz", np.random.default_rng(9).random((6, 5, 4, 4)))
    _save(tmp_path / "top.nii", np.zeros((6, 5, 4)))
    _save(tmp_path / "top_mask.nii", np.ones((6, 5, 4)))
    (tmp_path / ".git" / "annex").mkdir(parents=True)
    _save(tmp_path / ".git" / "annex" / "junk.nii.gz", np.zeros((6, 5, 4)))  # hidden folders are not scanned
    ds = NiftiCohort(tmp_path)
    samples = {s.exam_id: s for s in ds}
    assert list(samples) == ["sub-01/anat/FLAIR.nii.gz", "sub-02/anat/FLAIR.nii.gz", "top.nii"]
    assert samples["sub-01/anat/FLAIR.nii.gz"].mask is not None and samples["sub-02/anat/FLAIR.nii.gz"].mask is None
    assert samples["sub-01/anat/FLAIR.nii.gz"].extras["tissue"].shape == (4, 6, 5, 4)
    assert "tissue" not in samples["sub-02/anat/FLAIR.nii.gz"].extras
    assert float(samples["top.nii"].mask.sum()) == 6 * 5 * 4
    with pytest.raises(NiftiCohortError, match="apply to a CSV, not to a folder"):
        NiftiCohort(tmp_path, id_column="x")


@pytest.mark.parametrize("link", ["sub-02/anat/FLAIR.nii.gz", "sub-01/anat/FLAIR_mask.nii.gz"])
def test_folder_scan_refuses_symlinks_leading_out(tmp_path: Path, link: str) -> None:
    root = tmp_path / "data"
    _bids(root, subjects=1, masks=False)
    _save(tmp_path / "outside.nii.gz", np.zeros((6, 5, 4)))
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / "outside.nii.gz", root / link)
    with pytest.raises(CohortPathError, match=f"{root}: '{link}' resolves outside the data root"):
        NiftiCohort(root)


@pytest.mark.parametrize("column", ["image", "mask", "tissue"])
@pytest.mark.parametrize("kind", ["relative", "absolute", "symlink"])
def test_csv_paths_leaving_the_root_are_refused(tmp_path: Path, column: str, kind: str) -> None:
    root = tmp_path / "data"
    _bids(root, subjects=1)
    _save(tmp_path / "outside.nii.gz", np.zeros((6, 5, 4)))
    os.symlink(tmp_path / "outside.nii.gz", root / "link.nii.gz")
    bad = {"relative": "../outside.nii.gz", "absolute": str(tmp_path / "outside.nii.gz"), "symlink": "link.nii.gz"}[kind]
    good = {"image": "sub-01/anat/FLAIR.nii.gz", "mask": "sub-01/anat/FLAIR_mask.nii.gz", "site": "A", "tissue": ""}
    second = {**good, column: bad}
    header = "image,mask,site,tissue"
    (root / "c.csv").write_text("\n".join([header, ",".join(good.values()), ",".join(second.values())]) + "\n")
    with pytest.raises(CohortPathError) as err:
        NiftiCohort(root / "c.csv")
    assert str(err.value).startswith(f"{root / 'c.csv'}: row 3, column {column!r}: {bad!r} resolves outside the data root")


def test_symlinks_into_a_store_inside_the_root_are_read_by_their_names(tmp_path: Path) -> None:
    _bids(tmp_path, subjects=1, masks=False)
    store = tmp_path / ".store"  # e.g. a DataLad / DVC object store: no file extensions
    store.mkdir()
    (tmp_path / "sub-01" / "anat" / "FLAIR.nii.gz").rename(store / "3f9a")
    os.symlink(store / "3f9a", tmp_path / "sub-01" / "anat" / "FLAIR.nii.gz")
    (tmp_path / "c.csv").write_text("image,mask,site\nsub-01/anat/FLAIR.nii.gz,,A\n")
    for source in (tmp_path / "c.csv", tmp_path):
        s = NiftiCohort(source)[0]
        assert s.exam_id == "sub-01/anat/FLAIR.nii.gz" and s.image.shape == (1, 6, 5, 4)


def test_id_column_and_id_collisions(tmp_path: Path) -> None:
    _bids(tmp_path)
    rows = "".join(f"sub-{i:02d}/anat/FLAIR.nii.gz,,A,{pid}\n" for i, pid in ((1, "p1"), (2, "p2"), (3, "p1")))
    (tmp_path / "c.csv").write_text("image,mask,site,patient\n" + rows)
    with pytest.raises(CohortPathError, match="c.csv: ids collide: 'p1' rows 2, 4"):
        NiftiCohort(tmp_path / "c.csv", id_column="patient")
    assert [s.exam_id for s in NiftiCohort(tmp_path / "c.csv")] == [f"sub-0{i}/anat/FLAIR.nii.gz" for i in (1, 2, 3)]
    (tmp_path / "c.csv").write_text("image,mask,site\nsub-01/anat/FLAIR.nii.gz,,A\nsub-02/anat/FLAIR.nii.gz,,B\nsub-01/anat/FLAIR.nii.gz,,B\n")
    with pytest.raises(CohortPathError, match="ids collide: 'sub-01/anat/FLAIR.nii.gz' rows 2, 4"):
        NiftiCohort(tmp_path / "c.csv", split="test")  # refused whatever the split keeps
    with pytest.raises(NiftiCohortError, match="id_column 'patient' is not a column"):
        NiftiCohort(tmp_path / "c.csv", id_column="patient")


def test_image_root_is_honoured(tmp_path: Path) -> None:
    _bids(tmp_path / "bids", subjects=2)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "c.csv").write_text("image,mask,site\nsub-02/anat/FLAIR.nii.gz,sub-02/anat/FLAIR_mask.nii.gz,A\n")
    with pytest.raises(NiftiCohortError, match="row 2, column 'image': image file .* not found"):
        NiftiCohort(tmp_path / "meta" / "c.csv")
    s = NiftiCohort(tmp_path / "meta" / "c.csv", image_root=tmp_path / "bids")[0]
    assert s.exam_id == "sub-02/anat/FLAIR.nii.gz" and s.mask is not None


def test_nothing_outside_the_root_is_opened(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _bids(root, subjects=2)
    _save(tmp_path / "outside.nii.gz", np.zeros((6, 5, 4)))
    good = "image,mask,site\nsub-01/anat/FLAIR.nii.gz,sub-01/anat/FLAIR_mask.nii.gz,A\nsub-02/anat/FLAIR.nii.gz,,B\n"
    (root / "c.csv").write_text(good)
    list(NiftiCohort(root / "c.csv"))  # warm up: imports open library files
    for source in (root / "c.csv", root):
        with _opened_files() as opened:
            ids = [s.exam_id for s in NiftiCohort(source)]
        assert ids == ["sub-01/anat/FLAIR.nii.gz", "sub-02/anat/FLAIR.nii.gz"]
        assert opened and all(root.resolve() in p.parents for p in opened), opened
        assert (root / "sub-02" / "anat" / "FLAIR.nii.gz").resolve() in opened  # the audit does see volume reads
    (root / "c.csv").write_text(good + "sub-01/anat/FLAIR.nii.gz,../outside.nii.gz,A\n")
    with _opened_files() as opened, pytest.raises(CohortPathError, match="row 4, column 'mask'"):
        NiftiCohort(root / "c.csv")
    assert opened == [(root / "c.csv").resolve()]  # a bad row is an error before any volume is read
