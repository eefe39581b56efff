"""One ``c3 evaluate`` invocation: every requested modality, progress, and the output folder."""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import c3_core
from c3_core.evaluation.output import OutputError, prepare_output_dir, write_json
from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import ContributionError, UnknownContributionError
from c3_core.shown_paths import portable_source

EXIT_OK, EXIT_USAGE, EXIT_RUN_FAILED = 0, 2, 3
EXIT_DONE = -1  # internal: a resumed run that was already complete


@dataclass
class EvaluationRequest:
    modalities: list[str] = field(default_factory=list)
    model: str | None = None
    data: str | None = None
    teacher: str | None = None
    neighbourhood: str | None = None
    k: int | None = None
    seed: int | None = None
    device: str = "cpu"
    batch_size: int = 8
    workers: int = 0
    limit: int | None = None
    gate_file: str | None = None
    out: str = "c3-results"
    quiet: bool = False
    max_failures: int | None = 100
    resume: bool = False
    probe: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    key_file: str | None = None
    overwrite: bool = False
    max_counterfactuals: int | None = None

    # options that change results; a resumed run must keep them
    RESULT_FIELDS = ("modalities", "model", "data", "teacher", "neighbourhood", "k", "seed", "device",
                     "batch_size", "limit", "gate_file", "max_failures", "probe", "data_options", "model_options")
    # options that do not travel with the results (paths of this machine, the key's location)
    LOCAL_FIELDS = ("key_file", "out", "overwrite", "quiet", "workers", "resume")

    def result_options(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.RESULT_FIELDS}


def _gate_settings(path: str | None) -> Any:
    from c3_core.evaluation.runner import EvaluationInputError
    from c3_core.evaluation.scoring import GateSettings

    if path is None:
        return GateSettings()
    try:
        return GateSettings.from_file(path)
    except ValueError as exc:
        raise EvaluationInputError(str(exc)) from None


