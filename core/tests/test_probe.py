"""The causal probe (Delta-Drop, Delta-Focus, control-corrected drop), its CLI wiring and the gate's effect."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import toy_interventions
from fake_dists import write_dist
from typer.testing import CliRunner

from c3_core.batch import Batch, collate
from c3_core.cli import app
from c3_core.evaluation.gate_effect import GateEffect, gate_effect, measure_batch
from c3_core.evaluation.probe import (
    ProbeEditors,
    ProbeUnavailable,
    find_probe_editors,
    probe_batch,
    split_probe,
    summarise_probe,
)
from c3_core.evaluation.scoring import GateSettings
from c3_core.gate import GateDecision
from c3_core.plugins.host import PluginHost
from c3_core.seeding import generator_from_seed

pytest.importorskip("cv2")

EDITORS = ProbeEditors(
    toy_interventions.ToyLesionRemoved(), toy_interventions.ToyLesionOnly(), toy_interventions.ToyHealthyControl(), 1.0
)


def _batch(indices: list[int]) -> Batch:
    ds = toy_interventions.make_dataset(n=16)
    return collate([ds[i] for i in indices])


def _present(rows: list[list[dict]]) -> list[dict]:
    return [r for case in rows for r in case if r["class"] == "present" and r["status"] == "ok"]


def test_delta_drop_is_large_for_a_lesion_reader_and_near_zero_for_a_model_that_ignores_it() -> None:
    batch = _batch([1, 3, 5, 7])
    reads = _present(probe_batch(toy_interventions.reader(), batch, EDITORS, seed=0))
    ignores = _present(probe_batch(toy_interventions.ignorer(), batch, EDITORS, seed=0))
    assert len(reads) == len(ignores) == 4
    assert min(r["delta_drop"] for r in reads) > 0.5
    assert min(r["corrected_drop"] for r in reads) > 0.5
    assert max(abs(r["delta_drop"]) for r in ignores) < 1e-6  # the removal never touches its window
    assert all(r["target"] == 1.0 for r in reads)


def test_probe_values_are_the_model_outputs_on_the_edited_images() -> None:
    batch = _batch([1, 2, 3])
    bundle = toy_interventions.reader()
    rows = probe_batch(bundle, batch, EDITORS, seed=3)
    for i in (0, 2):
        g = generator_from_seed(0)  # removal and lesion-only draw nothing: any generator gives the same edit
        one = batch.select([i])
        removed = EDITORS.removed.apply(one, [EDITORS.removed.sample_params(one.case_info(0), g, 1.0)])
        only = EDITORS.only.apply(one, [EDITORS.only.sample_params(one.case_info(0), g, 1.0)])
        p_rm = bundle.probabilities(bundle.logits(removed.image))[0, 1].item()
        p_only = bundle.probabilities(bundle.logits(only.image))[0, 1].item()
        r = rows[i][1]
        assert r["p_removed"] == pytest.approx(p_rm, abs=1e-6) and r["delta_focus"] == pytest.approx(p_only, abs=1e-6)
        assert r["delta_drop"] == pytest.approx(r["p_orig"] - r["p_removed"])
        assert r["control_drop"] == pytest.approx(r["p_orig"] - r["p_control"])
        assert r["corrected_drop"] == pytest.approx(r["p_control"] - r["p_removed"])
        assert r["edited_voxels"] == 60 and r["edited_size"] == pytest.approx(60.0)  # 6x6 lesion + 1 mm ball: 36 + 4*6
    healthy = rows[1]  # case 2 has no lesion: explicit status, no NaN anywhere
    assert all(r["status"] == "no_lesion" and r["p_removed"] is None and r["delta_drop"] is None for r in healthy)
    assert all(isinstance(r["p_orig"], float) and math.isfinite(r["p_orig"]) for r in healthy)


def test_probe_rows_do_not_depend_on_the_batch_and_repeat_exactly() -> None:
    bundle = toy_interventions.reader()
    together = probe_batch(bundle, _batch([1, 2, 3, 5]), EDITORS, seed=11)
    alone = [probe_batch(bundle, _batch([i]), EDITORS, seed=11)[0] for i in (1, 2, 3, 5)]
    assert together == probe_batch(bundle, _batch([1, 2, 3, 5]), EDITORS, seed=11)
    for a, b in zip(together, alone):
        for ra, rb in zip(a, b):
            assert ra["control_seed"] == rb["control_seed"] and ra["status"] == rb["status"]
            for key in ("p_orig", "p_removed", "p_only", "p_control"):
                assert ra[key] == pytest.approx(rb[key], abs=1e-6)


def test_segmentation_readout_is_the_mean_lesion_probability_over_the_edited_region() -> None:
    rows = probe_batch(toy_interventions.segmenter(), _batch([1, 3]), EDITORS, seed=0)
    for case in rows:
        (r,) = case
        assert r["class"] == "lesion" and r["target"] == 1.0
        assert r["p_orig"] > 0.4 and r["p_removed"] < 0.05 and r["delta_drop"] > 0.4


def test_summary_means_and_empty_conventions() -> None:
    rows = [
        [{"class": "a", "target": 1.0, "status": "ok", "margin_mm": 1.0, "delta_drop": 0.5, "delta_focus": 0.2,
          "control_drop": 0.1, "corrected_drop": 0.4}],
        [{"class": "a", "target": 0.0, "status": "ok", "margin_mm": 1.0, "delta_drop": -0.1, "delta_focus": 0.6,
          "control_drop": 0.1, "corrected_drop": -0.2}],
        [{"class": "a", "target": 1.0, "status": "no_lesion", "margin_mm": 1.0, "delta_drop": None,
          "delta_focus": None, "control_drop": None, "corrected_drop": None}],
    ]
    s = summarise_probe(rows, ("a", "b"), {"removed": "x"})
    assert s["n_cases"] == 3 and s["n_by_status"] == {"ok": 2, "no_lesion": 1, "no_control_region": 0}
    assert s["per_class"]["a"]["all"]["delta_drop_mean"] == pytest.approx(0.2)
    assert s["per_class"]["a"]["all"]["share_positive_corrected_drop"] == pytest.approx(0.5)
    assert s["true_class"]["delta_drop_mean"] == pytest.approx(0.5) and s["true_class"]["n"] == 1
    assert s["per_class"]["b"]["all"] == {"n": 0, "delta_drop_mean": None, "delta_focus_mean": None,
                                         "control_drop_mean": None, "corrected_drop_mean": None,
                                         "share_positive_corrected_drop": None}
    json.dumps(s, allow_nan=False)  # no NaN anywhere
    assert list(split_probe([{"exam_id": "e", "probe": rows[0]}])) == [{"exam_id": "e"}]


def test_find_probe_editors_needs_all_three_roles() -> None:
    import types

    import toy_plugin

    host = PluginHost(autoload=False, modules={"toy": toy_plugin, "iv": toy_interventions}).load()
    found = find_probe_editors(host, "toy")
    assert found.ids() == {"removed": "toy.lesion_removed", "only": "toy.lesion_only", "control": "toy.healthy_control"}
    assert found.margin_mm == 1.0
    bare = PluginHost(autoload=False, modules={"toy": toy_plugin, "none": types.ModuleType("none")}).load()
    with pytest.raises(ProbeUnavailable, match="removed"):
        find_probe_editors(bare, "toy")


def test_probe_takes_the_region_from_the_original_and_the_removed_truth_from_the_removal() -> None:
    batch = _batch([1, 2, 3])
    rows = probe_batch(toy_interventions.reader(), batch, EDITORS, seed=0)
    assert [r["target_removed"] for r in rows[0]] == [1.0, 0.0]  # toy: the removal declares "absent"
    assert all(r["target_removed"] is None for r in rows[1])  # no lesion: nothing removed
    seg = probe_batch(toy_interventions.segmenter(), batch, EDITORS, seed=0)
    assert seg[0][0]["target"] == 1.0 and seg[0][0]["target_removed"] == 0.0  # the removed mask is empty
    assert seg[0][0]["edited_voxels"] == 60  # the region is the original's lesion (the removed mask has none)


class Relabels(toy_interventions.ToyHealthyControl):
    """A control that (wrongly, for the probe) declares it changes the label."""

    preserves = frozenset({"mask"})
    changes = frozenset({"label"})


def test_find_probe_editors_refuses_a_control_that_changes_the_label() -> None:
    import types

    import toy_plugin

    from c3_core.plugins.markers import hookimpl

    module = types.ModuleType("relabelling_control")

    @hookimpl
    def c3_register_editors(registry):  # noqa: ANN001, ANN202
        registry.add("toy.lesion_removed", "toy_interventions:ToyLesionRemoved", "removed")
        registry.add("toy.lesion_only", "toy_interventions:ToyLesionOnly", "only")
        registry.add("toy.healthy_control", "test_probe:Relabels", "control")

    module.c3_register_editors = c3_register_editors  # type: ignore[attr-defined]
    host = PluginHost(autoload=False, modules={"toy": toy_plugin, "relabel": module}).load()
    with pytest.raises(ProbeUnavailable, match="changes the label"):
        find_probe_editors(host, "toy")


# -- the gate's effect ------------------------------------------------------------------------------
def test_gate_effect_counts_caught_planted_edits_and_wrongly_rejected_admissible_ones() -> None:
    planted = GateDecision(torch.tensor([[False], [True], [False]]), (("shift",), (None,), ("shift",)), torch.zeros(3, 1))
    admissible = GateDecision(torch.tensor([[True, False], [True, True], [True, True]]), ((None, "x"), (None, None), (None, None)), torch.zeros(3, 2))
    e = gate_effect(planted, torch.tensor([[True], [True], [False]]), admissible)
    assert e == GateEffect(planted=2, planted_rejected=1, admissible=6, admissible_rejected=1)
    assert e.share_planted_rejected == 0.5 and e.share_admissible_rejected == pytest.approx(1 / 6)
    assert GateEffect(0, 0, 0, 0).to_dict()["share_planted_rejected"] is None


def test_the_gate_rejects_planted_lesion_removals_and_admits_mild_noise() -> None:
    import toy_plugin

    batch = _batch([1, 2, 3, 5, 7])
    teacher = toy_interventions.reader()
    noise = toy_plugin.ToyNoise()
    g = generator_from_seed(0)
    params = [noise.sample_params(batch.repeat_interleave(2).case_info(i), g, 0.01) for i in range(batch.size * 2)]
    admissible = noise.apply(batch.repeat_interleave(2), params)
    removal = EDITORS.removed
    rp = [removal.sample_params(batch.case_info(i), g, 1.0) for i in range(batch.size)]
    planted = removal.apply(batch, rp)
    valid = torch.tensor([r is None for r in removal.check(batch, planted, rp)])
    e = measure_batch("multiclass", batch, admissible, [[None, None]] * batch.size, planted, valid,
                      GateSettings(delta=0.2), teacher, teacher.class_names)
    assert e.planted == 4 and e.share_planted_rejected == 1.0
    assert e.admissible == 10 and e.share_admissible_rejected == 0.0


# -- c3 evaluate --probe causal --------------------------------------------------------------------
MODULE = '''
from toy_plugin import c3_register_operators  # noqa: F401
from toy_interventions import c3_register_editors  # noqa: F401
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_interventions:make_dataset", "toy demo", task="multiclass", demo=True,
                 default_model="toy.reader", default_neighbourhood=NEIGHBOURHOOD)

@hookimpl
def c3_register_models(registry):
    registry.add("toy.reader", "toy_interventions:reader", "reads the lesion", task="multiclass")
'''


@pytest.fixture()
def probe_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    spec = root / "toy.toml"
    spec.write_text('k = 2\nseed = 3\n[[members]]\nop = "toy.noise"\nseverity = [0.01, 0.02]\n')
    write_dist(root, "c3-toyprobe", "c3_toy_probe_entry", f"NEIGHBOURHOOD = {str(spec)!r}\n" + MODULE)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("C3_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("C3_PLUGINS", "c3-toyprobe")
    monkeypatch.setenv("TOY_N", "6")
    return tmp_path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_evaluate_probe_causal_writes_probe_csv_and_summary(probe_site: Path) -> None:
    runner = CliRunner()
    out = probe_site / "out"
    result = runner.invoke(app, ["evaluate", "--quiet", "--probe", "causal", "--out", str(out), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    rows = _rows(out / "toy" / "probe.csv")
    assert len(rows) == 6 * 2  # per case and class
    present = [r for r in rows if r["class"] == "present" and r["status"] == "ok"]
    assert len(present) == 3 and all(float(r["delta_drop"]) > 0.5 for r in present)
    assert {r["status"] for r in rows} == {"ok", "no_lesion"}
    assert all(r["delta_drop"] == "" for r in rows if r["status"] == "no_lesion")
    assert "probe" not in _rows(out / "toy" / "cases.csv")[0]
    summary = json.loads((out / "toy" / "summary.json").read_text())["probe"]
    assert summary["n_by_status"]["ok"] == 3 and summary["true_class"]["delta_drop_mean"] > 0.5
    plain = probe_site / "plain"
    assert runner.invoke(app, ["evaluate", "--quiet", "--out", str(plain), "--batch-size", "4"]).exit_code == 0
    assert not (plain / "toy" / "probe.csv").exists()
    assert (plain / "toy" / "cases.csv").read_bytes() == (out / "toy" / "cases.csv").read_bytes()
    bad = runner.invoke(app, ["evaluate", "--quiet", "--probe", "gradcam", "--out", str(probe_site / "bad")])
    assert bad.exit_code == 2 and "--probe must be 'causal'" in bad.output
    assert not (probe_site / "bad").exists()
