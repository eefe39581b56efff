"""CXR concept editors: insertion/deletion move the reference model's finding probability, anatomy
is kept (segmentor IoU >= tau), nothing changes outside the region, same seed -> same bytes.

The concept model and the demo CNN are trained on first use and cached (see c3_core.cache).
"""

from __future__ import annotations

import pytest
import torch

from c3_core.batch import Batch, collate
from c3_core.model import WeightsError
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec
from c3_core.testing import editor_checks, parametrize_with_checks
from c3_cxr.data.demo import ChestDemo
from c3_cxr.editors import concepts
from c3_cxr.editors.concepts import (
    CONCEPTS,
    EDITORS,
    DeleteEffusion,
    InsertCardiomegaly,
    InsertEdema,
    InsertEffusion,
    intervened_labels,
    load_cxr_concept_model,
)

ALPHA = 2.0  # latent standard deviations
TAU = 0.8


def _two_cases() -> Batch:
    ds = ChestDemo("test", n=2)
    return collate([ds[0], ds[1]])


def _make(op_id: str, options: dict) -> object:
    """Operator factory for a neighbourhood of the concept editors only."""
    return next(cls for cls in EDITORS if cls.id == op_id)(**options)


@parametrize_with_checks(editor_checks(EDITORS, batch=_two_cases))  # the concept model is trained on first use and cached
def test_concept_editors_conform(check) -> None:  # noqa: ANN001
    check()


@pytest.fixture(scope="module")
def cohort() -> Batch:
    """72 held-out demo cases (the test split, never seen by the concept model)."""
    ds = ChestDemo("test", n=72)
    return collate([ds[i] for i in range(len(ds))])


@pytest.fixture(scope="module")
def classifier():  # noqa: ANN201
    from c3_cxr.models import demo_cnn

    return demo_cnn(weights="demo")


def _edit(editor_cls, batch: Batch, alpha: float = ALPHA, seed: int = 0):  # noqa: ANN001, ANN202
    ed = editor_cls(tau=TAU)
    g = torch.Generator().manual_seed(seed)
    params = [ed.sample_params(batch.case_info(i), g, alpha) for i in range(batch.size)]
    out = ed.apply(batch, params)
    return ed, out, ed.check(batch, out, params)


@pytest.mark.parametrize("editor_cls", [e for e in EDITORS if e.sign > 0], ids=lambda e: e.id)
def test_insertion_raises_the_finding_probability_with_anatomy_kept(editor_cls, cohort, classifier) -> None:  # noqa: ANN001
    col = next(c.label_index for c in CONCEPTS if c.name == editor_cls.concept)
    batch = cohort.select(torch.nonzero(cohort.label[:, col] < 0.5).flatten()[:24])
    ed, out, reasons = _edit(editor_cls, batch)
    admitted = torch.tensor([r is None for r in reasons])
    ious = ed.anatomy_iou(batch, out)
    worst = torch.stack(list(ious.values())).amin(0)
    assert torch.equal(admitted, worst >= TAU)  # every rejection is an anatomy rejection here
    assert float(admitted.float().mean()) >= 0.4, reasons
    p0 = torch.sigmoid(classifier.logits(batch.image))[:, col]
    p1 = torch.sigmoid(classifier.logits(out.image))[:, col]
    rise = (p1 - p0)[admitted]
    assert float(rise.mean()) > 0.01 and float((rise > 0).float().mean()) >= 0.6


@pytest.mark.parametrize("editor_cls", [e for e in EDITORS if e.sign < 0 and e.concept != "Consolidation"], ids=lambda e: e.id)
def test_deletion_lowers_the_finding_probability(editor_cls, cohort, classifier) -> None:  # noqa: ANN001
    col = next(c.label_index for c in CONCEPTS if c.name == editor_cls.concept)
    batch = cohort.select(torch.nonzero(cohort.label[:, col] > 0.5).flatten()[:16])
    _, out, _ = _edit(editor_cls, batch)
    drop = torch.sigmoid(classifier.logits(out.image))[:, col] - torch.sigmoid(classifier.logits(batch.image))[:, col]
    assert float(drop.mean()) < 0 and float((drop < 0).float().mean()) >= 0.6


