"""CheXpert CSV conventions, DICOM handling, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from c3_cxr.data.chexpert import ChestCohortError, ChexpertCSV, read_dicom

HEADER = "Path,Frontal/Lateral,Atelectasis,Cardiomegaly,Consolidation,Edema,Pleural Effusion\n"


def _dicom(path: Path, photometric: str, patient: str = "DOE^JANE") -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.PatientName, ds.PatientID = patient, "MRN123456"
    ds.Rows, ds.Columns = 8, 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.RescaleSlope, ds.RescaleIntercept = 2, -10
    arr = np.tile(np.arange(8, dtype=np.uint16) * 100, (8, 1))
    ds.PixelData = arr.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    _dicom(tmp_path / "m2.dcm", "MONOCHROME2")
    _dicom(tmp_path / "m1.dcm", "MONOCHROME1")
    m2, m1 = read_dicom(tmp_path / "m2.dcm"), read_dicom(tmp_path / "m1.dcm")
    assert m2[0, 0] == 0.0 and m2[0, -1] == 1.0
    assert np.allclose(m1, 1.0 - m2)


def test_csv_policies_views_and_pseudonyms(tmp_path: Path) -> None:
    _dicom(tmp_path / "a.dcm", "MONOCHROME2")
    Image.fromarray((np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "c.csv").write_text(HEADER + "a.dcm,Frontal,1,-1,,0,1\nb.png,Lateral,0,0,0,0,0\n")
    ds = ChexpertCSV(tmp_path / "c.csv", uncertain="ignore", size=8)
    assert len(ds) == 1  # the lateral view is filtered out
    s = ds[0]
    assert s.label[0] == 1 and math.isnan(float(s.label[1])) and s.label[2] == 0
    assert "DOE" not in s.exam_id and "MRN" not in s.exam_id
    assert ChexpertCSV(tmp_path / "c.csv", uncertain="ones")[0].label[1] == 1
    assert len(ChexpertCSV(tmp_path / "c.csv", frontal_only=False)) == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.dcm,Frontal,2,0,0,0,0\n", "row 2, column 'Atelectasis': label '2'"),
        ("missing.png,Frontal,0,0,0,0,0\n", "row 2: image file 'missing.png' not found"),
    ],
)
def test_bad_rows(tmp_path: Path, row: str, message: str) -> None:
    _dicom(tmp_path / "a.dcm", "MONOCHROME2")
    (tmp_path / "c.csv").write_text(HEADER + row)
    with pytest.raises(ChestCohortError, match=message):
        ChexpertCSV(tmp_path / "c.csv")


def test_truncated_dicom_and_wrong_rank(tmp_path: Path) -> None:
    _dicom(tmp_path / "a.dcm", "MONOCHROME2")
    data = (tmp_path / "a.dcm").read_bytes()
    (tmp_path / "t.dcm").write_bytes(data[: len(data) // 2])
    (tmp_path / "x.dcm").write_bytes(b"not a dicom at all")
    for name in ("t.dcm", "x.dcm"):
        with pytest.raises(ChestCohortError, match=name):
            read_dicom(tmp_path / name)
    Image.fromarray((np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)).save(tmp_path / "rgb.png")
    (tmp_path / "c.csv").write_text(HEADER + "rgb.png,Frontal,0,0,0,0,0\n")
    with pytest.raises(ChestCohortError, match="rgb.png: expected a grey radiograph"):
        ChexpertCSV(tmp_path / "c.csv")[0]


def test_real_ct_dicom_from_pydicom_reads() -> None:
    from pydicom.data import get_testdata_file

    arr = read_dicom(Path(get_testdata_file("CT_small.dcm")))
    assert arr.shape == (128, 128) and 0.0 <= arr.min() and arr.max() <= 1.0
