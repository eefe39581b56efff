"""The paper's experiment command: held-out shifts, metrics, the table, and resume-skips-finished."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fake_dists import write_dist
from safetensors.torch import load_file

from c3_core.experiments import tables
from c3_core.experiments.casemetrics import bootstrap_intervals, case_table, prediction_flips, table_metrics
from c3_core.experiments.paper import experiment_command, rewrite_results
from c3_core.experiments.rows import ROWS, rows_by_key
from c3_core.experiments.shifts import (
    HeldOutShift,
    ShiftStep,
    shift_spec,
    spec_to_toml,
    training_spec,
)
from c3_core.experiments.sizes import Budget, choose_size
from c3_core.experiments.tta import probabilities_to_logits
from c3_core.neighbourhood import NeighbourhoodSpec

TESTS = Path(__file__).parent
SPEC = """k = 2
seed = 3
[[members]]
op = "toy.gain"
levels = [3.0, 6.0]
[[members]]
op = "toy.noise"
severity = [0.05, 0.2]
[[members]]
weight = 0.5
steps = [{ op = "toy.noise", levels = [0.1] }, { op = "toy.gain", levels = [3.0] }]
"""
TOY_MODULE = '''
import torch
from toy_plugin import c3_register_operators  # noqa: F401
from c3_core.model import ModelBundle, load_state_dict_safely
from c3_core.plugins.markers import hookimpl


class LogFeatures(torch.nn.Module):
    """Logits from log(patch mean) and log(image mean): gain-invariant iff the two weights cancel."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
            self.linear.bias.copy_(torch.tensor([-1.8, 1.8]))

    def forward(self, x):
        p = x[:, :, 4:10, 4:10].mean((1, 2, 3)).clamp_min(1e-3).log()
        g = x.mean((1, 2, 3)).clamp_min(1e-3).log()
        # dropout draws from torch's global RNG: the experiment must seed it for runs to repeat
        return self.linear(torch.nn.functional.dropout(torch.stack([p, g], 1), 0.2, self.training))


def make_logfeat(*, weights=None, device="cpu", **options):
    net = LogFeatures()
    if weights not in (None, "demo"):
        load_state_dict_safely(weights, net)
    return ModelBundle(net.to(device), "multiclass", ("absent", "present"), "display", name="toy.logfeat")


@hookimpl
def c3_register_models(registry):
    registry.add("toy.logfeat", __name__ + ":make_logfeat", "log-feature toy model", task="multiclass")


@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True,
                 default_model="toy.logfeat", default_neighbourhood=NEIGHBOURHOOD)
