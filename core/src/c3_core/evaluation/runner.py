"""Evaluate one modality: stream its cohort, draw and gate neighbourhoods, score, commit, summarise.

The three stages are separate so that a run can be validated before anything is written
(:func:`prepare_modality`), sharded and resumed (:func:`run_modality` evaluates whatever this
process's shard still lacks in the store) and summarised once from the merged per-case table
(:func:`finish_modality`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from c3_core.batch import Batch, Sample, check_finite, collate
from c3_core.evaluation.collection import fewer_collections
from c3_core.evaluation.output import write_csv_stream, write_json
from c3_core.evaluation.records import ModalityRun
from c3_core.evaluation.scoring import GateSettings, score_batch
from c3_core.evaluation.store import CaseResult, ResultStore
from c3_core.evaluation.summary import segmentation_case_metrics, summarise
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec, NeighbourhoodSpecError, operators_record
from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import Contribution
from c3_core.resolve import InputError as EvaluationInputError
from c3_core.resolve import (  # re-exported: these lived here before the resolve service existed
    build_dataset,
    check_counterfactual_budget,
    load_spec,
    resolve_dataset,
    resolve_model,
    resolve_resource,
)
from c3_core.streams import STREAM_VERSION

Progress = Callable[[int, int], None]


@dataclass
class PreparedModality:
    """Everything one modality's evaluation needs, validated before anything is written."""

    modality: str
    dataset_id: str
    dataset: Dataset
    n: int
    spec: NeighbourhoodSpec
    neighbourhood: Neighbourhood
    bundle: ModelBundle
    model_id: str
    teacher: ModelBundle | None
    teacher_id: str | None
    probe: Any = None  # c3_core.evaluation.probe.ProbeEditors when --probe causal can run
    probe_note: str | None = None  # why --probe causal cannot run for this modality
    gate: GateSettings | None = None  # this modality's thresholds (None: the run's --gate or defaults)
    gate_source: str | None = None  # where they come from: a --gate file, the dataset's default_gate, defaults
    gate_calibration: dict[str, Any] | None = None  # the gate file's record (anchors, planted edits rejected)
    gate_warning: str | None = None  # why this modality's gate is weaker than it should be (said loudly)
    pseudonymise: Callable[[str], str] | None = None  # stable id -> written pseudonym (set before running)

    def written_id(self, exam_id: str) -> str:
        """The name an exam gets in every file: its keyed pseudonym."""
        if self.pseudonymise is None:
            raise RuntimeError("no pseudonymiser set: exam ids must not be written as they are")
        return self.pseudonymise(exam_id)

    def case_ref(self, idx: int) -> dict[str, Any]:
        """What a failure row may say about case ``idx`` without reading it: the source row
        (where the dataset numbers its rows) and the pseudonym of its stable id."""
        ref = getattr(self.dataset, "case_ref", None)
        if ref is None:
            return {}
        try:
            row, stable = ref(idx)
        except Exception:  # noqa: BLE001 - a dataset that cannot say: the index alone
            return {}
        return {"row": row, "exam_id": self.written_id(str(stable))}

    @property
    def gated_by(self) -> str:
        if self.teacher is not None:
            g = self.gate or GateSettings()
            value = f"τ = {g.tau:g}" if self.bundle.task == "segmentation" else f"δ = {g.delta:g}"
            return f"teacher {self.teacher_id} ({value}, {self.gate_source or 'default thresholds'}) + operator checks"
        return "operator checks only (no teacher model)"

    def gate_record(self) -> dict[str, Any]:
        """What summary.json says about this modality's gate: thresholds, their source, the
        teacher, the calibration record of the gate file and any warning."""
        g = self.gate or GateSettings()
        record = {"teacher": self.teacher_id, "thresholds": g.to_dict(), "source": self.gate_source,
                  "calibration": self.gate_calibration, "warning": self.gate_warning}
        return {k: v for k, v in record.items() if v is not None}  # absent, not null: none of these is a metric

    def fingerprint(self) -> dict[str, Any]:
        """What the results depend on (``--resume`` must see the same)."""
        return {
            "dataset": self.dataset_id,
            "n": self.n,
            "model": self.model_id,
            "teacher": self.teacher_id,
            **({"gate": self.gate.to_dict()} if self.gate is not None else {}),
            "spec": self.spec.to_dict(),
            **operators_record(self.neighbourhood.drawn_operators()),
            "streams": STREAM_VERSION,  # how plans are drawn: a resume must not mix two
            **({"probe": self.probe.ids() if self.probe is not None else self.probe_note}
               if self.probe is not None or self.probe_note else {}),
        }


