"""Real cohorts, safe outputs: what a hospital user hits first, through the real `c3` command.

Nothing is read outside the data root; one exam, one id, written only as a keyed pseudonym whose
key stays outside the results; output folders are never clobbered or half-written; two runs never
write one folder at once.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import C3, run_c3
from PIL import Image
from typer.testing import CliRunner

from c3_core.cli import app

FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def _png(path: Path, seed: int, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    if rgb:
        yy, xx = np.mgrid[:64, :64]
        disc = ((yy - 32) ** 2 + (xx - 32) ** 2 < 28**2).astype(np.float64)
        arr = np.stack([disc * (150 + 40 * g.random()), disc * 70, disc * 30], -1) + g.normal(0, 3, (64, 64, 3))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(path)
    else:
        Image.fromarray(np.clip(g.normal(120, 30, (64, 64)), 0, 255).astype(np.uint8), "L").save(path)


def _chexpert(root: Path, paths: list[str]) -> Path:
    csv_path = root / "cohort.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Path", "Frontal/Lateral", *FINDINGS])
        for i, p in enumerate(paths):
            w.writerow([p, "Frontal", *[(i + j) % 2 for j in range(5)]])
    return csv_path


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("escape", ["../outside.png", "ABS"])
def test_a_row_outside_the_data_root_is_refused_before_anything_is_opened(tmp_path: Path, escape: str) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    for i in range(2):
        _png(data / f"p{i}.png", i)
    _png(tmp_path / "outside.png", 9)
    _png(elsewhere / "secret.png", 8)
    row = str(elsewhere / "secret.png") if escape == "ABS" else escape
    csv_path = _chexpert(data, ["p0.png", row, "p1.png"])
    opened: list[str] = []
    watching = [True]

    def audit(event: str, args: tuple) -> None:  # an audit hook cannot be removed: gate it
        if watching[0] and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(audit)
    out = tmp_path / "out"
    try:
        code, output = _invoke("evaluate", "-m", "cxr", "--data", str(csv_path), "--model", "cxr.demo_cnn", "--out", str(out), "-q")
    finally:
        watching[0] = False
    assert code == 2, output
    assert "cohort.csv" in output and "row 3" in output and "Path" in output, output
    assert not out.exists()
    outside = [p for p in opened if Path(p).name in ("outside.png", "secret.png")]
    assert not outside, outside


def test_data_option_image_root_reads_images_kept_elsewhere_and_unknown_keys_name_the_accepted(tmp_path: Path) -> None:
    images, tables = tmp_path / "images", tmp_path / "tables"
    tables.mkdir()
    for i in range(4):
        _png(images / "a" / f"{i}.png", i)
    csv_path = tables / "cohort.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Path", "Frontal/Lateral", *FINDINGS])
        for i in range(4):
            w.writerow([f"a/{i}.png", "Frontal", *[(i + j) % 2 for j in range(5)]])
    code, output = _invoke("evaluate", "-m", "cxr", "--data", str(csv_path), "--model", "cxr.demo_cnn", "--k", "1",
                           "--data-option", "colour=red", "--out", str(tmp_path / "bad"), "-q")
    assert code == 2 and "colour" in output and "image_root" in output, output
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    code, output = _invoke("evaluate", "-m", "cxr", "--data", str(csv_path), "--model", "cxr.demo_cnn", "--k", "1",
                           "--data-option", f"image_root={images}", "--out", str(out), "-q")
    assert code == 0, output
    run = json.loads((out / "run.json").read_text())
    assert run["request"]["data_options"] == {"image_root": str(images)}
    assert len(list(csv.DictReader((out / "cxr" / "cases.csv").open()))) == 4


def test_bids_style_mri_subjects_get_three_ids_and_the_key_stays_outside(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    data = tmp_path / "bids"
    rows = []
    g = np.random.default_rng(0)
    for s in range(3):
        folder = data / f"sub-0{s + 1}" / "anat"
        folder.mkdir(parents=True)
        vol = g.normal(100, 10, (24, 24, 24)).astype(np.float32)
        mask = np.zeros((24, 24, 24), np.float32)
        mask[10:13, 10:13, 10:13] = 1
        nib.save(nib.Nifti1Image(vol, np.diag([1.5, 1.5, 1.5, 1])), folder / "FLAIR.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.diag([1.5, 1.5, 1.5, 1])), folder / "FLAIR_mask.nii.gz")
        rows.append([f"sub-0{s + 1}/anat/FLAIR.nii.gz", f"sub-0{s + 1}/anat/FLAIR_mask.nii.gz", "siteA"])
    csv_path = data / "cohort.csv"
    with csv_path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["image", "mask", "site"], *rows])
    out = tmp_path / "out"
    key = tmp_path / "keys" / "my.key"
    code, output = _invoke("evaluate", "-m", "mri", "--data", str(csv_path), "--k", "1", "--out", str(out), "-q", "--key-file", str(key))
    assert code == 0, output
    ids = [r["exam_id"] for r in csv.DictReader((out / "mri" / "cases.csv").open())]
    assert len(ids) == 3 and len(set(ids)) == 3 and all(i.startswith("case-") for i in ids)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    run = json.loads((out / "run.json").read_text())
    assert run["pseudonym_key"].startswith("sha256:") and key.read_text().strip() not in json.dumps(run)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert not [p for p, b in files.items() if b"sub-01" in b]
    # only the store keeps the --data argument (which --resume needs); no other file holds a path
    assert not [p for p, b in files.items() if str(tmp_path).encode() in b and not p.name.startswith("results.sqlite")]
    assert not [p for p in out.rglob("*") if "key" in p.name]


def test_fundus_cohort_with_two_files_named_1_png_gets_two_ids(tmp_path: Path) -> None:
    data = tmp_path / "fundus"
    _png(data / "left" / "1.png", 1, rgb=True)
    _png(data / "right" / "1.png", 2, rgb=True)
    (data / "grades.csv").write_text("image,level\nleft/1.png,0\nright/1.png,3\n")
    out = tmp_path / "out"
    code, output = _invoke("evaluate", "-m", "fundus", "--data", str(data / "grades.csv"), "--model", "fundus.demo_cnn",
                           "--k", "1", "--out", str(out), "-q")
    assert code == 0, output
    ids = [r["exam_id"] for r in csv.DictReader((out / "fundus" / "cases.csv").open())]
    assert len(ids) == 2 and len(set(ids)) == 2
    (data / "dup.csv").write_text("image,level,eye\nleft/1.png,0,E1\nright/1.png,3,E1\n")
    code, output = _invoke("evaluate", "-m", "fundus", "--data", str(data / "dup.csv"), "--model", "fundus.demo_cnn",
                           "--data-option", "id_column=eye", "--out", str(tmp_path / "dup"), "-q")
    assert code == 2 and "rows 2, 3" in output, output
    assert not (tmp_path / "dup").exists()


def test_an_unrelated_non_empty_out_is_refused_and_left_untouched(tmp_path: Path) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    code, output = _invoke("evaluate", "-m", "cxr", "--limit", "2", "--k", "1", "--out", str(out), "-q")
    assert code == 2 and "not empty" in output and "--overwrite" in output, output
    assert sorted(p.name for p in out.iterdir()) == ["chapter1.tex"]
    code, output = _invoke("evaluate", "-m", "cxr", "--limit", "2", "--k", "1", "--out", str(out), "-q", "--overwrite")
    assert code == 0, output
    assert (out / "chapter1.tex").read_text() == "precious" and (out / "run.json").is_file()


def test_a_huge_counterfactual_request_is_refused_up_front(tmp_path: Path) -> None:
    spec = tmp_path / "huge.toml"
    spec.write_text('k = 100000000000\nseed = 0\n[[members]]\nop = "cxr.dose"\n')
    code, output = _invoke("evaluate", "-m", "cxr", "--neighborhood", str(spec), "--out", str(tmp_path / "o"), "-q")
    assert code == 2 and "counterfactuals exceeds the limit" in output and "--max-counterfactuals" in output, output
    assert not (tmp_path / "o").exists()


def test_generate_records_an_unreadable_case_and_writes_the_others_whole(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(3):
        _png(data / f"p{i}.png", i)
    (data / "p1.png").write_bytes(b"not a png at all")
    csv_path = _chexpert(data, ["p0.png", "p1.png", "p2.png"])
    out = tmp_path / "gen"
    result = run_c3("generate", "-m", "cxr", "--data", str(csv_path), "--op", "cxr.dose", "--k", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "p1.png" in result.stderr  # the console names the file so the user can fix it
    failures = list(csv.DictReader((out / "cxr" / "failures.csv").open()))
    assert [f["index"] for f in failures] == ["1"] and failures[0]["row"] == "3"
    assert failures[0]["exam_id"].startswith("case-") and "p1" not in failures[0]["reason"]
    cases = [p for p in (out / "cxr").iterdir() if p.is_dir()]
    assert len(cases) == 2 and all(sorted(c.name for c in case.iterdir()) == ["cf-00.json", "cf-00.png", "original.png"] for case in cases)
    assert not list(out.rglob("*.part"))


def test_no_input_path_in_failures_or_the_per_case_store(tmp_path: Path) -> None:
    data = tmp_path / "ward-7-smith"
    for i in range(3):
        _png(data / f"smith_john_{i}.png", i)
    (data / "smith_john_1.png").write_bytes(b"broken")
    csv_path = _chexpert(data, [f"smith_john_{i}.png" for i in range(3)])
    out = tmp_path / "out"
    result = run_c3("evaluate", "-m", "cxr", "--data", str(csv_path), "--model", "cxr.demo_cnn", "--k", "1", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    failures = (out / "cxr" / "failures.csv").read_text()
    assert "smith" not in failures and "ward-7" not in failures and ",3," in failures
    db = sqlite3.connect(out / "results.sqlite")
    for table in ("cases", "counterfactuals", "failures"):
        for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed table names
            assert "smith" not in json.dumps(row), (table, row)
    db.close()
    assert "smith" not in (out / "run.json").read_text()


def test_a_second_run_on_the_same_out_is_refused_and_kill_9_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = subprocess.Popen([C3, "evaluate", "-m", "cxr", "--batch-size", "2", "--out", str(out), "-q"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "results.sqlite").exists():
            time.sleep(0.2)
        assert (out / "results.sqlite").exists(), first.communicate()[1] if first.poll() is not None else "no store yet"
        second = run_c3("evaluate", "-m", "cxr", "--limit", "2", "--out", str(out), "-q")
        assert second.returncode == 2 and "another c3 process" in second.stderr, second.stderr
        resume_now = run_c3("evaluate", "--resume", str(out), "-q")
        assert resume_now.returncode == 2 and "another c3 process" in resume_now.stderr, resume_now.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not (out / "run-failed.json").exists()
    resumed = run_c3("evaluate", "--resume", str(out), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "run.json").is_file()


def test_demo_numbers_do_not_depend_on_the_key(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        code, output = _invoke("evaluate", "-m", "cxr", "--limit", "8", "--k", "2", "--out", str(out), "-q",
                               "--key-file", str(tmp_path / f"{name}.key"))
        assert code == 0, output
        runs.append(out)
    summary = [json.loads((r / "cxr" / "summary.json").read_text()) for r in runs]
    for s in summary:
        s.pop("seconds", None)
    assert summary[0] == summary[1]
    ids = [[r["exam_id"] for r in csv.DictReader((run / "cxr" / "cases.csv").open())] for run in runs]
    assert ids[0] != ids[1]
    scores = [[r["utility"] for r in csv.DictReader((run / "cxr" / "cases.csv").open())] for run in runs]
    assert scores[0] == scores[1]


def test_an_untrained_architecture_is_refused(tmp_path: Path) -> None:
    code, output = _invoke("evaluate", "-m", "fundus", "--model", "fundus.efficientnet_b3", "--limit", "2", "--out", str(tmp_path / "o"), "-q")
    assert code == 2 and "no trained weights" in output and "c3 train" in output, output
    assert not (tmp_path / "o").exists()


def test_data_without_model_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _png(data / "p0.png", 0)
    csv_path = _chexpert(data, ["p0.png"])
    code, output = _invoke("evaluate", "-m", "cxr", "--data", str(csv_path), "--out", str(tmp_path / "o"), "-q")
    assert code == 2 and "needs --model" in output and "--model weights.safetensors" in output, output


def test_a_weights_file_the_user_may_not_read_says_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import c3_core.model as model
    import c3_core.resolve as resolve

    w = tmp_path / "w.safetensors"
    w.write_bytes(b"x")
    unreadable = lambda path, mode, *a, **k: Path(path) != w  # noqa: E731 - root reads everything: pretend
    monkeypatch.setattr(resolve.os, "access", unreadable)
    monkeypatch.setattr(model.os, "access", unreadable)
    code, output = _invoke("evaluate", "-m", "cxr", "--model", str(w), "--out", str(tmp_path / "o"), "-q")
    assert code == 2 and "permission denied" in output and "not found" not in output, output
    with pytest.raises(model.WeightsError, match="permission denied"):
        model.load_state_dict_safely(w, __import__("torch").nn.Linear(1, 1))
