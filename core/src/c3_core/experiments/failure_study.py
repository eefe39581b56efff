"""The failure-prediction study: does a case's C³ verdict, from the clean exam alone, tell which
exams fail when the site really changes?

For each modality the cohort is the demo dataset's in-domain split (``n_test`` cases), the model
is the plugin's seeded demo model (``ExperimentSpec.members``; one study seed = one model seed,
and the deep ensemble is members 0..M-1), the gate is the dataset's independent teacher at its
calibrated thresholds, and the held-out shifts are the ones the plugin declares. Signals and
failures are computed by :mod:`c3_core.experiments.failure_cases`; their AUROC, AUPRC and AURC
are averaged over seeds, with 95 % intervals from resampling exams (the same resample for every
seed and signal, so differences are paired).

**Stated before the first run** (commit of this module): the verdict is ``c3_margin`` -- the
worst decision margin of the exam over its gated default neighbourhood without the held-out
shift's families (negated: higher = more likely to fail). Success: on the held-out shifts of both
2-D modalities, AUROC(verdict) - AUROC(best alternative) has a paired 95 % interval above 0,
where the alternatives are confidence, predictive entropy, TTA variance, ensemble variance and
the same machinery on generic corruptions (the best is the one with the highest point AUROC).

**Segmentation** (MRI; written before its first run): the unit is the volume, the cohort
``n_volumes`` in-domain volumes, and the signals, failures and risk are those of
:mod:`c3_core.experiments.failure_segmentation` (:data:`~c3_core.experiments.failure_signals.SEGMENTATION`):
the verdict ``c3_consistency`` is 1 - the worst Dice between the clean predicted lesion mask and
the prediction on each admitted counterfactual; a volume fails when its lesion Dice drops by
at least 0.1 under the shift; the risk of the AURC is 1 - lesion Dice under shift. The 2-D
criterion is unchanged; the segmentation verdict's difference to its best alternative (among
them the deep ensemble's pairwise Dice, Zenk et al. 2024) is reported beside it (:func:`verdict_test`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from c3_core.experiments.failure_cases import FailureInputs, SeedTables, compute_seed_tables
from c3_core.experiments.failure_segmentation import compute_segmentation_tables
from c3_core.experiments.failure_signals import CLASSIFICATION, SignalSet, for_task
from c3_core.experiments.failure_stats import bootstrap
from c3_core.experiments.generic_neighbourhood import GenericNeighbourhood, mean_display_change
from c3_core.shown_paths import portable_source

# the classification design (CXR, fundus), by its historical names; segmentation: failure_signals.SEGMENTATION
VERDICT = CLASSIFICATION.verdict
ALTERNATIVES = CLASSIFICATION.alternatives
C3_SIGNALS = CLASSIFICATION.c3
SHIPPED = CLASSIFICATION.shipped  # the default neighbourhood, held-out families included
EXPLORATORY = dict(CLASSIFICATION.exploratory)
TASKS = ("multiclass", "multilabel", "segmentation")
VOLUME_ONLY = ("n_volumes",)  # StudyConfig fields that only a segmentation study uses (left out of 2-D records)


class StudyInputError(ValueError):
    """A modality cannot be studied as asked (exit code 2)."""


@dataclass(frozen=True)
class StudyConfig:
    """Sizes of the study (defaults: the issue's minimum of 1,000 exams for a 2-D modality; 120
    volumes for a segmentation one, twice the minimum of 60, because only about one demo volume in
    eight fails under a held-out shift)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    n_test: int = 1000
    k: int = 16
    k_generic: int = 8
    tta_views: int = 8
    members: int = 3
    n_boot: int = 500
    batch_size: int = 50
    device: str = "cpu"
    n_volumes: int = 120  # in-domain volumes of a segmentation modality (n_test counts 2-D exams)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("the study needs at least one seed")
        for name in ("n_test", "k", "k_generic", "tta_views", "members", "n_boot", "batch_size", "n_volumes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"study: {name} must be >= 1, got {getattr(self, name)}")


def config_record(config: StudyConfig, task: str | None) -> dict[str, Any]:
    """The configuration a ``task``'s results depend on (JSON-ready): every field, less the
    segmentation-only ones for a classification task (so 2-D checkpoints made before they existed
    stay valid)."""
    record = asdict(config)
    if task != "segmentation":
        for name in VOLUME_ONLY:
            record.pop(name, None)
    return record


def cohort_size(config: StudyConfig, task: str | None) -> int:
    """How many in-domain cases the study takes: ``n_volumes`` for segmentation, else ``n_test``."""
    return int(config.n_volumes if task == "segmentation" else config.n_test)


@dataclass(frozen=True)
class StudySource:
    """A user's own cohort for the study (every field optional; None: the plugin's demo).

    ``data`` a dataset id or path (with ``data_options``) read at ``split``; ``models`` one or
    more trained models (the first is studied at seed 0, the next at seeds 1, 2 ...; all of them
    form the ensemble); ``teacher`` and ``gate`` the validity gate; ``shifts`` held-out shifts as
    ``"op@severity+op@severity"`` (each in its operator's units); ``neighbourhood`` a spec file.
    """

    data: str | None = None
    split: str = "test"
    data_options: Mapping[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    teacher: str | None = None
    gate: str | None = None
    shifts: tuple[str, ...] = ()
    neighbourhood: str | None = None

    @property
    def is_demo(self) -> bool:
        return self.data is None and not self.models and not self.shifts


@dataclass
class ModalityStudy:
    """Resolved inputs of one modality."""

    modality: str
    dataset_id: str
    model_id: str
    teacher_id: str | None
    gate: Any
    spec: Any
    shifts: Sequence[Any]
    member: Callable[[int], Any]  # seed -> trained ModelBundle
    n_members: int | None  # how many distinct members exist (None: any seed can be trained)
    cases: list[Any]
    make_operator: Callable[..., Any]
    teacher: Any


def parse_shift(modality: str, text: str, make_operator: Callable[..., Any]) -> Any:
    """``"op@sev+op@sev"`` as a held-out shift whose family is its operators; raises StudyInputError."""
    from c3_core.experiment_spec import HeldOutShift, ShiftStep

    steps = []
    for part in text.split("+"):
        op, sep, sev = part.strip().partition("@")
        try:
            value = float(sev)
            make_operator(op).severity.check(value, f"--shift {text}")
        except (ValueError, KeyError, LookupError) as exc:
            raise StudyInputError(f"--shift {text!r}: {part.strip()!r} must be OP@SEVERITY with a registered operator "
                                  f"and a severity in its range ({exc})") from None
        if not sep:
            raise StudyInputError(f"--shift {text!r}: {part.strip()!r} must be OP@SEVERITY")
        steps.append(ShiftStep(op, value))
    ops = tuple(dict.fromkeys(s.op for s in steps))
    return HeldOutShift(modality, text, ops, tuple(steps), "given with --shift")


def _demo_inputs(host: Any, modality: str, config: StudyConfig) -> ModalityStudy:
    from c3_core.experiments.context import declared_experiment, experiment_teacher
    from c3_core.experiments.sizes import Budget
    from c3_core.resolve import InputError, load_spec

    try:
        dataset_c = host.demo_dataset(modality)
        spec = load_spec(dataset_c, None, config.k, None)
    except (LookupError, InputError) as exc:
        raise StudyInputError(str(exc)) from None
    task = dataset_c.meta.get("task")
    _check_task(dataset_c.id, task)
    declared = declared_experiment(host, modality)
    if declared is None or declared.members is None:
        raise StudyInputError(f"{dataset_c.id}: declares no ExperimentSpec with `members` (the seeded demo models)")
    model_id = dataset_c.meta.get("default_model")
    teacher, teacher_id, gate = experiment_teacher(host, dataset_c, model_id, lambda w: None, Budget(), config.device)  # type: ignore[arg-type,return-value]
    n = cohort_size(config, task)
    try:
        base = dataset_c.load()(split=declared.in_domain_split, n=n)
    except TypeError as exc:
        raise StudyInputError(f"{dataset_c.id}: cannot make {n} cases ({exc})") from None
    ref = declared.members
    return ModalityStudy(modality, dataset_c.id, model_id, teacher_id, gate, spec, declared.shifts,
                         lambda seed: _member(ref, seed, config.device), None, [base[i] for i in range(len(base))],
                         host.make_operator, teacher)


def _check_task(what: str, task: Any) -> None:
    if task not in TASKS:
        raise StudyInputError(f"{what}: the study runs classification and segmentation tasks; {task!r} is not supported")


def _user_inputs(host: Any, modality: str, config: StudyConfig, source: StudySource) -> ModalityStudy:
    from c3_core.evaluation.scoring import GateSettings
    from c3_core.resolve import InputError, build_dataset, load_spec, resolve_dataset, resolve_model

    try:
        dataset_c, data_source = resolve_dataset(host, modality, source.data)
        spec = load_spec(dataset_c, source.neighbourhood, config.k, None)
        models = [resolve_model(host, modality, dataset_c, m, config.device) for m in (source.models or (None,))]
        teacher, teacher_id = (resolve_model(host, modality, dataset_c, source.teacher, config.device, role="--teacher")
                               if source.teacher else (None, None))
        gate = GateSettings.from_file(source.gate) if source.gate else GateSettings()
        base = build_dataset(dataset_c, data_source, source.split, source.data_options)
    except (InputError, ValueError, LookupError) as exc:
        raise StudyInputError(str(exc)) from None
    _check_task(models[0][1], models[0][0].task)
    if not source.shifts:
        raise StudyInputError("a study of your own cohort needs at least one --shift OP@SEVERITY[+OP@SEVERITY]")
    shifts = [parse_shift(modality, s, host.make_operator) for s in source.shifts]
    n = min(len(base), cohort_size(config, models[0][0].task))  # type: ignore[arg-type]
    bundles = [m for m, _id in models]
    if len(config.seeds) > len(bundles) or max(config.seeds) >= len(bundles):
        raise StudyInputError(f"seeds {list(config.seeds)} need {max(config.seeds) + 1} --model (one per seed); got {len(bundles)}")
    return ModalityStudy(modality, dataset_c.id, models[0][1], teacher_id, gate, spec, shifts, lambda seed: bundles[seed],
                         len(bundles), [base[i] for i in range(n)], host.make_operator, teacher)


def resolve_modality(host: Any, modality: str, config: StudyConfig, source: StudySource | None = None) -> ModalityStudy:
    """The cohort, neighbourhood, teacher, gate and held-out shifts of ``modality``: the plugin's demo
    declarations, or the user's own (``source``)."""
    if source is None or source.is_demo:
        return _demo_inputs(host, modality, config)
    return _user_inputs(host, modality, config, source)


def inputs_record(ms: ModalityStudy) -> dict[str, Any]:
    """What a modality's numbers depend on besides the study's configuration and source: the gate's
    teacher and thresholds, the version of every operator and editor drawn (the neighbourhood's
    and the held-out shifts') and how plans are drawn; a checkpoint or stored result made with
    other inputs is recomputed."""
    from c3_core.neighbourhood import Neighbourhood, operators_record
    from c3_core.streams import STREAM_VERSION

    shift_ops = [ms.make_operator(step.op, dict(step.options)) for h in ms.shifts for step in h.steps]
    return {"teacher": ms.teacher_id, "gate": None if ms.gate is None else ms.gate.to_dict(),
            **operators_record([*Neighbourhood(ms.spec, ms.make_operator).drawn_operators(), *shift_ops]),
            "streams": STREAM_VERSION}


def _member(ref: str, seed: int, device: str) -> Any:
    """The plugin's seeded demo model (``ExperimentSpec.members``, ``"package.module:factory"``)."""
    import importlib

    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)(seed, device)


MATCH_CASES = 32  # 2-D exams the generic corruptions are matched on
MATCH_VOLUMES = 8  # volumes (3-D) they are matched on, drawn 4 at a time


def _matched_generic(ms: ModalityStudy, config: StudyConfig, seed: int) -> tuple[GenericNeighbourhood, float]:
    """Generic corruptions matched to the physics neighbourhood's mean display change on the
    first 32 exams (8 volumes for 3-D images)."""
    from c3_core.batch import collate
    from c3_core.neighbourhood import Neighbourhood

    volumes = ms.cases[0].image.ndim > 3
    n, step = (MATCH_VOLUMES, 4) if volumes else (MATCH_CASES, MATCH_CASES)
    nb = Neighbourhood(ms.spec.with_overrides(seed=seed), ms.make_operator)
    changes, images = [], []
    for start in range(0, min(n, len(ms.cases)), step):
        batch = collate(ms.cases[start : min(start + step, n)])
        cf, _plans, _rej = nb.draw(batch)
        changes.append((mean_display_change(batch.image, cf.image, ms.spec.k), batch.size))
        images.append(batch.image)
    # one chunk (2-D): its mean as it is; several (volumes): weighted by their sizes
    target = changes[0][0] if len(changes) == 1 else sum(c * w for c, w in changes) / sum(w for _c, w in changes)
    return GenericNeighbourhood.matched(torch.cat(images, 0), target, config.k_generic, seed), target


def _units(t: SeedTables) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Flattened per-unit signals and the exam index of each unit."""
    any_signal = next(iter(t.signals.values()))
    b = any_signal.shape[0]
    per_exam = any_signal[0].numel()
    groups = torch.arange(b).repeat_interleave(per_exam)
    return {k: v.reshape(-1).double() for k, v in t.signals.items()}, groups


def _unit_rank(x: torch.Tensor) -> torch.Tensor:
    """Ranks of ``x`` scaled to [0, 1] (ties broken by position; used only to average signals)."""
    order = torch.argsort(x.double(), stable=True)
    r = torch.empty(x.numel(), dtype=torch.float64)
    r[order] = torch.arange(x.numel(), dtype=torch.float64) / max(x.numel() - 1, 1)
    return r


def summarise_shift(tables: Sequence[SeedTables], shift: str, kind: str, n_boot: int, seed: int,
                    signals: SignalSet = CLASSIFICATION) -> dict[str, Any]:
    """Bootstrap every signal of ``signals`` for one shift and failure kind, averaged over ``tables`` (seeds)."""
    verdict = signals.verdict
    names = {verdict: f"{verdict}|{shift}"}
    names |= {s: f"{s}|{shift}" for s in signals.c3 if s != verdict}
    names |= {a: a for a in signals.alternatives}
    names |= {f"{s} (incl. shift family)": s for s in signals.shipped}
    per_seed = []
    for t in tables:
        flat, groups = _units(t)
        for name, parts in signals.exploratory.items():
            srcs = [names.get(p, f"{p}|{shift}") for p in parts]
            if all(src in flat for src in srcs):
                flat[name] = torch.stack([_unit_rank(flat[src]) for src in srcs]).mean(0)
                names[name] = name
        fail = t.failures[shift][kind].reshape(-1).double()
        keep = ~torch.isnan(fail)
        per_seed.append(({n: flat[src][keep] for n, src in names.items() if src in flat}, fail[keep], groups[keep]))
    pairs = {f"{verdict} - {a}": (verdict, a) for a in signals.alternatives}
    return bootstrap(per_seed, n_boot, torch.Generator().manual_seed(seed), pairs)


def run_modality(host: Any, modality: str, config: StudyConfig, echo: Callable[[str], None],
                 source: StudySource | None = None, checkpoints: Path | None = None) -> dict[str, Any]:
    """All seeds of one modality: per-shift bootstraps, verdict test and run facts.

    With ``checkpoints`` (a folder), each finished seed's tables are stored there and reused by a
    later run with the same configuration, so a stopped study loses at most one seed."""
    started = time.perf_counter()
    ms = resolve_modality(host, modality, config, source)
    if ms.teacher is None:
        echo(f"{modality}: WARNING: no teacher: counterfactuals are gated by operator checks only")
    n_members = config.members if ms.n_members is None else min(config.members, ms.n_members)
    members = [ms.member(s) for s in range(n_members)]
    task = members[0].task
    noun = "volumes" if task == "segmentation" else "cases"
    echo(f"{modality}: {len(ms.cases)} {noun}, teacher {ms.teacher_id}, shifts {[h.name for h in ms.shifts]}")
    signals = for_task(task)
    compute = compute_segmentation_tables if task == "segmentation" else compute_seed_tables
    recorded_inputs = inputs_record(ms)
    tables: list[SeedTables] = []
    generic_desc: dict[str, Any] = {}
    for seed in config.seeds:
        t0 = time.perf_counter()
        stored = None if checkpoints is None else checkpoints / f"failure-{modality}-seed{seed}.safetensors"
        key = hashlib.sha256(json.dumps(  # a digest: the source's paths stay out of the checkpoint file
            {"config": config_record(config, task), "source": None if source is None else repr(source), "seed": seed,
             "inputs": recorded_inputs},
            sort_keys=True, default=str).encode()).hexdigest()
        if stored is not None and stored.is_file():
            loaded = load_tables(stored, key)
            if loaded is not None:
                echo(f"  seed {seed}: reusing {stored.name}")
                loaded[0].stats["reused"] = True
                tables.append(loaded[0])
                generic_desc[str(seed)] = loaded[1]
                continue
        model = members[seed] if seed < len(members) else ms.member(seed)
        generic, target = _matched_generic(ms, config, seed)
        generic_desc[str(seed)] = generic.describe() | {"matched_mean_display_change": target}
        inputs = FailureInputs(model, members, ms.teacher, ms.gate, ms.spec, ms.make_operator, ms.shifts, generic, seed,
                               config.tta_views)
        tables.append(compute(ms.cases, inputs, config.batch_size, _progress(echo, seed, noun)))
        tables[-1].stats["seconds"] = round(time.perf_counter() - t0, 1)
        if stored is not None:
            save_tables(stored, tables[-1], key, generic_desc[str(seed)])
        echo(f"  seed {seed}: {time.perf_counter() - t0:.0f} s")
    shifts: dict[str, Any] = {}
    for h in ms.shifts:
        rates = [float(t.failures[h.name]["flip"].double().nanmean()) for t in tables]
        shifts[h.name] = {
            "shift": h.to_dict(), "flip_rate_per_seed": rates,
            "flip": summarise_shift(tables, h.name, "flip", config.n_boot, 0, signals),
            "wrong": summarise_shift(tables, h.name, "wrong", config.n_boot, 0, signals),
            "admitted_share": [float(t.signals[f"n_admitted|{h.name}"].double().mean() / t.stats["k"]) for t in tables],
        }
        if task == "segmentation":  # mean lesion Dice per seed, clean and under the shift
            shifts[h.name]["dice_per_seed"] = [{"clean": float(t.signals["lesion_dice"].double().mean()),
                                                "shifted": float(t.failures[h.name]["dice"].double().mean())} for t in tables]
    for h in ms.shifts:
        shifts[h.name]["diagnostics"] = diagnostics(tables, h.name, signals)
    curves = _curves(tables[0], ms.shifts, signals)
    return {
        "modality": modality, "dataset": ms.dataset_id, "model": ms.model_id, "teacher": ms.teacher_id,
        "gate": ms.gate.to_dict() if ms.gate is not None else None, "task": tables[0].task,
        "n_cases": len(ms.cases), "seeds": list(config.seeds), "neighbourhood": ms.spec.to_dict() | {"source": portable_source(ms.spec.source)},
        "scan": {"ops": tables[0].stats["scan_ops"], "levels": tables[0].stats["scan_levels"]},
        "generic": generic_desc, "shifts": shifts, "curves": curves, "shift_order": list(shifts),
        "seed_seconds": [t.stats.get("seconds") for t in tables],
        "seconds": round(time.perf_counter() - started + sum(t.stats.get("seconds", 0.0) for t in tables if t.stats.get("reused")), 1),
        "config": config_record(config, task), "inputs": recorded_inputs,
    }


def save_tables(path: Path, t: SeedTables, key: str, generic: Mapping[str, Any]) -> None:
    """One seed's tables as safetensors (written to a temporary name, then renamed)."""
    from c3_core.weightsfile import safetensors_bytes

    tensors = {f"signal/{k}": v.contiguous() for k, v in t.signals.items()}
    tensors |= {f"failure/{h}/{kind}": v.contiguous() for h, d in t.failures.items() for kind, v in d.items()}
    meta = {"key": key, "task": t.task, "stats": json.dumps(t.stats), "generic": json.dumps(generic),
            "shifts": json.dumps(list(t.failures))}
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(safetensors_bytes(tensors, meta))
    tmp.replace(path)


def load_tables(path: Path, key: str) -> tuple[SeedTables, dict[str, Any]] | None:
    """The stored tables if they were made with ``key`` (the same configuration), else None."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("key") != key:
            return None
        t = SeedTables(meta["task"])
        t.stats = json.loads(meta["stats"])
        for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            kind, _, rest = name.partition("/")
            if kind == "signal":
                t.signals[rest] = f.get_tensor(name)
            else:
                shift, _, what = rest.rpartition("/")
                t.failures.setdefault(shift, {})[what] = f.get_tensor(name)
    return t, json.loads(meta["generic"])


def _progress(echo: Callable[[str], None], seed: int, noun: str = "cases") -> Callable[[int, int], None]:
    """Reports at every quarter of the cohort (at most every 250 cases) and at the end."""
    last = [0]

    def report(done: int, total: int) -> None:
        every = max(1, min(250, total // 4))
        if done // every > last[0] // every or done == total:
            echo(f"  seed {seed}: {done}/{total} {noun}")
        last[0] = done
    return report


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = _unit_rank(a.flatten()), _unit_rank(b.flatten())  # a correlation: the ranks' scale drops out
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


def diagnostics(tables: Sequence[SeedTables], shift: str, signals: SignalSet = CLASSIFICATION) -> dict[str, float]:
    """Why a verdict ranks well or poorly, averaged over seeds: saturation of the flip (change)
    count, how the C³ signals move with confidence (and, for segmentation, with the ensemble's
    disagreement), and what pooling a multi-label exam into one bit costs."""
    from c3_core.experiments.failure_stats import scores

    acc: dict[str, list[float]] = {}

    def add(key: str, v: float) -> None:
        acc.setdefault(key, []).append(v)

    seg = signals.count != CLASSIFICATION.count
    word, unit = ("change", "volumes") if seg else ("flip", "exams")
    for t in tables:
        flips = t.signals[f"{signals.count}|{shift}"]
        conf = t.signals[signals.confidence]
        if not seg:
            add("units_with_an_admitted_flip", float((flips > 0).double().mean()))
        exam_any = (flips > 0).reshape(flips.shape[0], -1).any(1)
        add(f"{unit}_with_an_admitted_{word}", float(exam_any.double().mean()))
        add("spearman_c3_drop_vs_confidence", _spearman(t.signals[f"c3_drop|{shift}"], conf))
        add(f"spearman_{signals.verdict}_vs_confidence", _spearman(t.signals[f"{signals.verdict}|{shift}"], conf))
        if seg:
            add(f"spearman_{signals.verdict}_vs_ensemble", _spearman(t.signals[f"{signals.verdict}|{shift}"],
                                                                     t.signals["ensemble_disagreement"]))
        fail = t.failures[shift]["flip"]
        if fail.ndim > 1:  # multi-label: one bit per exam (any finding flips) against per-finding units
            pooled = scores(flips.reshape(flips.shape[0], -1).amax(1), fail.reshape(fail.shape[0], -1).amax(1))["auroc"]
            add("auroc_c3_flips_pooled_per_exam", pooled)
    return {k: float(torch.tensor(v, dtype=torch.float64).nanmean()) for k, v in acc.items()}


def _curves(t: SeedTables, shifts: Sequence[Any], signals: SignalSet = CLASSIFICATION) -> dict[str, Any]:
    """Risk-coverage curves (seed 0; 50 points) of the verdict and the alternatives, per shift
    (risk: wrong under shift, or 1 - lesion Dice under shift for segmentation)."""
    from c3_core.experiments.failure_stats import risk_coverage

    flat, _groups = _units(t)
    out: dict[str, Any] = {}
    for h in shifts:
        fail = t.failures[h.name]["wrong"].reshape(-1).double()
        keep = ~torch.isnan(fail)
        curves = {}
        for name, src in [(signals.verdict, f"{signals.verdict}|{h.name}")] + [(a, a) for a in signals.alternatives]:
            cov, risk = risk_coverage(flat[src][keep], fail[keep])
            idx = torch.linspace(0, cov.numel() - 1, 50).round().long()
            curves[name] = {"coverage": cov[idx].tolist(), "risk": risk[idx].tolist()}
        out[h.name] = curves
    return out


def verdict_test(results: Sequence[dict[str, Any]], two_d: Sequence[str]) -> dict[str, Any]:
    """The stated success criterion on the flip failures of every held-out shift of ``two_d``.

    Also usable for the modalities reported beside it (segmentation): each result is tested with
    its own task's verdict and alternatives (the best alternative: the highest point AUROC,
    undefined AUROCs never best)."""
    rows = []
    for r in results:
        if r["modality"] not in two_d:
            continue
        signals = for_task(r.get("task", "multiclass"))
        for name, sh in r["shifts"].items():
            sig = sh["flip"]["signals"]

            def point(a: str, sig: Mapping[str, Any] = sig) -> float:
                v = sig[a]["auroc"]["value"]
                return float("-inf") if v != v else v

            best = max(signals.alternatives, key=point)
            pair = sh["flip"]["pairs"][f"{signals.verdict} - {best}"]
            lo = pair["auroc"]["ci"][0]
            rows.append({"modality": r["modality"], "shift": name, "verdict": signals.verdict, "best_alternative": best,
                         "difference": pair["auroc"]["value"], "ci": pair["auroc"]["ci"], "above_zero": bool(lo > 0)})
    return {"verdict": VERDICT, "rows": rows, "success": bool(rows) and all(r["above_zero"] for r in rows)}
