"""CheXpert CSV conventions, DICOM handling, bad input, paths kept inside the data root, exam ids."""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from c3_core.datapaths import CohortPathError
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
    assert s.exam_id == "a.dcm"  # the path relative to the root, never a DICOM patient field
    assert ChexpertCSV(tmp_path / "c.csv", uncertain="ones")[0].label[1] == 1
    assert len(ChexpertCSV(tmp_path / "c.csv", frontal_only=False)) == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.dcm,Frontal,2,0,0,0,0\n", "row 2, column 'Atelectasis': label '2'"),
        ("missing.png,Frontal,0,0,0,0,0\n", "row 2, column 'Path': image file 'missing.png' not found"),
        (",Frontal,0,0,0,0,0\n", "row 2, column 'Path': empty image path"),
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


def _png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((12, 12)) * 255).astype(np.uint8)).save(path)


def _cohort(tmp_path: Path) -> Path:
    """``tmp/data`` with two nested studies and a CSV; ``tmp/secret.png`` lies outside it."""
    root = tmp_path / "data"
    _png(root / "patient01" / "study1" / "view1_frontal.jpg")
    _png(root / "patient02" / "study1" / "view1_frontal.jpg", 1)
    _png(tmp_path / "secret.png", 2)
    return root


@pytest.mark.parametrize(
    ("name", "view"),
    [("../secret.png", "Frontal"), ("SECRET_ABS", "Frontal"), ("link.png", "Frontal"), ("../secret.png", "Lateral")],
)
def test_rows_leaving_the_root_are_refused_naming_file_row_and_column(tmp_path: Path, name: str, view: str) -> None:
    root = _cohort(tmp_path)
    os.symlink(tmp_path / "secret.png", root / "link.png")
    name = str(tmp_path / "secret.png") if name == "SECRET_ABS" else name
    (root / "c.csv").write_text(HEADER + f"patient01/study1/view1_frontal.jpg,Frontal,0,0,0,0,0\n{name},{view},0,0,0,0,0\n")
    with pytest.raises(CohortPathError) as err:
        ChexpertCSV(root / "c.csv")  # a filtered-out (lateral) row is checked too
    message = str(err.value)
    assert message.startswith(f"{root / 'c.csv'}: row 3, column 'Path': {name!r} resolves outside the data root")
    assert "image_root=" in message


def test_nested_paths_give_distinct_path_ids(tmp_path: Path) -> None:
    root = _cohort(tmp_path)
    rows = "patient01/study1/view1_frontal.jpg,Frontal,0,0,0,0,0\npatient02/study1/view1_frontal.jpg,Frontal,1,0,0,0,0\n"
    (root / "c.csv").write_text(HEADER + rows)
    ds = ChexpertCSV(root / "c.csv", size=8)
    assert [ds[i].exam_id for i in range(len(ds))] == ["patient01/study1/view1_frontal.jpg", "patient02/study1/view1_frontal.jpg"]


def test_absolute_path_inside_the_root_is_accepted(tmp_path: Path) -> None:
    root = _cohort(tmp_path)
    (root / "c.csv").write_text(HEADER + f"{root / 'patient01' / 'study1' / 'view1_frontal.jpg'},Frontal,0,0,0,0,0\n")
    assert ChexpertCSV(root / "c.csv", size=8)[0].exam_id == "patient01/study1/view1_frontal.jpg"


def test_symlink_inside_the_root_is_allowed(tmp_path: Path) -> None:
    root = _cohort(tmp_path)
    os.symlink(root / "patient01", root / "alias")
    (root / "c.csv").write_text(HEADER + "alias/study1/view1_frontal.jpg,Frontal,0,0,0,0,0\n")
    assert ChexpertCSV(root / "c.csv", size=8)[0].exam_id == "alias/study1/view1_frontal.jpg"