class RunAborted(RuntimeError):
    """The run stopped on purpose (too many failed cases); what was committed stays."""


def prepare_modality(
    host: PluginHost,
    modality: str,
    *,
    data: str | None = None,
    model: str | None = None,
    teacher: str | None = None,
    neighbourhood: str | None = None,
    k: int | None = None,
    seed: int | None = None,
    device: str = "cpu",
    limit: int | None = None,
    probe: str | None = None,
    data_options: Mapping[str, Any] | None = None,
    model_options: Mapping[str, Any] | None = None,
    max_counterfactuals: int | None = None,
    gate_file: str | None = None,
) -> PreparedModality:
    """Resolve and check dataset, neighbourhood, models and the gate; raises :class:`EvaluationInputError`.

    The gate's teacher is ``teacher``, else the dataset's ``default_teacher`` (first-party plugins
    declare one for their demo cohort only); its thresholds come from ``gate_file``, else (with the
    default teacher) the dataset's ``default_gate``, else the uncalibrated defaults. A cohort
    without a teacher runs with operator checks only and ``gate_warning`` says so."""
    dataset_c, source = resolve_dataset(host, modality, data)
    spec = load_spec(dataset_c, neighbourhood, k, seed)
    try:
        nb = Neighbourhood(spec, host.make_operator)
    except NeighbourhoodSpecError as exc:
        raise EvaluationInputError(str(exc)) from None
    for op in nb.operators():
        if op.modality != modality:
            raise EvaluationInputError(f"{spec.source}: operator {op.id} is for {op.modality}, not {modality}")
    dataset = build_dataset(dataset_c, source, "test", data_options)  # validates every row before a model loads
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise EvaluationInputError(f"dataset {dataset_c.id} yielded no cases")
    check_counterfactual_budget(n, spec.k, max_counterfactuals, modality)
    bundle, model_id = resolve_model(host, modality, dataset_c, model, device, model_options)
    teacher_bundle = None
    teacher_id = teacher or dataset_c.meta.get("default_teacher")
    if teacher_id:
        teacher_bundle, teacher_id = resolve_model(host, modality, dataset_c, teacher_id, device, role="--teacher")
    prepared = PreparedModality(
        modality, dataset_c.id, dataset, n, spec, nb, bundle, model_id, teacher_bundle, teacher_id
    )
    _resolve_gate(prepared, dataset_c, gate_file)
    _check_first_case(prepared)
    if probe is not None:
        _prepare_probe(host, prepared, probe)
    return prepared


def read_gate_file(ref: str) -> tuple[GateSettings, dict[str, Any]]:
    """Thresholds and the calibration record (everything but the thresholds) of a gate JSON:
    a file path or ``"package:relative/path.json"`` (package data)."""
    import json

    path = resolve_resource(ref)
    settings = GateSettings.from_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    return settings, {k: v for k, v in data.items() if k not in ("delta", "tau", "threshold")}


def weights_sha256(bundle: ModelBundle) -> str:
    """sha256 of the network's state as safetensors bytes (equal to the sha256 of the
    ``.safetensors`` file the weights cache keeps for it)."""
    import hashlib

    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in bundle.network.state_dict().items()}
    return hashlib.sha256(save(state)).hexdigest()


