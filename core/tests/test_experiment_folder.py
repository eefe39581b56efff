"""What an experiment folder stores and how it resumes: portable spec names (no absolute paths), budget
fields added later, the warm-up reaching the trainer, the compute its runs recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c3_core.experiments.context import ExperimentInputError
from c3_core.experiments.paper import _check_fingerprint
from c3_core.shown_paths import portable_source


def _packaged_spec(root: Path) -> Path:
    """A spec file in a data folder (no ``__init__``) of a two-level package under ``root``."""
    pkg = root / "site" / "mypkg"
    (pkg / "sub" / "specs").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    spec = pkg / "sub" / "specs" / "default.toml"
    spec.write_text("k = 1\n")
    return spec


def test_packaged_spec_is_named_by_package(tmp_path):
    spec = _packaged_spec(tmp_path)
    assert portable_source(str(spec)) == "mypkg/sub/specs/default.toml"
    assert portable_source(f"{spec} minus a.b/c.d [physics]") == "mypkg/sub/specs/default.toml minus a.b/c.d [physics]"


def test_the_same_package_in_two_places_gives_one_label(tmp_path):
    a, b = _packaged_spec(tmp_path / "one"), _packaged_spec(tmp_path / "two")
    assert portable_source(str(a)) == portable_source(str(b))


def test_other_paths_keep_no_machine_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mine.toml").write_text("k = 1\n")
    assert portable_source(str(tmp_path / "specs" / "mine.toml")) == "specs/mine.toml"
    assert portable_source("specs/mine.toml [operators]") == "specs/mine.toml [operators]"
    assert portable_source("/elsewhere/not/here/spec.toml minus x") == "<outside>/spec.toml minus x"
    for label in ("--op", "<string>", "held-out shift vendor", None, ""):
        assert portable_source(label) == label


def _fingerprint(source: str) -> dict:
    from dataclasses import asdict

    from c3_core.experiments.sizes import Budget

    return {
        "budget": asdict(Budget()),
        "eval_neighbourhood": {"k": 2, "source": source},
        "train_neighbourhood": {"k": 1, "source": source + " [all]"},
    }


def test_a_folder_from_another_checkout_resumes(tmp_path):
    """The fingerprint compares portable sources, so the same package elsewhere is the same run,
    including folders written before sources were portable (absolute paths stored)."""
    from dataclasses import asdict

    from c3_core.experiments.sizes import Budget

    a, b = _packaged_spec(tmp_path / "one"), _packaged_spec(tmp_path / "two")
    out = tmp_path / "out"
    folder = out / "runs" / "m"
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps(_fingerprint(str(a)), sort_keys=True))
    _check_fingerprint(
        out,
        "m",
        _fingerprint(portable_source(str(b)))
        | {"train_neighbourhood": {"k": 1, "source": portable_source(str(b) + " [all]")}},
    )
    with pytest.raises(ExperimentInputError, match="budget"):
        _check_fingerprint(out, "m", _fingerprint(portable_source(str(b))) | {"budget": asdict(Budget(epochs=2))})


def test_a_new_folder_stores_no_absolute_path(tmp_path):
    spec = _packaged_spec(tmp_path / "one")
    out = tmp_path / "out"
    fp = {
        k: (v | {"source": portable_source(v["source"])} if isinstance(v, dict) and "source" in v else v)
        for k, v in _fingerprint(str(spec)).items()
    }
    _check_fingerprint(out, "m", fp)
    text = (out / "runs" / "m" / "experiment.json").read_text()
    assert str(tmp_path) not in text and "mypkg/sub/specs/default.toml" in text


def test_a_budget_field_added_later_reads_as_its_default(tmp_path):
    """A folder written before ``lam_warmup_epochs`` existed resumes when the run uses the default
    (0) and is refused when the run ramps λ in."""
    from dataclasses import asdict

    from c3_core.experiments.sizes import Budget, choose_size

    budget = asdict(choose_size(quick=False, full=False, powered=True).base)
    old = {k: v for k, v in budget.items() if k != "lam_warmup_epochs"}
    folder = tmp_path / "runs" / "m"
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"budget": old}, sort_keys=True))
    _check_fingerprint(tmp_path, "m", {"budget": budget})
    ramped = asdict(choose_size(quick=False, full=False, powered=True, lam_warmup_epochs=3).base)
    assert ramped["lam_warmup_epochs"] == 3.0 and Budget().lam_warmup_epochs == 0.0
    with pytest.raises(ExperimentInputError, match="budget"):
        _check_fingerprint(tmp_path, "m", {"budget": ramped})
    with pytest.raises(ValueError, match="lam-warmup-epochs"):
        choose_size(quick=False, full=False, powered=True, lam_warmup_epochs=-1)


def test_a_warmup_budget_trains_with_a_ramp():
    """``--lam-warmup-epochs`` reaches the trainer as a linear ramp (a constant schedule has none)."""
    from c3_core.experiments.rows import rows_by_key
    from c3_core.experiments.runs import row_train_options
    from c3_core.experiments.sizes import choose_size
    from c3_core.training.schedule import LambdaSchedule

    plain = choose_size(quick=False, full=False, powered=True).base
    ramped = choose_size(quick=False, full=False, powered=True, lam_warmup_epochs=2).base
    rows = {r.key: r for r in rows_by_key(["c3", "augmix"])}
    c3, augmix = rows["c3"], rows["augmix"]
    o = row_train_options(c3, ramped, 0)
    assert (o.lam, o.lam_warmup_epochs, o.lam_shape) == (1.0, 2.0, "linear")
    assert LambdaSchedule(o.lam, o.lam_shape, 10)(0) == 0.0 and LambdaSchedule(o.lam, o.lam_shape, 10)(5) == 0.5
    assert row_train_options(augmix, ramped, 1).lam_shape == "linear"
    o = row_train_options(c3, plain, 0)
    assert (o.lam_warmup_epochs, o.lam_shape) == (0.0, "constant")


def test_recorded_seconds_sum_training_epochs_and_evaluations(tmp_path):
    """A resumed run's epochs count once each, whichever session ran them; a row that does not
    train (TTA) records its evaluations only."""
    from c3_core.experiments.runs import recorded_seconds

    train = tmp_path / "runs" / "m" / "c3" / "seed1" / "train"
    train.mkdir(parents=True)
    (train / "train.json").write_text(json.dumps({"history": [{"seconds": 10.0}, {"seconds": 12.5}], "seconds_this_session": 12.5}))
    result = {"row": "c3", "seed": 1, "conditions": {"in_domain": {"seconds": 3.0}, "held_out": {"seconds": 4.0}}}
    assert recorded_seconds(tmp_path, "m", result) == pytest.approx(29.5)
    assert recorded_seconds(tmp_path, "m", result | {"row": "tta"}) == pytest.approx(7.0)