def _warn_gates(prepared: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Say loudly, before anything runs, which modality's gate is weaker than it should be."""
    for m, p in prepared.items():
        if p.gate_warning:
            echo(f"WARNING: {m}: {p.gate_warning}")


def _gate_thresholds(prepared: dict[str, Any], fallback: Any) -> dict[str, float]:
    """The thresholds each modality's gate used (δ for classification, τ for segmentation; none
    without a teacher), and the decision threshold, as run.json records them."""
    out: dict[str, float] = {}
    for m, p in prepared.items():
        g = p.gate or fallback
        if p.teacher is not None:
            key = "tau" if p.bundle.task == "segmentation" else "delta"
            out[f"{m}.{key}"] = getattr(g, key)
        out[f"{m}.threshold"] = g.threshold
    return out


def resume_request(out: str, quiet: bool, workers: int, key_file: str | None = None) -> EvaluationRequest:
    """The request of the interrupted run in ``out`` (only ``quiet``, ``workers`` and where the
    pseudonym key is read from may change)."""
    from c3_core.evaluation.store import STORE_NAME, ResultStore, StoreError

    path = Path(out) / STORE_NAME
    store = ResultStore(path, create=False)
    try:
        saved = (store.fingerprint() or {}).get("request")
    finally:
        store.close()
    if not saved:
        raise StoreError(f"{path}: holds no request to resume")
    return EvaluationRequest(**saved, out=out, quiet=quiet, workers=workers, resume=True, key_file=key_file)


def run_evaluation(
    req: EvaluationRequest, host: PluginHost, echo: Callable[[str], None],
    on_written: Callable[[Path], None] | None = None,
) -> int:
    """Run (or resume) the request; returns the exit code.

    ``on_written(out)`` runs on the writing process once the results are written (the CLI renders
    the report there: the report is an application above evaluation, so evaluation never imports it).

    Bad input gives 2 with nothing written. Per-case results are committed batch by batch into
    ``OUT/results.sqlite``; the CSV/JSON results are exported from it once a modality is done.
    Under ``torchrun`` every rank evaluates its shard and rank 0 writes the merged results.
    """
    from c3_core.evaluation.distributed import ProcessGroup

    group = ProcessGroup.from_environment(req.device)
    say = echo if group.leader else (lambda _m: None)
    try:
        return _run(req, host, say, group, on_written)
    finally:
        group.close()


def _prepare_all(
    req: EvaluationRequest, host: PluginHost, device: str, pseudonymise: Any, broken: dict[str, str] | None = None
) -> dict[str, Any]:
    """Every modality's prepared evaluation. With ``broken`` (a plain run over every installed
    modality), a modality whose plugin code fails to import is recorded there and skipped, so
    one broken plugin does not stop the others; otherwise the failure propagates."""
    from c3_core.evaluation.runner import prepare_modality

    prepared = {}
    for m in req.modalities:
        try:
            p = prepare_modality(
                host, m, data=req.data, model=req.model, teacher=req.teacher, neighbourhood=req.neighbourhood,
                k=req.k, seed=req.seed, device=device, limit=req.limit, probe=req.probe,
                data_options=req.data_options, model_options=req.model_options,
                max_counterfactuals=req.max_counterfactuals, gate_file=req.gate_file,
            )
        except (ContributionError, ImportError) as exc:
            failure = getattr(exc, "failure", None)
            if broken is None or (failure is None and not isinstance(exc, ImportError)):
                raise
            broken[m] = f"plugin code failed to import: {exc}"
            continue
        p.pseudonymise = pseudonymise
        prepared[m] = p
    return prepared


def _run(
    req: EvaluationRequest, host: PluginHost, echo: Callable[[str], None], group: Any,
    on_written: Callable[[Path], None] | None = None,
) -> int:
    from c3_core.evaluation.runner import EvaluationInputError
    from c3_core.evaluation.store import STORE_NAME, ResultStore, StoreError
    from c3_core.output_folder import OutputBusyError, OutputFolderError, busy, check_claimable, claim
    from c3_core.pseudonyms import Pseudonymiser, PseudonymKeyError, load_key

    usage_errors = (EvaluationInputError, UnknownContributionError, ContributionError, ValueError, FileNotFoundError,
                    PseudonymKeyError, OutputFolderError, PermissionError)
    # 1. the leader validates everything before writing anything; the others wait for its verdict
    code, prepared, gate, out, claimed = EXIT_OK, {}, None, Path(req.out), None
    broken: dict[str, str] | None = None if req.modalities or req.resume else {}
    key_fingerprint = None
    if group.leader:
        for pl in host.plugins:
            info = pl.to_dict()
            if info.get("error"):
                echo(f"warning: plugin {info['name']} is {info['status']}: {info['error']}")
        try:
            req.modalities = _modalities(req, host)
            gate = _gate_settings(req.gate_file)
            key = load_key(req.key_file, outside=[out])
            key_fingerprint = key.fingerprint
            holder = busy(out)
            if holder:
                raise OutputBusyError(f"{out}: another c3 process ({holder}) is writing to this folder; wait for it or choose another --out")
            if not req.resume:
                existing = check_claimable(out, "evaluate", overwrite=req.overwrite, signature=(STORE_NAME, "run.json"))
                if existing and not req.overwrite:
                    _refuse_existing(out)
            elif (out / "run.json").exists():
                echo(f"{out}: the run is already complete; nothing to resume")
                code = EXIT_DONE
            if code == EXIT_OK:
                prepared = _prepare_all(req, host, group.device, Pseudonymiser(key), broken)
                if not prepared:
                    raise EvaluationInputError("no modality can be evaluated: " + "; ".join(f"{m}: {e}" for m, e in (broken or {}).items()))
                _warn_gates(prepared, echo)
                claimed = claim(out, "evaluate", overwrite=req.overwrite, signature=(STORE_NAME, "run.json"))
                out = prepare_output_dir(req.out)
                if req.overwrite and not req.resume:
                    _remove_previous_run(out)
                store = ResultStore(out / STORE_NAME, create=True)
                _check_resumed_key(store, key_fingerprint, req)
                store.set_fingerprint(_fingerprint(req, prepared, host, key_fingerprint))
                store.close()
        except (OutputError, StoreError) as exc:
            echo(f"error: {exc}")
            code = EXIT_USAGE
        except usage_errors as exc:
            echo(f"error: {exc}")
            code = EXIT_USAGE
        for m, why in (broken or {}).items():
            echo(f"error: {m} cannot be evaluated ({why}); the other modalities go on, and the run will exit 3")
        if code != EXIT_OK and claimed is not None:
            claimed.release()
    code, req.modalities, key_fingerprint = group.broadcast((code, [m for m in req.modalities if m in prepared] if group.leader else req.modalities, key_fingerprint))
    if code == EXIT_DONE:
        return EXIT_OK
    if code != EXIT_OK:
        return code
    out = Path(req.out).resolve()
    try:
        if not group.leader:  # the leader filled the weights cache; now the others load from it
            gate = _gate_settings(req.gate_file)
            key = load_key(req.key_file)
            prepared = _prepare_all(req, host, group.device, Pseudonymiser(key))
        store = ResultStore(out / STORE_NAME, create=False)
        try:
            if not group.leader:
                store.set_fingerprint(_fingerprint(req, prepared, host, key_fingerprint))  # the same run on every rank
            return _evaluate_all(req, host, echo, group, prepared, gate, store, out, broken or {}, key_fingerprint, on_written)
        except StoreError as exc:
            echo(f"error: {exc}")
            return EXIT_RUN_FAILED
        finally:
            store.close()
    finally:
        if claimed is not None:
            claimed.release()


def _check_resumed_key(store: Any, fingerprint: str, req: EvaluationRequest) -> None:
    """A resumed run must pseudonymise with the key it started with (else its ids would mix)."""
    from c3_core.evaluation.runner import EvaluationInputError

    saved = (store.fingerprint() or {}).get("pseudonym_key")
    if req.resume and saved and saved != fingerprint:
        raise EvaluationInputError(
            f"{req.out}: this run's pseudonyms were made with key {saved}, not {fingerprint}; "
            "give the key it started with (--key-file or C3_PSEUDONYM_KEY_FILE)"
        )


def _remove_previous_run(out: Path) -> None:
    """``--overwrite``: drop the earlier run's store and manifest (files this command writes)
    so the new run starts clean; nothing else in the folder is touched."""
    from c3_core.evaluation.store import STORE_NAME

    for name in (STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", "run.json", "run-failed.json"):
        (out / name).unlink(missing_ok=True)


def _evaluate_all(
    req: EvaluationRequest, host: PluginHost, echo: Callable[[str], None], group: Any,
    prepared: dict[str, Any], gate: Any, store: Any, out: Path, broken: dict[str, str], key_fingerprint: str | None,
    on_written: Callable[[Path], None] | None = None,
) -> int:
    """Evaluate each modality's missing cases on every rank; the leader summarises and exports."""
    from c3_core.evaluation.runner import RunAborted, export_modality, finish_modality, run_modality

    started = time.time()
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for modality, p in prepared.items():
        if store.status(modality) == "complete":
            results[modality] = json.loads((out / modality / "summary.json").read_text(encoding="utf-8"))
            echo(f"{modality}: already complete")
            continue
        t0 = time.perf_counter()
        error: str | None = None
        with _progress(modality, req.quiet or not group.leader) as progress:
            try:
                run_modality(
                    p, store, gate=p.gate or gate, device=group.device, batch_size=req.batch_size, workers=req.workers,
                    rank=group.rank, world=group.world, max_failures=req.max_failures, progress=progress,
                    on_failure=(lambda i, why, m=modality: echo(f"{m}: case {i} skipped: {why}")) if group.leader else None,
                )
            except RunAborted as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one modality failing does not stop the others
                error = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, OSError):
                    echo("".join(traceback.format_exception(exc)[-3:]))
        errors = [e for e in group.gather(error) if e]
        if errors:
            failures[modality] = errors[0]
            echo(f"error: {modality} failed: {errors[0]}")
            continue
        if group.leader:
            try:
                run = finish_modality(p, store, time.perf_counter() - t0)
                export_modality(run, store, out)
                store.set_status(modality, "complete")
                results[modality] = run.summary
                echo(_headline(run.summary, run.seconds))
            except (RunAborted, OutputError) as exc:
                failures[modality] = str(exc)
                echo(f"error: {exc}")
        group.barrier()
    if not group.leader:
        return EXIT_RUN_FAILED if failures else EXIT_OK
    from c3_core.pseudonyms import scrub_paths

    failures = {m: scrub_paths(why) for m, why in {**broken, **failures}.items()}
    manifest = {
        "status": "complete" if not failures else "failed",
        "c3_core": c3_core.__version__,
        "plugins": [_scrubbed_plugin(pl.to_dict()) for pl in host.plugins],
        "unavailable_modalities": {m: scrub_paths(why) for m, why in broken.items()},
        "pseudonym_key": key_fingerprint,
        "request": _portable_request(req),
        "neighbourhoods": {m: p.spec.to_dict() | {"source": portable_source(p.spec.source)}
                           for m, p in prepared.items()},
        "gate": _gate_thresholds(prepared, gate),
        "gates": {m: p.gate_record() for m, p in prepared.items()},
        "failures": failures,
        "processes": group.world,
        "started": started,
        "seconds": round(time.time() - started, 2),
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "store": "results.sqlite (tables cases: JSON rows; counterfactuals: one column per field; failures)",
    }
    try:
        write_json(out, "summary.json", results)
        if not failures:
            write_json(out, "run.json", manifest)
        else:
            write_json(out, "run-failed.json", manifest)
    except OutputError as exc:
        echo(f"error: {exc}")
        return EXIT_RUN_FAILED
    echo(f"results written to {out}")
    if on_written is not None:
        on_written(out)
    return EXIT_RUN_FAILED if failures else EXIT_OK


def _portable_request(req: EvaluationRequest) -> dict[str, Any]:
    """The request as run.json keeps it: no path of this machine (file names only), no key location."""
    out = {k: v for k, v in asdict(req).items() if k not in EvaluationRequest.LOCAL_FIELDS}
    for name in ("model", "data", "teacher", "neighbourhood", "gate_file"):
        value = out.get(name)
        if isinstance(value, str) and ("/" in value or "\\" in value):
            out[name] = Path(value).name
    return out


def _scrubbed_plugin(row: dict[str, Any]) -> dict[str, Any]:
    from c3_core.pseudonyms import scrub_paths

    return {k: scrub_paths(v) if k == "error" and isinstance(v, str) else v for k, v in row.items()}


def _modalities(req: EvaluationRequest, host: PluginHost) -> list[str]:
    from c3_core.evaluation.runner import EvaluationInputError

    installed = host.modalities()
    modalities = req.modalities or installed
    unknown = [m for m in modalities if m not in installed]
    if unknown:
        raise EvaluationInputError(f"unknown modality {', '.join(unknown)} (installed: {', '.join(installed) or 'none'})")
    if not modalities:
        raise EvaluationInputError("no modality plugin is installed (pip install c3-cxr c3-mri c3-fundus)")
    if len(modalities) > 1 and (req.model or req.data or req.teacher):
        raise EvaluationInputError("--model, --data and --teacher apply to one modality; add --modality")
    return list(modalities)


def _refuse_existing(out: Path) -> None:
    from c3_core.evaluation.runner import EvaluationInputError
    from c3_core.evaluation.store import STORE_NAME

    if (out / "run.json").exists():
        raise EvaluationInputError(f"{out} already holds a finished run; choose another --out")
    if (out / STORE_NAME).exists():
        raise EvaluationInputError(
            f"{out} holds an unfinished run; continue it with `c3 evaluate --resume {out}` or choose another --out"
        )


def _fingerprint(req: EvaluationRequest, prepared: dict[str, Any], host: PluginHost, key_fingerprint: str | None) -> dict[str, Any]:
    return {
        "request": req.result_options(),
        "pseudonym_key": key_fingerprint,
        "modalities": {m: p.fingerprint() for m, p in prepared.items()},
        "versions": {"c3-core": c3_core.__version__} | {pl.name: pl.version for pl in host.plugins},
    }


def _fmt(value: Any, reason: str | None = None) -> str:
    """A metric for the headline: three decimals; where it is undefined (None), ``undefined:
    <reason>`` (``n/a`` when the summary gives no reason)."""
    if value is None:
        return f"undefined: {reason}" if reason else "n/a"
    return f"{value:.3f}"


def _headline(s: dict[str, Any], seconds: float, max_notes: int = 6) -> str:
    """The modality's result line, then one line per reason for the other undefined metrics
    (severity-response points left to summary.json)."""
    from c3_core.metrics.undefined import iter_reasons, undefined_reason

    shown = [("dice_volume_mean", "Dice"), ("lesion_dice_mean", "lesion-Dice")] if s["task"] == "segmentation" else [
        ("auroc_macro", "AUROC"), ("ece", "ECE"), ("brier", "Brier")]
    shown += [("utility.mean", "utility mean"), ("utility.p10", "utility p10"), ("flip_rate", "flip rate")]
    parts = []
    for path, label in shown:
        keys = path.split(".")
        value = s.get(keys[0]) if len(keys) == 1 else (s.get(keys[0]) or {}).get(keys[1])
        parts.append(f"{label} {_fmt(value, undefined_reason(s, *keys))}")
    line = f"{s['modality']}: {s['n_cases']} cases, " + ", ".join(parts) + f" ({seconds:.1f} s)"
    others: dict[str, list[str]] = {}
    for path, reason in iter_reasons(s.get("undefined")):
        name = ".".join(path)
        if path[0] != "severity_response" and name not in {p for p, _ in shown}:
            others.setdefault(reason, []).append(name)
    notes = [f"  {', '.join(names)}: undefined: {reason}" for reason, names in others.items()]
    if len(notes) > max_notes:
        notes = [*notes[:max_notes], f"  ... {len(notes) - max_notes} more reasons in summary.json ('undefined')"]
    return "\n".join([line, *notes])


class _progress:
    """A rich progress bar on stderr (or nothing with ``quiet``)."""

    def __init__(self, modality: str, quiet: bool) -> None:
        self.modality, self.quiet = modality, quiet
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int], None]:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                f"[bold]{self.modality}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.modality, total=None)

        def update(done: int, total: int) -> None:
            if self._bar is not None:
                self._bar.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
