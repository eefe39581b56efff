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
from c3_core.evaluation.output import OutputError, prepare_output_dir, write_csv, write_json
from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import ContributionError, UnknownContributionError

EXIT_OK, EXIT_USAGE, EXIT_RUN_FAILED = 0, 2, 3


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


def _gate_settings(path: str | None) -> Any:
    from c3_core.evaluation.runner import EvaluationInputError
    from c3_core.evaluation.scoring import GateSettings

    if path is None:
        return GateSettings()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return GateSettings(
            delta=float(data.get("delta", GateSettings.delta)),
            tau=float(data.get("tau", GateSettings.tau)),
            threshold=float(data.get("threshold", GateSettings.threshold)),
        )
    except (OSError, ValueError, AttributeError) as exc:
        raise EvaluationInputError(f"--gate {path}: cannot read gate thresholds ({exc})") from None


def run_evaluation(req: EvaluationRequest, host: PluginHost, echo: Callable[[str], None]) -> int:
    """Run the request; returns the exit code. Bad input → 2 with nothing written."""
    from c3_core.evaluation.runner import EvaluationInputError, evaluate_modality

    installed = host.modalities()
    modalities = req.modalities or installed
    unknown = [m for m in modalities if m not in installed]
    if unknown:
        echo(f"error: unknown modality {', '.join(unknown)} (installed: {', '.join(installed) or 'none'})")
        return EXIT_USAGE
    if not modalities:
        echo("error: no modality plugin is installed (pip install c3-cxr c3-mri c3-fundus)")
        return EXIT_USAGE
    if len(modalities) > 1 and (req.model or req.data or req.teacher):
        echo("error: --model, --data and --teacher apply to one modality; add --modality")
        return EXIT_USAGE
    try:
        gate = _gate_settings(req.gate_file)
        out = prepare_output_dir(req.out)
    except (EvaluationInputError, OutputError) as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    if (out / "run.json").exists():
        echo(f"error: {out} already holds a finished run; choose another --out")
        return EXIT_USAGE

    started = time.time()
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    specs: dict[str, Any] = {}
    for modality in modalities:
        with _progress(modality, req.quiet) as progress:
            try:
                run = evaluate_modality(
                    host, modality, data=req.data, model=req.model, teacher=req.teacher,
                    neighbourhood=req.neighbourhood, k=req.k, seed=req.seed, device=req.device,
                    batch_size=req.batch_size, workers=req.workers, gate=gate, limit=req.limit,
                    progress=progress,
                )
            except (EvaluationInputError, UnknownContributionError, ContributionError) as exc:
                echo(f"error: {modality}: {exc}")
                return EXIT_USAGE
            except (ValueError, FileNotFoundError) as exc:
                echo(f"error: {modality}: {exc}")
                return EXIT_USAGE
            except Exception as exc:  # noqa: BLE001 - one modality failing does not stop the others
                failures[modality] = f"{type(exc).__name__}: {exc}"
                echo(f"error: {modality} failed: {failures[modality]}")
                echo("".join(traceback.format_exception(exc)[-3:]))
                continue
        try:
            write_csv(out, f"{modality}/cases.csv", run.cases)
            write_csv(out, f"{modality}/counterfactuals.csv", run.counterfactuals)
            write_json(out, f"{modality}/summary.json", run.summary)
        except OutputError as exc:
            echo(f"error: {exc}")
            return EXIT_RUN_FAILED
        results[modality] = run.summary
        specs[modality] = run.spec.to_dict() | {"source": run.spec.source}
        echo(_headline(run.summary, run.seconds))
    manifest = {
        "status": "complete" if not failures else "failed",
        "c3_core": c3_core.__version__,
        "plugins": [p.to_dict() for p in host.plugins],
        "request": asdict(req),
        "neighbourhoods": specs,
        "gate": gate.to_dict(),
        "failures": failures,
        "started": started,
        "seconds": round(time.time() - started, 2),
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
    }
    try:
        write_json(out, "summary.json", results)
        write_json(out, "run.json", manifest)
    except OutputError as exc:
        echo(f"error: {exc}")
        return EXIT_RUN_FAILED
    echo(f"results written to {out}")
    return EXIT_RUN_FAILED if failures else EXIT_OK


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
