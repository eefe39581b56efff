"""`c3 experiment --study failure`: bad input is refused up front; a small user-cohort study runs and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_c3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cases", "5"], "--cases belong to --study failure"),
        (["--shift", "cxr.tone@0.5"], "--shift belong to --study failure"),
        (["--study", "bogus"], "--study must be 'paper' or 'failure'"),
        (["--study", "failure", "--rows", "standard"], "--study failure takes neither --full"),
        (["--study", "failure", "--data", "cxr.demo"], "studies one --modality"),
        (["--study", "failure", "-m", "cxr", "--data", "cxr.demo", "--model", "cxr.demo_cnn", "--shift", "cxr.tone@99"],
         "cxr.tone@99"),
        (["--study", "failure", "-m", "cxr", "--data", "cxr.demo", "--model", "cxr.demo_cnn"], "at least one --shift"),
        (["--study", "failure", "-m", "cxr", "--data", "cxr.demo", "--model", "cxr.demo_cnn", "--shift", "cxr.tone@0.5",
          "--seeds", "2"], "one per seed"),
    ],
)
def test_bad_input_exits_2_and_writes_no_results(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    r = run_c3("experiment", *args, "--out", str(out), timeout=600)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not (out / "failure-study.md").exists()


def test_a_user_cohort_study_runs_and_resumes_without_recomputing(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["experiment", "--study", "failure", "--quick", "-m", "cxr", "--data", "cxr.demo", "--model", "cxr.demo_cnn",
            "--teacher", "cxr.demo_teacher", "--shift", "cxr.tone@0.75+cxr.dose@0.12", "--cases", "12", "--seeds", "1",
            "--out", str(out)]
    first = run_c3(*args, timeout=900)
    assert first.returncode == 0, first.stderr
    result = json.loads((out / "failure-cxr.json").read_text(encoding="utf-8"))
    shift = result["shifts"]["cxr.tone@0.75+cxr.dose@0.12"]
    assert result["n_cases"] == 12 and result["source"]["models"] == ["cxr.demo_cnn"]
    assert shift["flip"]["n_units"] == 12 * 5  # five findings per exam
    assert {"c3_margin", "confidence", "entropy", "generic_margin"} <= set(shift["flip"]["signals"])
    text = (out / "failure-study.md").read_text(encoding="utf-8")
    assert "## The stated criterion" in text and result["source"]["data"] == "cxr.demo"
    second = run_c3(*args, timeout=900)
    assert second.returncode == 0, second.stderr
    assert "reusing failure-cxr.json" in second.stderr