def _resolve_gate(p: PreparedModality, dataset: Contribution, gate_file: str | None) -> None:
    """Set the modality's thresholds, their source and, where the gate is weaker than it should
    be, the warning the console and the report show."""
    default_gate = dataset.meta.get("default_gate")
    default_teacher = p.teacher is not None and p.teacher_id == dataset.meta.get("default_teacher")
    try:
        if gate_file is not None:
            p.gate, p.gate_calibration = read_gate_file(gate_file)
            p.gate_source = f"--gate {Path(gate_file).name}"
        elif default_teacher and default_gate:
            p.gate, p.gate_calibration = read_gate_file(default_gate)
            p.gate_source = str(default_gate)
    except ValueError as exc:
        raise EvaluationInputError(str(exc)) from None
    calibrated_for = (p.gate_calibration or {}).get("teacher")
    if p.teacher is None:
        p.gate_warning = (
            f"operator checks only: no teacher model gates {p.dataset_id} "
            + ("(its plugin declares none)" if dataset.meta.get("demo") else
               "(a plugin's demo teacher was trained on phantoms and judges only its demo cohort)")
            + ", so label-changing counterfactuals are not screened out and "
            "count in the flip rate and utility. Gate it with --teacher MODEL (an independent model, not the one "
            "evaluated) and --gate gate.json from `c3 gate calibrate ANCHORS.csv --out gate.json`"
            + (" (--gate alone sets thresholds for a teacher that is not there)" if gate_file else "")
        )
    elif p.teacher_id == p.model_id:
        p.gate_warning = (f"the teacher is the evaluated model {p.model_id}: it gates itself and hides its own "
                          "fragility; pass an independent --teacher")
    elif p.gate is None:
        p.gate_warning = (f"teacher {p.teacher_id} gates with uncalibrated default thresholds; set them from audited "
                          "anchors with `c3 gate calibrate ANCHORS.csv --out gate.json` and pass --gate gate.json")
    elif calibrated_for and calibrated_for != p.teacher_id:
        p.gate_warning = f"the gate thresholds were calibrated for teacher {calibrated_for}, not {p.teacher_id}"
    elif (p.gate_calibration or {}).get("teacher_weights_sha256") not in (None, weights_sha256(p.teacher)):
        p.gate_warning = (f"teacher {p.teacher_id}'s weights differ from those its thresholds were calibrated with "
                          f"(retrained elsewhere?); recalibrate with the gate file's command: "
                          f"{(p.gate_calibration or {}).get('command', 'c3 gate calibrate')}")


def _prepare_probe(host: PluginHost, p: PreparedModality, probe: str) -> None:
    """Attach the causal probe's editors, or a note saying why this modality cannot have it."""
    from c3_core.evaluation.probe import ProbeUnavailable, find_probe_editors

    if probe != "causal":
        raise EvaluationInputError(f"--probe {probe!r}: the only probe is 'causal'")
    try:
        p.probe = find_probe_editors(host, p.modality)
        for i in range(min(p.n, 8)):  # the first readable case must fit the editors (a lesion mask)
            try:
                sample = p.dataset[i]
            except Exception:  # noqa: BLE001 - an unreadable case is the loop's business
                continue
            p.probe.removed.check_input(collate([sample]))
            break
    except ProbeUnavailable as exc:
        p.probe_note = str(exc)
    except ValueError as exc:  # e.g. the data has no lesion mask
        p.probe, p.probe_note = None, f"--probe causal: {exc}"


def _check_first_case(p: PreparedModality) -> None:
    """The neighbourhood and model must fit the data (checked on the first readable case)."""
    for i in range(min(p.n, 8)):
        try:
            sample = p.dataset[i]
        except Exception:  # noqa: BLE001 - an unreadable case is the loop's business, not a usage error
            continue
        batch = collate([sample])
        try:
            p.neighbourhood.check_compatible(batch)
        except ValueError as exc:
            raise EvaluationInputError(f"{p.spec.source}: {exc}") from None
        if batch.domain != p.bundle.input_domain:
            raise EvaluationInputError(
                f"model {p.model_id} takes {p.bundle.input_domain.value} images; "
                f"dataset {p.dataset_id} gives {batch.domain.value}"
            )
        return


