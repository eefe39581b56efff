"""Durable, resumable, sharded evaluation: SIGKILL + --resume, torchrun with gloo, failed cases."""

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

import pytest
from fake_dists import write_dist
from typer.testing import CliRunner

from c3_core.cli import app
from c3_core.evaluation.store import ResultStore, StoreError

TESTS = Path(__file__).parent
TOY_MODULE = '''
from toy_plugin import c3_register_operators, c3_register_models  # noqa: F401
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True,
                 default_model="toy.model", default_neighbourhood=NEIGHBOURHOOD)
'''
SPEC = """k = 3
seed = 5
[[members]]
op = "toy.gain"
levels = [1.0, 3.0, 6.0]
[[members]]
op = "toy.noise"
severity = [0.05, 0.3]
"""


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A folder holding the toy plugin as an installed distribution; the env a subprocess needs."""
    root = tmp_path / "site"
    root.mkdir()
    spec = root / "toy.toml"
    spec.write_text(SPEC)
    write_dist(root, "c3-toy", "c3_toy_durable_entry", f"NEIGHBOURHOOD = {str(spec)!r}\n" + TOY_MODULE)
    monkeypatch.syspath_prepend(str(root))
    for var in ("C3_DISABLE_PLUGIN_AUTOLOAD", "TOY_DELAY", "TOY_FAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("C3_PLUGINS", "c3-toy")
    monkeypatch.setenv("TOY_N", "40")
    path = os.pathsep.join([str(root), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "C3_PLUGINS": "c3-toy", "TOY_N": "40", "OMP_NUM_THREADS": "1"}


def _c3(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-m", "c3_core.cli", *args]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _committed(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return int(con.execute("select count(*) from cases").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_gives_the_uninterrupted_table(site: dict[str, str], tmp_path: Path) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    args = ["evaluate", "--quiet", "--batch-size", "4"]
    done = subprocess.run(_c3(site, *args, "--out", str(whole)), env=site, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    slow = {**site, "TOY_DELAY": "0.08"}
    proc = subprocess.Popen(_c3(slow, *args, "--out", str(broken)), env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _committed(broken / "results.sqlite") < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = _committed(broken / "results.sqlite")
    assert 8 <= part < 40, f"the kill should land part-way, {part} of 40 committed"
    assert not (broken / "run.json").exists() and not (broken / "toy" / "cases.csv").exists()
    # without --resume the unfinished folder is refused, untouched
    again = subprocess.run(_c3(site, *args, "--out", str(broken)), env=site, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--resume" in again.stderr
    assert _committed(broken / "results.sqlite") == part
    resumed = subprocess.run(_c3(site, "evaluate", "--quiet", "--resume", str(broken)), env=site, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for name in ("cases.csv", "counterfactuals.csv"):
        assert (broken / "toy" / name).read_bytes() == (whole / "toy" / name).read_bytes(), name
    ids = [r["exam_id"] for r in _rows(broken / "toy" / "cases.csv")]
    assert len(ids) == len(set(ids)) == 40
    a = json.loads((whole / "toy" / "summary.json").read_text())
    b = json.loads((broken / "toy" / "summary.json").read_text())
    assert a == b
    # resuming a finished run changes nothing
    twice = subprocess.run(_c3(site, "evaluate", "--quiet", "--resume", str(broken)), env=site, capture_output=True, text=True, timeout=300)
    assert twice.returncode == 0 and "already complete" in twice.stderr


def test_two_gloo_processes_give_the_single_process_table(site: dict[str, str], tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["evaluate", "--quiet", "--batch-size", "3"]
    single = subprocess.run(_c3(site, *args, "--out", str(one)), env=site, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "c3_core.cli"]
    multi = subprocess.run([*torchrun, *args, "--out", str(two)], env=site, capture_output=True, text=True, timeout=600)
    assert multi.returncode == 0, multi.stderr[-3000:]
    for name in ("cases.csv", "counterfactuals.csv"):
        assert (two / "toy" / name).read_bytes() == (one / "toy" / name).read_bytes(), name
    run = json.loads((two / "run.json").read_text())
    assert run["processes"] == 2 and run["status"] == "complete"
    assert json.loads((two / "summary.json").read_text()) == json.loads((one / "summary.json").read_text())


runner = CliRunner()


def test_unreadable_cases_are_recorded_and_the_run_goes_on(site: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_FAIL", "3,17")
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    failed = _rows(out / "toy" / "failures.csv")
    assert [int(r["index"]) for r in failed] == [3, 17] and "unreadable file" in failed[0]["reason"]
    assert len(_rows(out / "toy" / "cases.csv")) == 38
    assert json.loads((out / "toy" / "summary.json").read_text())["n_failed"] == 2


def test_max_failures_stops_the_run_and_keeps_what_was_committed(site: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_FAIL", "9,10,11,12")
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--quiet", "--out", str(out), "--batch-size", "4", "--max-failures", "2"])
    assert result.exit_code == 3
    assert "--max-failures 2" in result.output
    assert not (out / "run.json").exists()
    # batches 0-3, 4-7 and 8-11 (case 8 scored, 9-11 failed: 3 > 2) were committed, then it stopped
    assert _committed(out / "results.sqlite") == 9


def test_a_failing_disk_stops_the_run_with_a_clear_error(site: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = ResultStore.commit_batch

    def full_after_two(self: ResultStore, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise StoreError(f"{self.path}: cannot write (database or disk is full)")
        original(self, *args, **kwargs)

    monkeypatch.setattr(ResultStore, "commit_batch", full_after_two)
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "--quiet", "--out", str(out), "--batch-size", "5"])
    assert result.exit_code == 3 and "disk is full" in result.output
    assert _committed(out / "results.sqlite") == 10 and not (out / "run.json").exists()
    monkeypatch.setattr(ResultStore, "commit_batch", original)
    resumed = runner.invoke(app, ["evaluate", "--quiet", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert len(_rows(out / "toy" / "cases.csv")) == 40


def test_resume_refuses_new_options_and_foreign_folders(site: dict[str, str], tmp_path: Path) -> None:
    clash = runner.invoke(app, ["evaluate", "--resume", str(tmp_path), "--k", "2"])
    assert clash.exit_code == 2 and "drop --k" in clash.output
    nothing = runner.invoke(app, ["evaluate", "--resume", str(tmp_path / "nope")])
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.output


def test_store_refuses_a_case_committed_twice(tmp_path: Path) -> None:
    from c3_core.evaluation.store import CaseResult

    store = ResultStore(tmp_path / "r.sqlite", create=True)
    row = CaseResult(0, {"exam_id": "a", "score": 1.0}, [])
    store.commit_batch("toy", [row], [])
    with pytest.raises(StoreError, match="committed twice"):
        store.commit_batch("toy", [row, CaseResult(1, {"exam_id": "b"}, [])], [])
    assert store.finished_indices("toy") == {0}  # the failed batch left nothing behind
    store.set_fingerprint({"a": 1})
    with pytest.raises(StoreError, match="other options"):
        store.set_fingerprint({"a": 2})