def test_severity_response_is_monotone_on_average(cohort, classifier) -> None:  # noqa: ANN001
    batch = cohort.select(torch.nonzero(cohort.label[:, 3] < 0.5).flatten()[:12])
    means = []
    for alpha in (0.0, 1.0, 2.0, 3.0):
        _, out, _ = _edit(InsertEdema, batch, alpha)
        means.append(float(torch.sigmoid(classifier.logits(out.image))[:, 3].mean()))
    assert means == sorted(means) and means[-1] > means[0] + 0.1


def test_nothing_changes_outside_the_region_and_the_change_is_local(cohort) -> None:  # noqa: ANN001
    batch = cohort.select(list(range(8)))
    ed, out, _ = _edit(InsertCardiomegaly, batch, 4.0)
    assert float(ed.outside_change(batch, out).max()) == 0.0
    changed = (out.image != batch.image).float().flatten(1).mean(1)
    assert float(changed.min()) > 0.01 and float(changed.max()) < 0.6  # around the heart only
    assert torch.equal(out.image[..., :8, :], batch.image[..., :8, :])  # the neck and shoulders
    assert float(out.image.min()) >= 0.0  # still a line integral


def test_same_seed_same_bytes_and_provenance(cohort) -> None:  # noqa: ANN001
    spec = NeighbourhoodSpec.from_dict({
        "k": 2, "seed": 5,
        "members": [{"op": "cxr.insert_effusion", "severity": [1.0, 3.0]}, {"op": "cxr.delete_edema", "levels": [2.0]}],
    })  # fmt: skip
    batch = cohort.select([0, 1, 2])
    a, plans, _ = Neighbourhood(spec, _make).draw(batch)
    b, _, _ = Neighbourhood(spec, _make).draw(batch)
    c, _, _ = Neighbourhood(spec.with_overrides(seed=6), _make).draw(batch)
    assert torch.equal(a.image, b.image) and not torch.equal(a.image, c.image)
    step = plans[0][0].provenance().to_dict()["steps"][0]
    assert step["op_id"] in {"cxr.insert_effusion", "cxr.delete_edema"} and set(step["params"]) == {"alpha", "jitter", "noise_seed"}


def test_intervened_labels_set_only_the_edited_finding() -> None:
    labels = torch.tensor([[0.0, 1.0, float("nan"), 0.0, 0.0], [1.0, 0.0, 1.0, 1.0, 1.0]])
    ins = intervened_labels(labels, InsertEffusion)
    dele = intervened_labels(labels, DeleteEffusion)
    assert ins[:, 4].tolist() == [1.0, 1.0] and dele[:, 4].tolist() == [0.0, 0.0]
    assert torch.equal(ins[:, :4].nan_to_num(-1), labels[:, :4].nan_to_num(-1))


def test_unreadable_cached_model_is_reported_with_its_path(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("C3_CACHE_DIR", str(tmp_path))
    bad = tmp_path / "weights" / f"{concepts.WEIGHTS}.safetensors"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="c3_cxr-concepts-v1.safetensors: cannot read"):
        load_cxr_concept_model()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(cohort) -> None:  # noqa: ANN001
    batch = cohort.select([0, 1, 2, 3])
    ed = InsertEffusion()
    params = [ed.sample_params(batch.case_info(i), torch.Generator().manual_seed(i), 2.0) for i in range(batch.size)]
    cpu = ed.apply(batch, params).image
    gpu = ed.apply(batch.to("cuda"), params).image.cpu()
    torch.testing.assert_close(gpu, cpu, atol=2e-3, rtol=0)
    again = ed.apply(batch.to("cuda"), params).image.cpu()
    assert torch.equal(gpu, again)