class _GuardedCases(Dataset):
    """Items ``(index, sample | None, failure reason | None)``: a case that cannot be read or
    holds non-finite values becomes a recorded failure instead of stopping the run."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[int, Sample | None, str | None]:
        idx = self.indices[j]
        try:
            sample = self.dataset[idx]
        except Exception as exc:  # noqa: BLE001 - recorded with its reason
            return idx, None, f"{type(exc).__name__}: {exc}"
        return idx, sample, None


def _collate_guarded(items: Sequence[tuple[int, Sample | None, str | None]]) -> tuple[list[int], Batch | None, list[tuple[int, str]]]:
    """The batch of the readable, finite cases, their indices, and (index, reason) of the others
    in index order. Finiteness is checked on the whole stack at once; a case with NaN or Inf
    values gets :func:`check_finite`'s message."""
    ok = [(i, s) for i, s, err in items if err is None and s is not None]
    failed = [(i, err) for i, _, err in items if err is not None]
    batch = _collated_when_finite([s for _, s in ok])
    if batch is not None:  # the usual batch: stacked once, checked on the stack
        return [i for i, _ in ok], batch, failed
    finite = _finite_rows([s.image for _, s in ok])
    if not all(finite):
        for (i, s), good in zip(ok, finite):
            if not good:
                try:
                    check_finite(s.image, f"case {i}")
                except ValueError as exc:
                    failed.append((i, f"{type(exc).__name__}: {exc}"))
        ok = [pair for pair, good in zip(ok, finite) if good]
        failed.sort(key=lambda f: f[0])
    return [i for i, _ in ok], collate([s for _, s in ok]) if ok else None, failed


def _collated_when_finite(samples: Sequence[Sample]) -> Batch | None:
    """``collate(samples)`` when the images share a shape and dtype and the stacked image holds
    only finite values (one pass over it); None otherwise (no sample, or :func:`_collate_guarded`
    must look at the images one by one)."""
    if not samples or len({(tuple(s.image.shape), s.image.dtype) for s in samples}) != 1:
        return None
    batch = collate(samples)
    return batch if bool(torch.isfinite(batch.image).all()) else None


def _finite_rows(images: Sequence[torch.Tensor]) -> list[bool]:
    """Whether each image holds only finite values, one by one (the usual batch never gets here:
    :func:`_collated_when_finite` checks it on its stack)."""
    return [bool(torch.isfinite(x).all()) for x in images]


def run_modality(
    p: PreparedModality,
    store: ResultStore,
    *,
    gate: GateSettings,
    device: str = "cpu",
    batch_size: int = 8,
    workers: int = 0,
    rank: int = 0,
    world: int = 1,
    max_failures: int | None = None,
    progress: Progress | None = None,
    on_failure: Callable[[int, str], None] | None = None,
) -> None:
    """Evaluate this process's shard of the cases not yet in ``store``, committing each batch.

    Cases are sharded by index (``index % world == rank``); each batch's neighbourhood is drawn
    and scored as one batched forward of (K+1)·B inputs, then committed in one transaction.
    Rows name exams by their pseudonyms; a failed case's reason is stored without file paths
    (``on_failure`` gets it whole, for the console).
    """
    finished = store.finished_indices(p.modality)
    todo = [i for i in range(p.n) if i % world == rank and i not in finished]
    loader = DataLoader(
        _GuardedCases(p.dataset, todo),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate_guarded,
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=device.startswith("cuda"),
    )
    done = len(finished)
    if progress:
        progress(done, p.n)
    with fewer_collections():
        _evaluate_batches(p, store, loader, gate, device, done, progress, on_failure, max_failures)


