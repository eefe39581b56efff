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

    # options that change results; a resumed run must keep them
    RESULT_FIELDS = ("modalities", "model", "data", "teacher", "neighbourhood", "k", "seed", "device",
                     "batch_size", "limit", "gate_file", "max_failures", "probe")

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


def resume_request(out: str, quiet: bool, workers: int) -> EvaluationRequest:
    """The request of the interrupted run in ``out`` (only ``quiet`` and ``workers`` may change)."""
    from c3_core.evaluation.store import STORE_NAME, ResultStore, StoreError

    path = Path(out) / STORE_NAME
    store = ResultStore(path, create=False)
    try:
        saved = (store.fingerprint() or {}).get("request")
    finally:
        store.close()
    if not saved:
        raise StoreError(f"{path}: holds no request to resume")
    return EvaluationRequest(**saved, out=out, quiet=quiet, workers=workers, resume=True)


def run_evaluation(req: EvaluationRequest, host: PluginHost, echo: Callable[[str], None]) -> int:
    """Run (or resume) the request; returns the exit code.

    Bad input gives 2 with nothing written. Per-case results are committed batch by batch into
    ``OUT/results.sqlite``; the CSV/JSON results are exported from it once a modality is done.
    Under ``torchrun`` every rank evaluates its shard and rank 0 writes the merged results.
    """
    from c3_core.evaluation.distributed import ProcessGroup

    group = ProcessGroup.from_environment(req.device)
    say = echo if group.leader else (lambda _m: None)
    try:
        return _run(req, host, say, group)
    finally:
        group.close()


def _prepare_all(req: EvaluationRequest, host: PluginHost, device: str) -> dict[str, Any]:
    from c3_core.evaluation.runner import prepare_modality

    return {
        m: prepare_modality(
            host, m, data=req.data, model=req.model, teacher=req.teacher, neighbourhood=req.neighbourhood,
            k=req.k, seed=req.seed, device=device, limit=req.limit, probe=req.probe,
        )
        for m in req.modalities
    }


def _run(req: EvaluationRequest, host: PluginHost, echo: Callable[[str], None], group: Any) -> int:
    from c3_core.evaluation.runner import EvaluationInputError
    from c3_core.evaluation.store import STORE_NAME, ResultStore, StoreError

    usage_errors = (EvaluationInputError, UnknownContributionError, ContributionError, ValueError, FileNotFoundError)
    # 1. the leader validates everything before writing anything; the others wait for its verdict
    code, prepared, gate, out = EXIT_OK, {}, None, Path(req.out)
    if group.leader:
        try:
            req.modalities = _modalities(req, host)
            gate = _gate_settings(req.gate_file)
            if not req.resume:
                _refuse_existing(out)
            elif (out / "run.json").exists():
                echo(f"{out}: the run is already complete; nothing to resume")
                code = EXIT_DONE
            if code == EXIT_OK:
                prepared = _prepare_all(req, host, group.device)
                out = prepare_output_dir(req.out)
                store = ResultStore(out / STORE_NAME, create=True)
                store.set_fingerprint(_fingerprint(req, prepared, host))
                store.close()
        except (OutputError, StoreError) as exc:
            echo(f"error: {exc}")
            code = EXIT_USAGE
        except usage_errors as exc:
            echo(f"error: {exc}")
            code = EXIT_USAGE
    code, req.modalities = group.broadcast((code, req.modalities))
    if code == EXIT_DONE:
        return EXIT_OK
    if code != EXIT_OK:
        return code
    out = Path(req.out).resolve()
    if not group.leader:  # the leader filled the weights cache; now the others load from it
        gate = _gate_settings(req.gate_file)
        prepared = _prepare_all(req, host, group.device)
    store = ResultStore(out / STORE_NAME, create=False)
    try:
        if not group.leader:
            store.set_fingerprint(_fingerprint(req, prepared, host))  # the same run on every rank
        return _evaluate_all(req, host, echo, group, prepared, gate, store, out)
    except StoreError as exc:
        echo(f"error: {exc}")
        return EXIT_RUN_FAILED
    finally:
        store.close()


def _evaluate_all(
    req: EvaluationRequest, host: PluginHost, echo: Callable[[str], None], group: Any,
    prepared: dict[str, Any], gate: Any, store: Any, out: Path,
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
                    p, store, gate=gate, device=group.device, batch_size=req.batch_size, workers=req.workers,
                    rank=group.rank, world=group.world, max_failures=req.max_failures, progress=progress,
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
    manifest = {
        "status": "complete" if not failures else "failed",
        "c3_core": c3_core.__version__,
        "plugins": [pl.to_dict() for pl in host.plugins],
        "request": asdict(req),
        "neighbourhoods": {m: p.spec.to_dict() | {"source": p.spec.source} for m, p in prepared.items()},
        "gate": gate.to_dict(),
        "failures": failures,
        "processes": group.world,
        "started": started,
        "seconds": round(time.time() - started, 2),
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "store": "results.sqlite (tables cases, counterfactuals, failures; rows are JSON)",
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
    from c3_core.report import try_render_report

    try_render_report(out, echo)  # never raises: a missing extra (matplotlib) is a warning
    return EXIT_RUN_FAILED if failures else EXIT_OK


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


def _fingerprint(req: EvaluationRequest, prepared: dict[str, Any], host: PluginHost) -> dict[str, Any]:
    return {
        "request": req.result_options(),
        "modalities": {m: p.fingerprint() for m, p in prepared.items()},
        "versions": {"c3-core": c3_core.__version__} | {pl.name: pl.version for pl in host.plugins},
    }


def _fmt(value: Any) -> str:
    """A metric for the headline: three decimals, or ``n/a`` where it is undefined (None)."""
    return "n/a" if value is None else f"{value:.3f}"


def _headline(s: dict[str, Any], seconds: float) -> str:
    u = s["utility"]
    main = (
        f"Dice {_fmt(s['dice_volume_mean'])} lesion-Dice {_fmt(s['lesion_dice_mean'])}"
        if s["task"] == "segmentation"
        else f"AUROC {_fmt(s['auroc_macro'])} ECE {_fmt(s['ece'])} Brier {_fmt(s['brier'])}"
    )
    return (
        f"{s['modality']}: {s['n_cases']} cases, {main}, utility mean {_fmt(u['mean'])} p10 {_fmt(u['p10'])}, "
        f"flip rate {_fmt(s['flip_rate'])} ({seconds:.1f} s)"
    )


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