'''
TRAINED = ("standard", "augmix", "c3", "nogate")


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    spec = root / "toy.toml"
    spec.write_text(SPEC)
    write_dist(root, "c3-toyexp", "c3_toy_experiment_entry", f"NEIGHBOURHOOD = {str(spec)!r}\n" + TOY_MODULE)
    monkeypatch.syspath_prepend(str(root))
    for var in ("C3_DISABLE_PLUGIN_AUTOLOAD", "TOY_DELAY", "TOY_FAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("C3_PLUGINS", "c3-toyexp")
    monkeypatch.setenv("TOY_N", "24")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only adds waiting on a busy machine
    yield tmp_path
    torch.set_num_threads(threads)


def _run(tmp: Path, lines: list[str], **kw: object) -> int:
    args = {"modalities": ["toy"], "seeds": 1, "full": False, "out": str(tmp / "out"),
            "results": str(tmp / "results.md"), "device": None, "quick": True, **kw}
    return experiment_command(**args, echo=lines.append)  # type: ignore[arg-type]


def _section(text: str, title: str) -> list[str]:
    part = text.split(title, 1)[1].split("\n### ", 1)[0]
    return [ln for ln in part.splitlines() if ln.startswith("|")]


# -- end to end on the toy plugin -------------------------------------------------------------
def test_experiment_writes_the_table_and_resume_skips_finished_runs(site: Path) -> None:
    results = site / "results.md"
    results.write_text("# My intro\n\nHand-written words.\n\n" + tables.MARKER + "\nold numbers\n")
    lines: list[str] = []
    assert _run(site, lines) == 0, lines
    text = results.read_text()
    assert text.startswith("# My intro\n\nHand-written words.\n") and "old numbers" not in text
    assert "## toy" in text and "Command: `c3 experiment --quick --modality toy --seeds 1" in text
    assert "Hardware:" in text and "torch threads" in text and "Wall time of this invocation: total" in text and "Compute the runs recorded" in text
    assert "`toy.gain` @ 6" in text  # derived shift: the first single-operator member at its top level
    for title, extra in (("### toy: In-domain", []), ("### toy: Held-out shift", ["shift flips"])):
        table = _section(text, title)
        header = [c.strip() for c in table[0].strip("|").split("|")]
        assert header == ["method", "seeds", "AUROC (macro)", "ECE", "Brier", "agreement", "U mean", "U p10",
                          "flip rate", *extra]
        labels = [ln.split("|")[1].strip() for ln in table[2:]]
        assert labels == [r.label for r in ROWS]
        by_label = dict(zip(labels, table[2:]))
        assert "no editors registered for toy" in by_label["C³ editor-only"]
        assert "same model as C³" in by_label["C³ physics-only"]
        cells = [c.strip() for c in by_label["C³"].strip("|").split("|")]
        assert cells[1] == "1" and 0.0 <= float(cells[2].split()[0]) <= 1.0
        assert "(" in cells[2] and "–" in cells[2]  # seed-0 bootstrap CI beside the mean
    rewrite_results(site / "out", results)  # re-rendered from OUT/experiment.json: the same file
    assert results.read_text() == text
    runs = site / "out" / "runs" / "toy"
    finished = {r: runs / r / "seed0.json" for r in (*TRAINED, "tta")}
    assert all(p.is_file() for p in finished.values())
    assert not (runs / "tta" / "seed0" / "train").exists()  # TTA reuses the standard model's weights
    c3 = json.loads(finished["c3"].read_text())
    trained = json.loads((runs / "c3" / "seed0" / "train" / "train.json").read_text())
    assert trained["options"]["lam"] == 1.0 and trained["neighbourhood"]["members"] == [
        {"weight": 1.0, "steps": [{"op": "toy.noise", "severity": [0.05, 0.2]}]}
    ]  # gain (the held-out family) is gone from training, and so is the composition using it
    assert json.loads((runs / "standard" / "seed0" / "train" / "train.json").read_text())["options"]["lam"] == 0.0
    assert json.loads((runs / "nogate" / "seed0" / "train" / "train.json").read_text())["teacher"] is None
    # the table's metrics are the evaluation runner's numbers
    for condition in ("in_domain", "held_out"):
        got, ref = c3["conditions"][condition]["metrics"], c3["conditions"][condition]["runner_summary"]
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (condition, key)
    # resume: finished runs are skipped untouched; a removed result is recomputed identically,
    # and so are removed weights (retrained bit for bit)
    stamps = {r: p.stat().st_mtime_ns for r, p in finished.items()}
    finished["c3"].unlink()
    trained_dir = runs / "c3" / "seed0" / "train"
    before = load_file(str(trained_dir / "model.safetensors"))
    (trained_dir / "model.safetensors").unlink()
    (trained_dir / "train.json").unlink()
    shutil.rmtree(trained_dir / "checkpoint")  # no checkpoint either: trained again from the start
    again: list[str] = []
    assert _run(site, again) == 0, again
    for r in ("standard", "augmix", "tta", "nogate"):
        assert finished[r].stat().st_mtime_ns == stamps[r]
        assert any(f"{r} seed 0: finished earlier, skipped" in ln for ln in again)
    assert not any("c3 seed 0: training" in ln and "resum" in ln for ln in again)
    after = load_file(str(trained_dir / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    redone = json.loads(finished["c3"].read_text())
    for condition in ("in_domain", "held_out"):
        for part in ("metrics", "ci95", "gate"):
            assert redone["conditions"][condition][part] == c3["conditions"][condition][part]


def test_an_output_folder_of_another_size_is_refused(site: Path) -> None:
    assert _run(site, [], rows=["standard"]) == 0
    lines: list[str] = []
    assert _run(site, lines, quick=False, rows=["standard"]) == 2
    assert any("experiment.json" in ln and "different budget" in ln for ln in lines), lines


def test_bad_options_exit_2_and_name_the_problem(site: Path) -> None:
    lines: list[str] = []
    assert _run(site, lines, modalities=["nosuch"]) == 2 and "nosuch" in lines[-1]
    assert _run(site, lines, full=True) == 2 and "--quick, --powered and --full" in lines[-1]
    assert _run(site, lines, rows=["tta"]) == 2 and "standard" in lines[-1]
    assert not (site / "results.md").exists()


# -- held-out shifts ---------------------------------------------------------------------------
def test_training_spec_drops_every_member_using_the_family() -> None:
    spec = NeighbourhoodSpec.from_toml_string(SPEC, "toy.toml")
    shift = HeldOutShift("toy", "gain", ("toy.gain",), (ShiftStep("toy.gain", 6.0),), "test")
    kept = training_spec(spec, shift)
    assert [[s.op for s in m.steps] for m in kept.members] == [["toy.noise"]]
    both = HeldOutShift("toy", "all", ("toy.gain", "toy.noise"), (ShiftStep("toy.gain", 6.0),), "test")
    with pytest.raises(ValueError, match="toy.toml: every member uses the held-out family"):
        training_spec(spec, both)
    fixed = shift_spec(shift)
    assert fixed.k == 1 and fixed.members[0].steps[0].levels == (6.0,)


def test_spec_to_toml_round_trips() -> None:
    spec = NeighbourhoodSpec.from_toml_string(SPEC + '[[members]]\nop = "toy.noise"\nlevels = [0.1]\noptions = { a = 1, b = "x" }\n')
    back = NeighbourhoodSpec.from_toml_string(spec_to_toml(spec))
    assert back.to_dict() == spec.to_dict()


def test_declared_shifts_name_installed_operators_and_leave_training_members() -> None:
    """Every installed plugin's declared shifts: registered operators of its modality, in range,
    each leaving a training neighbourhood; its budget fields build a Budget for every size."""
    from c3_core.evaluation.runner import resolve_resource
    from c3_core.experiments.context import declared_experiment
    from c3_core.experiments.sizes import SIZES
    from c3_core.plugins.host import PluginHost

    host = PluginHost().load()
    for modality in host.modalities():
        declared = declared_experiment(host, modality)
        if declared is None:
            continue
        assert len(declared.shifts) >= 2 and declared.modality == modality
        spec = NeighbourhoodSpec.from_toml(resolve_resource(host.demo_dataset(modality).meta["default_neighbourhood"]))
        for shift in declared.shifts:
            for step in shift.steps:
                op = host.make_operator(step.op, step.options)
                assert op.modality == modality
                op.severity.check(step.severity, f"{modality}: {shift.name}")
            kept = training_spec(spec, shift)
            assert not set(kept.operator_ids) & set(shift.family) and kept.members
        for size in SIZES.values():
            size.budget(declared.budget_fields(size.name))


def test_declared_budgets_and_splits_reproduce_the_former_core_tables() -> None:
    """The numbers core used to key by modality name now come from the plugins, unchanged."""
    from dataclasses import asdict

    from c3_core.experiments.context import declared_experiment
    from c3_core.experiments.sizes import SIZES
    from c3_core.plugins.host import PluginHost

    host = PluginHost().load()
    former = {  # (size, modality) -> the budget core's tables held before the plugins declared them
        ("quick", "mri"): Budget(epochs=1, train_cases=2, test_cases=2, batch_size=2, lr=1e-3, k_eval=1, tta_views=2, n_boot=20),
        ("default", "fundus"): Budget(epochs=2, train_cases=96, test_cases=64, batch_size=16, lr=1e-3, k_eval=2, tta_views=2),
        ("default", "mri"): Budget(epochs=4, train_cases=24, test_cases=8, batch_size=2, lr=1e-3, k_eval=3, tta_views=2),
        ("full", "mri"): Budget(epochs=150, batch_size=4, lr=3e-3, k_train=2, k_eval=8, tta_views=8, n_boot=1000, init=None),
    }
    for (size, modality), budget in former.items():
        if modality not in host.modalities():
            continue
        declared = declared_experiment(host, modality)
        assert declared is not None
        assert asdict(SIZES[size].budget(declared.budget_fields(size))) == asdict(budget)
    if "mri" in host.modalities():
        assert declared_experiment(host, "mri").in_domain_split == "val"  # type: ignore[union-attr]
    for modality in {"cxr", "fundus", "us"} & set(host.modalities()):
        assert declared_experiment(host, modality).in_domain_split == "test"  # type: ignore[union-attr]


def test_a_declared_budget_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown budget field"):
        choose_size(quick=True, full=False).budget({"epoch": 3})
    assert choose_size(quick=True, full=False).budget({"epochs": 3}).epochs == 3


def test_shifted_cases_depend_only_on_the_exam(site: Path) -> None:
    from toy_plugin import ToyDataset

    from c3_core.experiments.cases import InMemory, Shifted
    from c3_core.neighbourhood import Neighbourhood
    from c3_core.plugins.host import PluginHost

    host = PluginHost().load()
    shift = HeldOutShift("toy", "gain", ("toy.gain",), (ShiftStep("toy.gain", 6.0),), "test")
    nb = Neighbourhood(shift_spec(shift), host.make_operator)
    base = InMemory(ToyDataset(), 6)
    a, b = Shifted(base, nb), Shifted(base, nb)
    reversed_base = InMemory(ToyDataset(), 6)
    reversed_base.samples.reverse()
    c = Shifted(reversed_base, nb)
    for i in range(6):
        assert torch.equal(a[i].image, b[i].image) and torch.equal(a[i].image, c[len(c) - 1 - i].image)
        ratio = float((a[i].image / base[i].image).mean())
        assert 20 * math.log10(ratio) == pytest.approx(6.0, abs=1e-4) or 20 * math.log10(ratio) == pytest.approx(-6.0, abs=1e-4)
        assert a[i].exam_id == base[i].exam_id and torch.equal(a[i].label, base[i].label)


# -- metrics -----------------------------------------------------------------------------------
def _rows(n: int = 40) -> list[dict[str, object]]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(n):
        y = i % 2
        p1 = float(torch.rand((), generator=g)) * 0.6 + 0.4 * y
        rows.append({"exam_id": f"e{i}", "utility": 1 - abs(y - p1), "n_admitted": 2, "n_flipped": int(i % 5 == 0),
                     "prob_absent": 1 - p1, "prob_present": p1, "label": y, "pred": int(p1 >= 0.5)})
    return rows


def test_case_metrics_follow_their_definitions() -> None:
    rows = _rows()
    t = case_table("multiclass", ("absent", "present"), rows)
    m = table_metrics(t)
    y = [r["label"] for r in rows]
    p = [r["prob_present"] for r in rows]
    pos = [pp for pp, yy in zip(p, y) if yy == 1]
    neg = [pp for pp, yy in zip(p, y) if yy == 0]
    mann_whitney = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    assert m["auroc_macro"] == pytest.approx(mann_whitney)
    assert m["agreement"] == pytest.approx((80 - 8) / 80) and m["flip_rate"] == pytest.approx(8 / 40)
    assert m["utility_mean"] == pytest.approx(sum(r["utility"] for r in rows) / 40)
    assert m["brier"] == pytest.approx(sum(2 * (1 - pp - (1 - yy)) ** 2 for pp, yy in zip(p, y)) / 40)
    ci = bootstrap_intervals(t, torch.Generator().manual_seed(1), n_boot=100)
    assert ci == bootstrap_intervals(t, torch.Generator().manual_seed(1), n_boot=100)
    for key in ("auroc_macro", "utility_mean", "brier"):
        lo, hi = ci[key]  # type: ignore[misc]
        assert lo <= m[key] <= hi
    with pytest.raises(ValueError, match="no evaluated case"):
        case_table("multiclass", ("absent", "present"), [])


def test_prediction_flips_pair_exams() -> None:
    clean = [{"exam_id": "a", "pred": 1}, {"exam_id": "b", "pred": [0, 1]}, {"exam_id": "c", "pred": 0}]
    shifted = [{"exam_id": "b", "pred": [0, 0]}, {"exam_id": "a", "pred": 1}, {"exam_id": "z", "pred": 1}]
    assert prediction_flips(clean, shifted) == pytest.approx(0.5)
    assert prediction_flips([{"exam_id": "a"}], [{"exam_id": "a"}]) is None


def test_tta_logits_invert_the_output_map() -> None:
    p = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    assert torch.allclose(torch.softmax(probabilities_to_logits(p, True), 1), p, atol=1e-6)
    assert torch.allclose(torch.sigmoid(probabilities_to_logits(p, False)), p, atol=1e-6)


# -- options, rows and table cells -------------------------------------------------------------
def test_sizes_rows_and_cells() -> None:
    assert choose_size(quick=True, full=False).name == "quick" and choose_size(quick=False, full=True).device == "cuda"
    assert choose_size(quick=False, full=False, seeds=3).seeds == 3
    with pytest.raises(ValueError, match="--seeds"):
        choose_size(quick=False, full=False, seeds=0)
    with pytest.raises(ValueError, match="epochs"):
        Budget(epochs=0)
    with pytest.raises(ValueError, match="unknown row"):
        rows_by_key(["nope"])
    assert [r.key for r in rows_by_key(["standard", "tta"])] == ["standard", "tta"]
    runs = [{"seed": 0, "conditions": {"x": {"metrics": {"brier": 0.5, "flip_rate": 0.1}, "ci95": {"brier": [0.4, 0.6]}}}},
            {"seed": 1, "conditions": {"x": {"metrics": {"brier": 0.7, "flip_rate": 0.3}, "ci95": {"brier": [0.1, 0.9]}}}}]
    assert tables.cell(runs, "x", "brier") == "0.600 (0.400–0.600)"  # mean over seeds, seed 0's CI
    assert tables.cell(runs, "x", "flip_rate") == "0.200"  # no CI column
    runs[0]["conditions"]["x"]["metrics"]["brier"] = None  # type: ignore[index]
    assert tables.cell(runs, "x", "brier").startswith("0.700")
    assert tables.cell(runs, "x", "other") == "n/a"
    assert tables.split_intro(None) == tables.DEFAULT_INTRO