def _evaluate_batches(
    p: PreparedModality,
    store: ResultStore,
    loader: DataLoader,
    gate: GateSettings,
    device: str,
    done: int,
    progress: Progress | None,
    on_failure: Callable[[int, str], None] | None,
    max_failures: int | None,
) -> None:
    """:func:`run_modality`'s loop: draw, gate, score and commit each batch of ``loader``."""
    for indices, batch, failed in loader:
        results: list[CaseResult] = []
        if batch is not None:
            batch = batch.to(device)
            written = [p.written_id(e) for e in batch.exam_ids]
            with torch.no_grad():
                stacked, cf, plans, rejections = p.neighbourhood.draw_beside(batch)
                cases, cfs, tensors = score_batch(
                    p.bundle, batch, cf, plans, rejections, gate, p.teacher, written_ids=written, stacked=stacked
                )
                if p.bundle.task == "segmentation":
                    for row, extra in zip(cases, segmentation_case_metrics(tensors["probs"], batch, gate.threshold)):
                        row.update(extra)
                if p.probe is not None:
                    from c3_core.evaluation.probe import PROBE_KEY, probe_batch

                    for row, probe_rows in zip(cases, probe_batch(p.bundle, batch, p.probe, p.spec.seed, written_ids=written)):
                        row[PROBE_KEY] = probe_rows
            k = p.spec.k
            results = [CaseResult(idx, cases[i], cfs[i * k : (i + 1) * k]) for i, idx in enumerate(indices)]
        for idx, reason in failed:
            if on_failure is not None:
                on_failure(idx, reason)
        store.commit_batch(p.modality, results, [(idx, _stored_reason(p, idx, reason)) for idx, reason in failed])
        done += len(indices) + len(failed)
        if progress:
            progress(done, p.n)
        if failed and max_failures is not None and store.n_failures(p.modality) > max_failures:
            raise RunAborted(
                f"{p.modality}: more than --max-failures {max_failures} cases failed "
                f"(last: case {failed[-1][0]}: {failed[-1][1]})"
            )


def _stored_reason(p: PreparedModality, idx: int, reason: str) -> str:
    """A failure reason fit to keep on disk: the case's stable id and every file path removed."""
    from c3_core.pseudonyms import scrub_paths

    ref = getattr(p.dataset, "case_ref", None)
    if ref is not None:
        try:
            _, stable = ref(idx)
            if len(str(stable)) >= 3:
                reason = reason.replace(str(stable), p.written_id(str(stable)))
        except Exception:  # noqa: BLE001 - scrubbing paths below still applies
            pass
    return scrub_paths(reason)


def finish_modality(p: PreparedModality, store: ResultStore, seconds: float) -> ModalityRun:
    """The modality's summary from the committed per-case table (all shards, any resumes),
    streamed from the store; the rows themselves stay there (see :func:`export_modality`)."""
    run = ModalityRun(
        modality=p.modality,
        dataset=p.dataset_id,
        model=p.model_id,
        task=p.bundle.task,
        class_names=tuple(p.bundle.class_names),
        spec=p.spec,
        gated_by=p.gated_by,
        failures=[{"index": f["index"], **p.case_ref(f["index"]), "reason": f["reason"]} for f in store.failures(p.modality)],
    )
    if not store.finished_indices(p.modality) - {f["index"] for f in run.failures}:
        raise RunAborted(f"{p.modality}: no case could be evaluated ({len(run.failures)} failed)")
    run.summary = summarise(
        run, store.iter_cases(p.modality), lambda: store.iter_counterfactual_outcomes(p.modality), seed=p.spec.seed
    )
    run.summary["n_failed"] = len(run.failures)
    run.summary.setdefault("gate", {}).update(p.gate_record())
    if p.probe is not None:
        from c3_core.evaluation.probe import PROBE_KEY, summarise_probe

        cases = (c.get(PROBE_KEY) or [] for c in store.iter_cases(p.modality))
        run.summary["probe"] = summarise_probe(cases, run.class_names, p.probe.ids())
    elif p.probe_note is not None:
        run.summary["probe"] = {"status": "unavailable", "reason": p.probe_note}
    run.seconds = seconds
    return run


def export_modality(run: ModalityRun, store: ResultStore, out: Path) -> None:
    """Write ``<modality>/cases.csv``, ``counterfactuals.csv`` (and ``failures.csv``, and
    ``probe.csv`` with ``--probe causal``) from the store, streamed row by row, then
    ``summary.json``; each file atomically."""
    from c3_core.evaluation.probe import split_probe, write_probe_csv

    m = run.modality
    write_csv_stream(out, f"{m}/cases.csv", split_probe(store.iter_cases(m)))
    if "editors" in run.summary.get("probe", {}):
        write_probe_csv(out, m, store.iter_cases(m))
    write_csv_stream(out, f"{m}/counterfactuals.csv", store.iter_counterfactuals(m))
    if run.failures:
        write_csv_stream(out, f"{m}/failures.csv", run.failures)
    write_json(out, f"{m}/summary.json", run.summary)
