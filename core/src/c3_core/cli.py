"""The ``c3`` command line (Typer). Heavy modules are imported inside commands only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import c3_core

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3

app = typer.Typer(
    name="c3",
    help="C3: clinically-guided counterfactuals — robustness evaluation and training for imaging models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
gate_app = typer.Typer(help="The validity gate: calibrate thresholds from human-audited anchors.", no_args_is_help=True)
app.add_typer(gate_app, name="gate")
editor_app = typer.Typer(help="Learned editors: fit their models on a cohort.", no_args_is_help=True)
app.add_typer(editor_app, name="editor")


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"c3-core {c3_core.__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """C3 command line."""


def _host() -> Any:
    from c3_core.plugins.host import PluginHost

    return PluginHost().load()


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List installed plugins: version, c3-core range, modalities, contributions, status."""
    host = _host()
    rows = [p.to_dict() for p in host.plugins]
    if as_json:
        typer.echo(json.dumps({"c3_core": c3_core.__version__, "plugins": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"c3 plugins (c3-core {c3_core.__version__})")
    for col in ("name", "version", "core range", "modalities", "contributions", "status"):
        table.add_column(col)
    for r in rows:
        counts = ", ".join(f"{v} {k}" for k, v in r["contributions"].items() if v)
        status = r["status"] if not r["error"] else f"{r['status']}: {r['error']}"
        table.add_row(r["name"], r["version"], r["core_range"], ", ".join(r["modalities"]), counts, status)
    Console().print(table)
    if not rows:
        typer.echo("no plugins installed (pip install c3-cxr c3-mri c3-fundus)")


@app.command()
def ops(
    modality: Annotated[str | None, typer.Option(help="Only this modality.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The operator and editor catalogue: domains, units and severity ranges."""
    host = _host()
    entries = []
    for kind in ("operators", "editors"):
        for c in host.registry(kind):
            if modality and c.modality != modality:
                continue
            try:
                d = c.load().describe()
            except Exception as exc:  # noqa: BLE001 - show the broken entry, keep listing
                d = {"id": c.id, "kind": kind[:-1], "error": str(exc)}
            d["plugin"] = c.plugin
            entries.append(d)
    if modality and not entries:
        known = sorted({c.modality for k in ("operators", "editors") for c in host.registry(k)})
        raise _fail(f"unknown modality {modality!r} (installed: {', '.join(known) or 'none'})")
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="c3 operators")
    for col in ("id", "kind", "domain", "spatial", "severity", "range", "summary"):
        table.add_column(col)
    for d in entries:
        if "error" in d:
            table.add_row(d["id"], d["kind"], "", "", "", "", f"[red]{d['error']}[/red]")
            continue
        s = d["severity"]
        table.add_row(
            d["id"], d["kind"], d["domain"], "yes" if d["spatial"] else "no",
            f"{s['name']} [{s['unit']}]", f"{s['identity']:g} → {s['extreme']:g}", d["summary"],
        )
    Console().print(table)


def _absolute(value: str | Path | None) -> str | None:
    """An existing file or folder as an absolute path (so a resumed run finds it from anywhere);
    anything else (a registered id, None) unchanged."""
    if value is None:
        return None
    return str(Path(value).resolve()) if Path(value).exists() else str(value)


@app.command()
def evaluate(
    modality: Annotated[list[str] | None, typer.Option("--modality", "-m", help="Modality to evaluate (repeatable); default: every installed one.")] = None,
    model: Annotated[str | None, typer.Option(help="Registered model id, package.module:factory, or a weights file (.safetensors / TorchScript).")] = None,
    data: Annotated[str | None, typer.Option(help="Registered dataset id, or a CSV / folder in the modality's conventions.")] = None,
    teacher: Annotated[str | None, typer.Option(help="Model id or weights used by the validity gate (default: the dataset's teacher, if any).")] = None,
    neighborhood: Annotated[Path | None, typer.Option("--neighborhood", "--neighbourhood", help="Neighbourhood spec (TOML).")] = None,
    k: Annotated[int | None, typer.Option(min=1, help="Counterfactuals per case (overrides the spec).")] = None,
    seed: Annotated[int | None, typer.Option(help="Base seed (overrides the spec).")] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="Cases per batch.")] = 8,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N cases.")] = None,
    gate_file: Annotated[Path | None, typer.Option("--gate", help="Gate thresholds JSON written by `c3 gate calibrate`.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("c3-results"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    max_failures: Annotated[int, typer.Option(min=0, help="Stop a modality once more than this many cases failed to read.")] = 100,
    resume: Annotated[Path | None, typer.Option(help="Continue the interrupted run in this output folder (with its own options).")] = None,
    probe: Annotated[str | None, typer.Option(help="causal: per case and class, Delta-Drop (lesion removed), Delta-Focus (lesion only) and a healthy-region control -> OUT/<modality>/probe.csv.")] = None,
) -> None:
    """Evaluate robustness across every installed modality and write per-case and aggregate results.

    Per-case results are committed batch by batch to OUT/results.sqlite; after a crash,
    `c3 evaluate --resume OUT` continues where the run stopped. Under `torchrun` the cohort is
    sharded across processes and rank 0 writes the merged results.
    """
    from c3_core.evaluation.session import EvaluationRequest, resume_request, run_evaluation
    from c3_core.evaluation.store import StoreError

    if resume is not None:
        given = {
            "--modality": bool(modality), "--model": model, "--data": data, "--teacher": teacher,
            "--neighborhood": neighborhood, "--k": k, "--seed": seed, "--device": device != "cpu",
            "--batch-size": batch_size != 8, "--limit": limit, "--gate": gate_file,
            "--out": out != Path("c3-results"), "--max-failures": max_failures != 100, "--probe": probe,
        }
        clash = [name for name, value in given.items() if value]
        if clash:
            raise _fail(f"--resume continues a run with the options it was started with; drop {', '.join(clash)}")
        try:
            request = resume_request(str(resume), quiet=quiet, workers=workers)
        except (StoreError, TypeError) as exc:
            raise _fail(f"--resume {resume}: {exc}") from None
    else:
        if probe is not None and probe != "causal":
            raise _fail(f"--probe must be 'causal', got {probe!r}")
        request = EvaluationRequest(
            modalities=list(modality or []), model=_absolute(model), data=_absolute(data), teacher=_absolute(teacher),
            neighbourhood=_absolute(neighborhood), k=k, seed=seed, device=device,
            batch_size=batch_size, workers=workers, limit=limit,
            gate_file=_absolute(gate_file), out=str(out), quiet=quiet,
            max_failures=max_failures, probe=probe,
        )
    code = run_evaluation(request, _host(), echo=lambda m: typer.echo(m, err=True))
    raise typer.Exit(code)


@gate_app.command("calibrate")
def gate_calibrate(
    anchors: Annotated[Path, typer.Argument(help="CSV of human-audited anchors: columns statistic, valid.")],
    kind: Annotated[str, typer.Option(help="classification (statistic = max |Δp|) or segmentation (statistic = teacher IoU).")] = "classification",
    target_precision: Annotated[float, typer.Option(min=0.0, max=1.0, help="Required share of truly valid among admitted.")] = 0.95,
    out: Annotated[Path, typer.Option(help="Where to write the thresholds (JSON read by c3 evaluate --gate).")] = Path("gate.json"),
) -> None:
    """Set delta (classification) or tau (segmentation) from audited anchors."""
    from c3_core.evaluation.output import OutputError, prepare_output_dir, write_json
    from c3_core.gate import AnchorFileError, CalibrationError, calibrate, load_anchors_csv

    if kind not in ("classification", "segmentation"):
        raise _fail(f"--kind must be classification or segmentation, got {kind!r}")
    try:
        result = calibrate(load_anchors_csv(anchors), target_precision=target_precision, kind=kind)
        existing: dict[str, Any] = {}
        if out.is_file():
            existing = json.loads(out.read_text())
        key = "delta" if kind == "classification" else "tau"
        existing[key] = result.threshold
        existing.setdefault("calibration", {})[kind] = result.to_dict()
        write_json(prepare_output_dir(out.parent if str(out.parent) else Path(".")), out.name, existing)
    except (AnchorFileError, CalibrationError, OutputError, json.JSONDecodeError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"{key} = {result.threshold:.4g}: precision {result.precision:.3f} (target {target_precision:.3f}), "
        f"recall {result.recall:.3f}, {result.n_admitted}/{result.n_anchors} anchors admitted -> {out}"
    )


@editor_app.command("fit")
def editor_fit(
    editor: Annotated[str, typer.Argument(help="A diffusion editor id (see `c3 ops`), e.g. cxr.diffusion.")],
    out: Annotated[Path, typer.Option(help="The .safetensors file to write (its .json config goes beside it; never overwritten).")],
    data: Annotated[str | None, typer.Option(help="Registered dataset id, or a CSV / folder in the modality's conventions (default: the demo cohort).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs (default: the editor's).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Minibatch size (default: the editor's).")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="AdamW learning rate (default: the editor's).")] = None,
    size: Annotated[int | None, typer.Option(min=8, help="Working resolution in px (default: the editor's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, noise and minibatches.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N training cases.")] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1 ...")] = "cpu",
) -> None:
    """Fit a diffusion editor's denoiser on a cohort's training split; use it with the editor option weights=PATH."""
    from c3_core.editors.diffusion_fit import fit_command

    code = fit_command(
        editor, out, data=_absolute(data),
        epochs=epochs, batch_size=batch_size, lr=lr, size=size, seed=seed, limit=limit, device=device,
        host=_host(), echo=typer.echo,
    )
    raise typer.Exit(code)


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A folder written by `c3 evaluate`.")],
    readiness: Annotated[Path | None, typer.Option(help="Site-readiness thresholds (TOML); exit 4 if any fails.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the HTML (default RESULTS_DIR/report.html).")] = None,
) -> None:
    """Re-render the HTML report and model card from saved results; optionally check site readiness."""
    from c3_core.report.command import report_command

    raise typer.Exit(report_command(results_dir, readiness=readiness, out=out, echo=typer.echo))


@app.command()
def generate(
    modality: Annotated[str | None, typer.Option("--modality", "-m", help="Modality (default: the only installed one).")] = None,
    data: Annotated[str | None, typer.Option(help="Registered dataset id, or a CSV / folder in the modality's conventions.")] = None,
    neighborhood: Annotated[Path | None, typer.Option("--neighborhood", "--neighbourhood", help="Neighbourhood spec (TOML); default: the dataset's.")] = None,
    op: Annotated[list[str] | None, typer.Option("--op", help="Operator or editor id to draw from (repeatable; instead of --neighborhood).")] = None,
    k: Annotated[int, typer.Option(min=1, help="Counterfactuals per case.")] = 4,
    seed: Annotated[int, typer.Option(help="Base seed: counterfactual k of exam e uses derive_seed(seed, e, k).")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases.")] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("c3-generated"),
) -> None:
    """Write counterfactual images (16-bit PNG for 2-D, NIfTI for 3-D) with their provenance JSON."""
    from c3_core.generate import generate_command

    code = generate_command(
        modality, _absolute(data), _absolute(neighborhood), list(op or []), k, seed, out, limit,
        device=device, host=_host(), echo=lambda m: typer.echo(m, err=True),
    )
    raise typer.Exit(code)


@app.command()
def train(
    ctx: typer.Context,
    modality: Annotated[str | None, typer.Option("--modality", "-m", help="Modality to train (default: the only installed one).")] = None,
    data: Annotated[str | None, typer.Option(help="Registered dataset id, or a CSV / folder in the modality's conventions (train and test splits).")] = None,
    model: Annotated[str | None, typer.Option(help="Registered model id: the architecture (default: the dataset's).")] = None,
    init: Annotated[str | None, typer.Option(help="Start from these weights (safetensors / weights-only torch file, or 'demo').")] = None,
    neighborhood: Annotated[Path | None, typer.Option("--neighborhood", "--neighbourhood", help="Neighbourhood spec (TOML).")] = None,
    members: Annotated[str, typer.Option(help="Neighbourhood members to use: all, operators (physics only) or editors.")] = "all",
    k: Annotated[int, typer.Option(min=1, help="Counterfactuals per case and step.")] = 1,
    lam: Annotated[float, typer.Option("--lambda", "--lam", min=0.0, help="Weight of the consistency term (0: supervised only).")] = 1.0,
    lam_schedule: Annotated[str, typer.Option(help="constant, linear or cosine ramp of lambda over --lam-warmup-epochs.")] = "constant",
    lam_warmup_epochs: Annotated[float, typer.Option(min=0.0, help="Epochs over which lambda ramps up.")] = 0.0,
    augment: Annotated[str, typer.Option(help="Baseline augmentation: none, standard, randaugment or augmix.")] = "standard",
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Ablation: use every counterfactual, ungated.")] = False,
    teacher: Annotated[str | None, typer.Option(help="Frozen model of the validity gate (default: the dataset's teacher or demo model).")] = None,
    gate_file: Annotated[Path | None, typer.Option("--gate", help="Gate thresholds JSON written by `c3 gate calibrate`.")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Cases per step and process.")] = 16,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (AdamW; warm-up then cosine).")] = 3e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed of shuffling, augmentation and counterfactual draws.")] = 0,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bfloat16 autocast on CUDA.")] = False,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Also checkpoint every N steps (0: each epoch).")] = 0,
    heldout: Annotated[int, typer.Option(min=1, help="Test-split cases for the held-out consistency measure.")] = 64,
    limit: Annotated[int | None, typer.Option(min=1, help="Train on the first N cases only.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("c3-train"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue the interrupted run in this folder (with its own options).")] = None,
) -> None:
    """Train with the consistency objective L = L_sup + lambda * E D(f(x), f(x')) (C3 paper, Eq. 1).

    Writes OUT/model.safetensors (read by `c3 evaluate --model`), history.csv, train.json and a
    resumable checkpoint. Under `torchrun` it trains with DistributedDataParallel.
    """
    from c3_core.training.checkpoint import CheckpointError
    from c3_core.training.command import TrainInputError, TrainRequest, resume_train_request, run_training

    echo = lambda m: typer.echo(m, err=True)  # noqa: E731
    if resume is not None:
        clash = [p for p in ctx.params if p not in ("resume", "quiet", "workers", "device")
                 and ctx.get_parameter_source(p).name != "DEFAULT"]
        if clash:
            raise _fail(f"--resume continues a run with the options it was started with; drop --{', --'.join(c.replace('_', '-') for c in clash)}")
        try:
            request = resume_train_request(str(resume), quiet, workers, device if device != "cpu" else None)
        except (CheckpointError, TrainInputError, TypeError) as exc:
            raise _fail(f"--resume {resume}: {exc}") from None
        raise typer.Exit(run_training(request, _host(), echo, resume=True))
    options = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "lam": lam,
        "lam_shape": lam_schedule, "lam_warmup_epochs": lam_warmup_epochs, "augment": augment,
        "use_gate": not no_gate, "seed": seed, "amp": amp, "checkpoint_every": checkpoint_every,
    }
    request = TrainRequest(
        modality=modality, data=_absolute(data), model=model, init=_absolute(init), neighbourhood=_absolute(neighborhood),
        members=members, k=k, teacher=_absolute(teacher), gate_file=_absolute(gate_file), heldout=heldout,
        device=device, workers=workers, limit=limit, out=str(out), quiet=quiet, options=options,
    )
    raise typer.Exit(run_training(request, _host(), echo))