def test_image_root_is_honoured(tmp_path: Path) -> None:
    root = _cohort(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "c.csv").write_text(HEADER + "patient02/study1/view1_frontal.jpg,Frontal,0,0,0,0,0\n")
    with pytest.raises(ChestCohortError, match="row 2, column 'Path': image file .* not found"):
        ChexpertCSV(tmp_path / "meta" / "c.csv")  # the default root is the CSV's folder
    assert ChexpertCSV(tmp_path / "meta" / "c.csv", image_root=root, size=8)[0].exam_id == "patient02/study1/view1_frontal.jpg"
    (tmp_path / "meta" / "c.csv").write_text(HEADER + "../meta/c.csv,Frontal,0,0,0,0,0\n")
    with pytest.raises(CohortPathError, match="row 2, column 'Path': '../meta/c.csv' resolves outside"):
        ChexpertCSV(tmp_path / "meta" / "c.csv", image_root=root)
    with pytest.raises(ChestCohortError, match="image_root .* is not a folder"):
        ChexpertCSV(tmp_path / "meta" / "c.csv", image_root=tmp_path / "nowhere")


def test_id_column_gives_the_ids_and_duplicates_are_refused(tmp_path: Path) -> None:
    root = _cohort(tmp_path)
    head = HEADER.replace("Path,", "Path,study_id,")
    a, b = "patient01/study1/view1_frontal.jpg", "patient02/study1/view1_frontal.jpg"
    (root / "c.csv").write_text(head + f"{a},s1,Frontal,0,0,0,0,0\n{b},s2,Frontal,0,0,0,0,0\n")
    ds = ChexpertCSV(root / "c.csv", id_column="study_id", size=8)
    assert [ds[0].exam_id, ds[1].exam_id] == ["s1", "s2"]
    (root / "c.csv").write_text(head + f"{a},s1,Frontal,0,0,0,0,0\n{b},s2,Frontal,0,0,0,0,0\n{b},s1,Frontal,0,0,0,0,0\n{a},s2,Frontal,0,0,0,0,0\n")
    with pytest.raises(CohortPathError, match="c.csv: ids collide: 's1' rows 2, 4; 's2' rows 3, 5"):
        ChexpertCSV(root / "c.csv", id_column="study_id")
    (root / "c.csv").write_text(head + f"{a}, ,Frontal,0,0,0,0,0\n")
    with pytest.raises(ChestCohortError, match="row 2, column 'study_id': empty exam id"):
        ChexpertCSV(root / "c.csv", id_column="study_id")
    with pytest.raises(ChestCohortError, match=r"missing column\(s\) \['dicom_id'\]"):
        ChexpertCSV(root / "c.csv", id_column="dicom_id")


def test_the_same_image_twice_is_refused(tmp_path: Path) -> None:
    root = _cohort(tmp_path)
    a = "patient01/study1/view1_frontal.jpg"
    (root / "c.csv").write_text(HEADER + f"{a},Frontal,0,0,0,0,0\n./{a},Frontal,0,0,0,0,0\n")
    with pytest.raises(CohortPathError, match=f"ids collide: '{a}' rows 2, 3"):
        ChexpertCSV(root / "c.csv")


def test_nothing_outside_the_root_is_opened(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    root = _cohort(tmp_path)
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "patient02" / "study1" / "ct.dcm")
    good = "patient01/study1/view1_frontal.jpg,Frontal,0,0,0,0,0\npatient02/study1/ct.dcm,Frontal,1,0,0,0,0\n"
    (root / "c.csv").write_text(HEADER + good)
    list(ChexpertCSV(root / "c.csv", size=8))  # warm up: imports and lazy plugin loading open library files
    with _opened_files() as opened:
        ds = ChexpertCSV(root / "c.csv", size=8)
        ids = [s.exam_id for s in ds]
    assert ids == ["patient01/study1/view1_frontal.jpg", "patient02/study1/ct.dcm"]
    real_root = root.resolve()
    assert opened and all(real_root in p.parents for p in opened), opened
    assert (real_root / "patient02" / "study1" / "ct.dcm") in opened  # the audit does see image reads

    os.symlink(tmp_path / "secret.png", root / "link.png")
    (root / "c.csv").write_text(HEADER + good + "link.png,Frontal,0,0,0,0,0\n")
    with _opened_files() as opened, pytest.raises(CohortPathError, match="row 4, column 'Path': 'link.png'"):
        ChexpertCSV(root / "c.csv")
    assert opened == [(root / "c.csv").resolve()]  # a bad row is an error before any image is read
