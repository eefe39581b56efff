"""NIfTI cohort loading and its errors, each naming the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

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
    assert "s2" not in s.exam_id


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
    with pytest.raises(NiftiCohortError, match="nope.nii.gz: image file not found"):
        NiftiCohort(tmp_path / "c.csv")[0]


def test_missing_spacing_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[84:88] = np.float32(0.0).tobytes()  # NIfTI-1 pixdim[2] (offset 76 + 2*4): no voxel size along y
    path.write_bytes(bytes(raw))
    (tmp_path / "c.csv").write_text("image,mask,site\nflat.nii,,A\n")
    with pytest.raises(NiftiCohortError, match=r"flat.nii: image header has no valid voxel spacing"):
        NiftiCohort(tmp_path / "c.csv")[0]