@app.command()
def experiment(
    modality: Annotated[list[str] | None, typer.Option("--modality", "-m", help="Modality (repeatable; default: every installed one).")] = None,
    seeds: Annotated[int | None, typer.Option(min=1, help="Seeds per row (default: the size's: 2, --full 5).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke size (a few minutes).")] = False,
    full: Annotated[bool, typer.Option("--full", help="GPU-scale size: every case, 5 seeds, long training (use with --device cuda).")] = False,
    out: Annotated[Path, typer.Option(help="Output folder: runs, checkpoints and stores (the same command resumes it).")] = Path("c3-experiment"),
    results: Annotated[Path | None, typer.Option(help="Markdown results file to (re)write (default OUT/results.md).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:i] (default: the size's).")] = None,
    rows: Annotated[str | None, typer.Option(help="Comma-separated row keys (default: every row).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch intra-op threads (1 is faster on a CPU shared with other jobs).")] = None,
) -> None:
    """The paper's experiments on the embedded cohorts: every row, in-domain and under a held-out shift, as Markdown tables."""
    from c3_core.experiments.paper import experiment_command

    if quick and full:
        raise _fail("--quick and --full exclude each other")
    code = experiment_command(
        modalities=list(modality or []) or None, seeds=seeds, full=full, out=str(out),
        results=str(results) if results is not None else None, device=device, quick=quick,
        echo=lambda m: typer.echo(m, err=True), rows=rows.split(",") if rows else None, threads=threads,
    )
    raise typer.Exit(code)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # `python -m c3_core.cli` (used under torchrun)
    main()
