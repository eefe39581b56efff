"""Cohort paths stay inside their data root; exam ids are the relative path and never collide."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from c3_core.datapaths import CohortPathError, refuse_duplicate_ids, resolve_inside, stable_id


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "1.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    return tmp_path / "data"


def test_relative_name_inside_is_resolved(root: Path) -> None:
    assert resolve_inside(root, "a/1.png", source="c.csv", row=2, column="Path") == (root / "a" / "1.png").resolve()
    assert resolve_inside(root, "a/../a/1.png", source="c.csv", row=2, column="Path") == (root / "a" / "1.png").resolve()


def test_missing_file_inside_is_not_an_error_here(root: Path) -> None:
    assert resolve_inside(root, "a/none.png", source="c.csv", row=2, column="Path").name == "none.png"


def test_relative_escape_names_file_row_and_column(root: Path) -> None:
    with pytest.raises(CohortPathError) as err:
        resolve_inside(root, "../secret.png", source="cohort.csv", row=7, column="Path")
    message = str(err.value)
    assert message.startswith("cohort.csv: row 7, column 'Path': '../secret.png' resolves outside the data root")
    assert str(root.resolve()) in message and "image_root=" in message


def test_absolute_inside_root_is_accepted(root: Path) -> None:
    inside = str((root / "a" / "1.png").absolute())
    assert resolve_inside(root, inside, source="c.csv", row=2, column="Path") == Path(inside).resolve()


def test_absolute_outside_root_is_refused(root: Path) -> None:
    with pytest.raises(CohortPathError, match=r"c\.csv: row 3, column 'image': '.*secret\.png' resolves outside"):
        resolve_inside(root, str(root.parent / "secret.png"), source="c.csv", row=3, column="image")
    with pytest.raises(CohortPathError, match="resolves outside"):
        resolve_inside(root, "/", source="c.csv", row=3, column="image")


def test_symlink_escape_is_refused(root: Path) -> None:
    os.symlink(root.parent / "secret.png", root / "link.png")
    os.symlink(root.parent, root / "up")
    for name in ("link.png", "up/secret.png"):
        with pytest.raises(CohortPathError, match=rf"row 4, column 'Path': '{re.escape(name)}' resolves outside"):
            resolve_inside(root, name, source="c.csv", row=4, column="Path")


def test_symlink_inside_is_allowed(root: Path) -> None:
    os.symlink(root / "a" / "1.png", root / "alias.png")
    os.symlink(root / "a", root / "b")
    assert resolve_inside(root, "alias.png", source="c.csv", row=2, column="Path") == (root / "a" / "1.png").resolve()
    assert resolve_inside(root, "b/1.png", source="c.csv", row=2, column="Path") == (root / "a" / "1.png").resolve()


def test_symlinked_root_is_followed(tmp_path: Path, root: Path) -> None:
    os.symlink(root, tmp_path / "mounted")
    assert resolve_inside(tmp_path / "mounted", "a/1.png", source="c.csv", row=2, column="Path") == (root / "a" / "1.png").resolve()


def test_folder_scan_errors_name_no_row(root: Path) -> None:
    os.symlink(root.parent / "secret.png", root / "link.png")
    with pytest.raises(CohortPathError) as err:
        resolve_inside(root, "link.png", source=root, row=None, column=None)
    assert str(err.value).startswith(f"{root}: 'link.png' resolves outside") and "row" not in str(err.value)


@pytest.mark.parametrize("name", ["", "   ", "a\x00b"])
def test_empty_or_nul_names_are_refused(root: Path, name: str) -> None:
    with pytest.raises(CohortPathError, match="row 2, column 'Path'"):
        resolve_inside(root, name, source="c.csv", row=2, column="Path")


def test_a_symlink_loop_cannot_hide_an_escape(root: Path) -> None:
    os.symlink(root / "loop", root / "loop")
    assert resolve_inside(root, "loop", source="c.csv", row=5, column="Path") == root.resolve() / "loop"  # unreadable later
    with pytest.raises(CohortPathError, match="row 5, column 'Path': 'loop/../../secret.png' (cannot be resolved|resolves outside)"):
        resolve_inside(root, "loop/../../secret.png", source="c.csv", row=5, column="Path")


def test_stable_id_is_relative_posix_and_mount_independent(tmp_path: Path, root: Path) -> None:
    assert stable_id(root, root / "a" / "1.png") == "a/1.png"
    assert stable_id(root, "a/./1.png") == "a/1.png"
    assert stable_id(root, (root / "sub-01" / "anat" / "FLAIR.nii.gz")) != stable_id(root, root / "sub-02" / "anat" / "FLAIR.nii.gz")
    os.symlink(root, tmp_path / "mounted")
    assert stable_id(tmp_path / "mounted", tmp_path / "mounted" / "a" / "1.png") == "a/1.png"
    assert stable_id(tmp_path / "mounted", (root / "a" / "1.png").resolve()) == "a/1.png"  # related via real paths


def test_stable_id_keeps_a_symlinks_own_name(root: Path) -> None:
    os.symlink(root / "a" / "1.png", root / "alias.png")
    assert stable_id(root, root / "alias.png") == "alias.png"


def test_stable_id_outside_root_is_an_error(root: Path) -> None:
    with pytest.raises(CohortPathError, match="not inside the data root"):
        stable_id(root, root.parent / "secret.png")
    with pytest.raises(CohortPathError, match="data root .* itself"):
        stable_id(root, root)


def test_duplicates_list_every_clash_and_all_rows() -> None:
    refuse_duplicate_ids([("a/1.png", 2), ("b/1.png", 3)], "c.csv")
    with pytest.raises(CohortPathError) as err:
        refuse_duplicate_ids([("a/1.png", 2), ("b", 3), ("c", 4), ("b", 5), ("a/1.png", 6), ("a/1.png", 9)], "cohort.csv")
    assert str(err.value).startswith("cohort.csv: ids collide: 'a/1.png' rows 2, 6, 9; 'b' rows 3, 5")
    assert "'c'" not in str(err.value)
