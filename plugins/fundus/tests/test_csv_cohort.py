"""EyePACS-style CSV loading and its errors; paths kept inside the data root; exam ids."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from c3_core.datapaths import CohortPathError
from c3_fundus.data.csv_cohort import FundusCohortError, FundusCSV


def _write(tmp: Path, name: str, mode: str = "RGB") -> None:
    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
    arr = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(arr)
    (im if mode == "RGB" else im.convert("L")).save(tmp / name)


def test_reads_eyepacs_csv(tmp_path: Path) -> None:
    _write(tmp_path, "10_left.jpeg")
    (tmp_path / "labels.csv").write_text("image,level\n10_left,3\n")
    s = FundusCSV(tmp_path / "labels.csv", size=32)[0]
    assert s.image.shape == (3, 32, 32) and int(s.label) == 3
    assert s.exam_id == "10_left.jpeg"  # the path relative to the root, with the extension found


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("image,level\na,7\n", "row 2, column 'level': grade '7' is outside 0-4"),
        ("image,level\nmissing,1\n", "row 2, column 'image': image file 'missing' not found"),
        ("image,level\n ,1\n", "row 2, column 'image': empty image name"),
        ("name,level\na,1\n", "needs an image column"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path: Path, rows: str, message: str) -> None:
    _write(tmp_path, "a.png")
    (tmp_path / "c.csv").write_text(rows)
    with pytest.raises(FundusCohortError, match=message):
        FundusCSV(tmp_path / "c.csv")


def test_grayscale_and_corrupt_images(tmp_path: Path) -> None:
    _write(tmp_path, "g.png", mode="L")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "c.csv").write_text("image,level\ng.png,0\nbad.jpg,1\n")
    ds = FundusCSV(tmp_path / "c.csv")
    with pytest.raises(FundusCohortError, match="g.png .*expected an RGB"):
        ds[0]
    with pytest.raises(FundusCohortError, match="bad.jpg .*not a readable image"):
        ds[1]


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


def test_same_file_name_in_two_folders_gives_two_ids(tmp_path: Path) -> None:
    _write(tmp_path, "a/1.png")
    _write(tmp_path, "b/1.png")
    (tmp_path / "c.csv").write_text("image,level\na/1.png,0\nb/1,2\n")
    assert [s.exam_id for s in FundusCSV(tmp_path / "c.csv", size=16)] == ["a/1.png", "b/1.png"]


@pytest.mark.parametrize("kind", ["relative", "relative-no-extension", "absolute", "symlink", "symlink-by-extension", "ungraded"])
def test_rows_leaving_the_root_are_refused_naming_file_row_and_column(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "data"
    _write(root, "a.png")
    _write(tmp_path, "secret.png")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    name, grade = {
        "relative": ("../secret.png", "1"),
        "relative-no-extension": ("../secret", "1"),
        "absolute": (str(tmp_path / "secret.png"), "1"),
        "symlink": ("link.png", "1"),
        "symlink-by-extension": ("link", "1"),  # the extension fallback must stay inside too
        "ungraded": ("../secret.png", ""),  # a skipped row is still checked
    }[kind]
    (root / "c.csv").write_text(f"image,level\na.png,0\n{name},{grade}\n")
    with pytest.raises(CohortPathError) as err:
        FundusCSV(root / "c.csv", skip_ungraded=True)
    prefix = f"{root / 'c.csv'}: row 3, column 'image': "
    assert str(err.value).startswith(prefix) and "resolves outside the data root" in str(err.value)


def test_id_column_and_duplicate_ids_are_refused_listing_rows(tmp_path: Path) -> None:
    for name in ("1.png", "2.png", "3.png"):
        _write(tmp_path, name)
    (tmp_path / "c.csv").write_text("image,level,patient\n1.png,0,p7\n2.png,1,p8\n3.png,1,p7\n")
    with pytest.raises(CohortPathError, match="c.csv: ids collide: 'p7' rows 2, 4"):
        FundusCSV(tmp_path / "c.csv", id_column="patient")
    (tmp_path / "c.csv").write_text("image,level,patient\n1.png,0,p7\n2.png,1,p8\n")
    assert [s.exam_id for s in FundusCSV(tmp_path / "c.csv", id_column="patient", size=16)] == ["p7", "p8"]
    with pytest.raises(FundusCohortError, match="id_column 'eye' is not a column"):
        FundusCSV(tmp_path / "c.csv", id_column="eye")
    (tmp_path / "c.csv").write_text("image,level\n1.png,0\n1,1\n")  # the same image twice
    with pytest.raises(CohortPathError, match="ids collide: '1.png' rows 2, 3"):
        FundusCSV(tmp_path / "c.csv")


def test_image_root_is_honoured(tmp_path: Path) -> None:
    _write(tmp_path / "images", "x/10_left.jpeg")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "c.csv").write_text("image,level\nx/10_left,2\n")
    with pytest.raises(FundusCohortError, match="row 2, column 'image': image file 'x/10_left' not found"):
        FundusCSV(tmp_path / "meta" / "c.csv")
    assert FundusCSV(tmp_path / "meta" / "c.csv", image_root=tmp_path / "images", size=16)[0].exam_id == "x/10_left.jpeg"


def test_nothing_outside_the_root_is_opened(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("a/1.png", "b/1.jpeg"):
        _write(root, name)
    _write(tmp_path, "secret.png")
    good = "image,level\na/1.png,0\nb/1,3\n"
    (root / "c.csv").write_text(good)
    list(FundusCSV(root / "c.csv", size=16))  # warm up: imports and Pillow's plugins open library files
    with _opened_files() as opened:
        ids = [s.exam_id for s in FundusCSV(root / "c.csv", size=16)]
    assert ids == ["a/1.png", "b/1.jpeg"]
    assert opened and all(root.resolve() in p.parents for p in opened), opened
    assert (root / "b" / "1.jpeg").resolve() in opened  # the audit does see image reads
    (root / "c.csv").write_text(good + "../secret,1\n")
    with _opened_files() as opened, pytest.raises(CohortPathError, match="row 4, column 'image'"):
        FundusCSV(root / "c.csv")
    assert opened == [(root / "c.csv").resolve()]  # a bad row is an error before any image is read
