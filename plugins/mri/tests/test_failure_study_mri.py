"""The failure-prediction study's segmentation arm on mri.demo: the declared ensemble members, the
clean prediction carried through a spatial operator, and one small seed pass on two volumes
(the shipped demo model and teacher; nothing is trained)."""

from __future__ import annotations

import json

import pytest
import torch

from c3_core.batch import collate
from c3_core.experiments.failure_cases import FailureInputs
from c3_core.experiments.failure_segmentation import _carrier, compute_segmentation_tables
from c3_core.experiments.failure_signals import SEGMENTATION
from c3_core.experiments.failure_study import StudyConfig, resolve_modality
from c3_core.experiments.generic_neighbourhood import GenericNeighbourhood
from c3_core.metrics import margins as S
from c3_core.neighbourhood import MemberSpec, Neighbourhood, NeighbourhoodSpec, StepSpec
from c3_core.plugins.host import PluginHost


@pytest.fixture(scope="module")
def study():  # noqa: ANN201
    host = PluginHost().load()
    config = StudyConfig(seeds=(0,), k=2, k_generic=1, tta_views=2, members=1, n_volumes=2, n_boot=10)
    return resolve_modality(host, "mri", config)


def test_the_ensemble_members_are_declared_and_seed_0_is_the_shipped_demo_model(study) -> None:  # noqa: ANN001
    from c3_mri.experiment import EXPERIMENT
    from c3_mri.models import unet3d

    assert EXPERIMENT.members == "c3_mri.members:demo_member"
    assert len(study.cases) == 2 and EXPERIMENT.in_domain_split == "val"
    member = study.member(0)
    shipped = unet3d(weights="demo")
    assert member.task == "segmentation"
    for (name, a), (_n, b) in zip(member.network.state_dict().items(), shipped.network.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_clean_prediction_moves_with_a_spatial_counterfactual(study) -> None:  # noqa: ANN001
    batch = collate(study.cases[:1])
    pred = batch.mask[:, :1] >= 0.5  # any mask will do: use the ground truth as the "prediction"
    spec = NeighbourhoodSpec((MemberSpec((StepSpec("mri.b0_distortion", levels=(100.0,)),)),), k=1, seed=0)
    nb = Neighbourhood(spec, study.make_operator)
    cf, _plans, _rej = nb.draw(_carrier(batch, pred))
    alone, _p, _r = nb.draw(batch)
    assert cf.mask.shape[1] == 2
    assert torch.equal(cf.mask[:, :1], alone.mask[:, :1])  # each channel is warped on its own
    assert torch.equal(cf.mask[:, 1:2], cf.mask[:, :1])  # so the carried prediction moves exactly like the truth
    assert not torch.equal(cf.mask[:, :1] >= 0.5, batch.mask[:, :1] >= 0.5)  # and 100 Hz does move it


def test_one_seed_pass_on_two_volumes(study) -> None:  # noqa: ANN001
    model = study.member(0)
    spec = NeighbourhoodSpec((MemberSpec((StepSpec("mri.bias_field", levels=(0.03, 0.1)),)),
                              MemberSpec((StepSpec("mri.b0_distortion", levels=(50.0, 100.0)),))), k=2, seed=0)
    generic = GenericNeighbourhood.matched(collate(study.cases).image, 0.03, k=1, seed=0)
    inputs = FailureInputs(model, [model], study.teacher, study.gate, spec, study.make_operator, study.shifts, generic, 0, 2)
    t = compute_segmentation_tables(study.cases, inputs, batch_size=50)
    names = {f"{s}|all" for s in SEGMENTATION.c3} | set(SEGMENTATION.alternatives)
    assert names <= set(t.signals)
    for name, v in t.signals.items():
        assert v.shape == (2,) and bool(torch.isfinite(v).all()), name
    assert bool(((t.signals["c3_consistency|all"] >= 0) & (t.signals["c3_consistency|all"] <= 1)).all())
    assert bool((t.signals["c3_changes|all"] <= t.signals["n_admitted|all"]).all())
    assert bool((t.signals["n_admitted|all"] <= 2).all())
    assert torch.equal(t.signals["ensemble_disagreement"], torch.zeros(2, dtype=torch.float64))  # one member
    assert 0.3 < float(t.signals["lesion_dice"].mean()) <= 1  # the demo model finds the lesions
    for h in study.shifts:
        f = t.failures[h.name]
        assert torch.equal(f["flip"], S.dice_drop_failure(t.signals["lesion_dice"], f["dice"]))
        assert torch.allclose(f["wrong"], 1 - f["dice"])
        assert bool((t.signals[f"n_admitted|{h.name}"] <= t.signals["n_admitted|all"]).all())
        assert f"c3_consistency|{h.name}" in t.signals and f"severity_margin|{h.name}" in t.signals



def test_end_to_end_on_two_volumes_writes_the_mri_section_and_resumes(tmp_path) -> None:  # noqa: ANN001
    """run_modality on the demo declarations (default neighbourhood at K = 2, one member), the
    report's MRI section, and a second run that reuses the seed's checkpoint."""
    from c3_core.experiments.failure_report import render
    from c3_core.experiments.failure_study import run_modality, verdict_test

    host = PluginHost().load()
    config = StudyConfig(seeds=(0,), k=2, k_generic=1, tta_views=2, members=1, n_volumes=3, n_boot=20)
    said: list[str] = []
    r = run_modality(host, "mri", config, said.append, None, tmp_path)
    assert r["task"] == "segmentation" and r["n_cases"] == 3 and "n_volumes" in r["config"]
    sh = next(iter(r["shifts"].values()))
    assert sh["flip"]["n_units"] == 3 and set(SEGMENTATION.alternatives) <= set(sh["flip"]["signals"])
    assert sh["wrong"]["failure_rate"] > 0  # the mean risk 1 - Dice under shift
    assert len(sh["dice_per_seed"]) == 1 and r["generic"]["0"]["kinds"] == ["gaussian_noise", "gaussian_blur", "contrast"]
    beside = verdict_test([r], ["mri"])
    assert beside["rows"] and beside["rows"][0]["verdict"] == "c3_consistency"
    facts = {"command": "c3 experiment --study failure -m mri", "hardware": {"cpu": "x", "usable_cores": 1, "torch": "t",
             "torch_threads": 1, "device": "cpu"}, "seconds": r["seconds"], "config": r["config"],
             "verdict_test": verdict_test([r], []), "beside": beside}
    text = render("# intro", facts, [r], tmp_path)
    assert "## mri" in text and "1 − lesion Dice under shift" in text and "Reported beside the criterion" in text
    assert "No 2-D modality in this run" in text and "delta =" not in text
    again: list[str] = []
    r2 = run_modality(host, "mri", config, again.append, None, tmp_path)
    assert any("reusing failure-mri-seed0.safetensors" in line for line in again)
    assert json.dumps(r2["shifts"], sort_keys=True) == json.dumps(r["shifts"], sort_keys=True)  # NaN-safe
