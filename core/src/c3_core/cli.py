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
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Also import every contribution's target (slow: imports torch); exit 3 if a plugin is broken or degraded.")] = False,
) -> None:
    """List installed plugins: version, c3-core range, modalities, contributions, status.

    Contribution targets are not imported, so this is fast. A target that fails to import makes
    its plugin `degraded` (the contribution and the error named): found by --check, or by any
    command that loads it (`c3 evaluate`, `c3 ops` for a plugin without a catalogue).
    """
    host = _host()
    if check:
        host.check()
    rows = [p.to_dict() for p in host.plugins]
    broken = check and any(r["status"] in ("error", "degraded") for r in rows)
    if as_json:
        typer.echo(json.dumps({"c3_core": c3_core.__version__, "checked": check, "plugins": rows}, indent=2))
        raise typer.Exit(EXIT_RUN_FAILED if broken else EXIT_OK)
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    caption = "every target imported" if check else "targets not imported: `c3 plugins --check` imports each one"
    table = Table(title=f"c3 plugins (c3-core {c3_core.__version__})", caption=caption)
    table.add_column("name", no_wrap=True)
    for col in ("version", "core range", "modalities", "contributions", "status"):
        table.add_column(col, overflow="fold")
    for r in rows:
        counts = ", ".join(f"{v} {k}" for k, v in r["contributions"].items() if v)
        status = Text(r["status"], style="red" if r["error"] and r["status"] != "disabled" else "")
        if r["failures"]:
            status.append("".join(f"\n{f['id']}: {f['error']}" for f in r["failures"]))
        elif r["error"]:
            status.append(f": {r['error']}")
        table.add_row(r["name"], r["version"], r["core_range"], ", ".join(r["modalities"]), counts, status)
    Console().print(table)
    if not rows:
        typer.echo("no plugins installed (pip install c3-cxr c3-mri c3-fundus)")
    raise typer.Exit(EXIT_RUN_FAILED if broken else EXIT_OK)


@app.command()
def ops(
    modality: Annotated[list[str] | None, typer.Option("--modality", "-m", help="Only this modality (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The operator and editor catalogue: domains, units and severity ranges.

    Read from the catalogue each plugin ships (no torch import); an operator a plugin's catalogue
    lacks is imported to describe it, and a failure is shown in its row.
    """
    from c3_core.plugins.catalogue import CATALOGUE_KINDS, entries

    host = _host()
    installed = sorted({c.modality for k in CATALOGUE_KINDS for c in host.registry(k)})
    unknown = [m for m in modality or [] if m not in installed]
    if unknown:
        raise _fail(f"unknown modality {', '.join(repr(m) for m in unknown)} (installed: {', '.join(installed) or 'none'})")
    listed = [e.to_dict() for e in entries(host, modalities=modality or None)]
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    _print_catalogue(listed)


def _print_catalogue(listed: list[dict[str, Any]]) -> None:
    """One table per kind; ids never wrap or cut (the other columns fold), so 80 columns suffice."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for kind in ("operator", "editor"):
        rows = [d for d in listed if d["kind"] == kind]
        if not rows:
            continue
        table = Table(title=f"{kind}s", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("id", no_wrap=True, min_width=max(len(d["id"]) for d in rows))
        table.add_column("domain", overflow="fold", max_width=16)
        table.add_column("severity", overflow="fold", max_width=26)
        table.add_column("summary", overflow="fold")
        for d in rows:
            if "error" in d:
                table.add_row(d["id"], "", "", Text(d["error"], style="red"))
                continue
            s = d["severity"]
            flags = [f for f in ("spatial" if d["spatial"] else "", d.get("intent", "")) if f]
            table.add_row(
                d["id"], " ".join([d["domain"], *flags]),
                Text(f"{s['name']}\n{s['identity']:g} → {s['extreme']:g} {s['unit']}"), Text(d["summary"]),
            )
        console.print(table)


DataOption = Annotated[list[str] | None, typer.Option("--data-option", metavar="KEY=VALUE", help="Option of the dataset factory, e.g. image_root=/data/images or id_column=StudyID (repeatable).")]
ModelOption = Annotated[list[str] | None, typer.Option("--model-option", metavar="KEY=VALUE", help="Option of the model factory, e.g. pretrained=densenet121-res224-chex (repeatable).")]
KeyFileOption = Annotated[Path | None, typer.Option("--key-file", help="Pseudonym key file (default: $C3_PSEUDONYM_KEY_FILE or ~/.config/c3/pseudonym.key, created on first use). Never inside --out.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty --out: replace only the files this command writes, delete nothing else.")]
MaxCounterfactualsOption = Annotated[int | None, typer.Option("--max-counterfactuals", min=1, help="Refuse requests of more counterfactuals (cases x K) than this (default 10,000,000).")]


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` items as a dict, or a usage error (exit 2)."""
    from c3_core.factory_options import FactoryOptionError, parse_pairs

    try:
        return parse_pairs(items or [], flag)
    except FactoryOptionError as exc:
        raise _fail(str(exc)) from None


def _key_path(value: Path | None) -> str | None:
    return None if value is None else str(value.expanduser().resolve())


def _absolute(value: str | Path | None) -> str | None:
    """An existing file or folder as an absolute path (so a resumed run finds it from anywhere);
    anything else (a registered id, None) unchanged."""
    if value is None:
        return None
    try:
        Path(value).stat()
    except PermissionError:
        raise _fail(f"{value}: permission denied") from None
    except OSError:
        return str(value)
    return str(Path(value).resolve())


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
    data_option: DataOption = None,
    model_option: ModelOption = None,
    key_file: KeyFileOption = None,
    overwrite: OverwriteOption = False,
    max_counterfactuals: MaxCounterfactualsOption = None,
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
            "--data-option": data_option, "--model-option": model_option, "--overwrite": overwrite,
            "--max-counterfactuals": max_counterfactuals,
        }
        clash = [name for name, value in given.items() if value]
        if clash:
            raise _fail(f"--resume continues a run with the options it was started with; drop {', '.join(clash)}")
        try:
            request = resume_request(str(resume), quiet=quiet, workers=workers, key_file=_key_path(key_file))
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
            data_options=_pairs(data_option, "--data-option"), model_options=_pairs(model_option, "--model-option"),
            key_file=_key_path(key_file), overwrite=overwrite, max_counterfactuals=max_counterfactuals,
        )
    from c3_core.report import try_render_report

    echo = lambda m: typer.echo(m, err=True)  # noqa: E731
    # the report renders on the writing process once results are written; it never raises
    # (a missing extra such as matplotlib is a warning)
    code = run_evaluation(request, _host(), echo=echo, on_written=lambda out: try_render_report(out, echo))
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
    editor: Annotated[str, typer.Argument(help="A diffusion or structure editor id (see `c3 ops`), e.g. cxr.diffusion, cxr.heart_area, mri.lesion_volume.")],
    out: Annotated[Path, typer.Option(help="The .safetensors file to write (its .json config goes beside it; never overwritten).")],
    data: Annotated[str | None, typer.Option(help="Registered dataset id, or a CSV / folder in the modality's conventions (default: the demo cohort).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs (default: the editor's).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Minibatch size (default: the editor's).")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="AdamW learning rate (default: the editor's).")] = None,
    size: Annotated[int | None, typer.Option(min=8, help="Working resolution in px (default: the editor's).")] = None,
    grid: Annotated[str | None, typer.Option(help="3-D structure editors: working grid D,H,W (default: the editor's, e.g. 36,40,20).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, noise and minibatches.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N training cases.")] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    data_option: DataOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted fit from the last finished epoch in OUT.ckpt/ (same options).")] = False,
) -> None:
    """Fit a learned editor's model on a cohort's training split; use it with the editor option weights=PATH.

    Diffusion editors: the denoiser. Structure editors (2-D area, 3-D volume): segmentor, conditional
    VAE and Seg-CFT fine-tuning, on the plugin's demo training split. Every finished epoch is
    checkpointed in OUT.ckpt/ (removed once OUT is written); after Ctrl-C (exit 130) the same
    command with --resume continues to the same weights."""
    from c3_core.editors.diffusion_fit import fit_command
    from c3_core.editors.structure_fit import fit_command as fit_structure
    from c3_core.editors.structure_fit import is_structure_editor

    host = _host()
    try:
        cls = host.registry("editors").get(editor).load()
    except Exception:  # noqa: BLE001 - the diffusion path reports unknown or broken editors
        cls = None
    if is_structure_editor(cls):
        if data_option:
            raise _fail("--data-option: structure editors fit on their plugin's demo training split")
        raise typer.Exit(fit_structure(
            editor, out, data=_absolute(data), epochs=epochs, batch_size=batch_size, lr=lr, size=size, grid=grid,
            seed=seed, limit=limit, device=device, host=host, echo=typer.echo, resume=resume,
        ))  # fmt: skip
    if grid is not None:
        raise _fail("--grid applies to 3-D structure editors only")
    code = fit_command(
        editor, out, data=_absolute(data),
        epochs=epochs, batch_size=batch_size, lr=lr, size=size, seed=seed, limit=limit, device=device,
        host=host, echo=typer.echo, data_options=_pairs(data_option, "--data-option"), resume=resume,
    )
    raise typer.Exit(code)


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A folder written by `c3 evaluate`.")],
    readiness: Annotated[Path | None, typer.Option(help="Site-readiness thresholds (TOML); exit 4 if any fails.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the HTML (default RESULTS_DIR/report.html).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files at --out (and model_card.md beside it) that c3 report did not write.")] = False,
) -> None:
    """Re-render the HTML report and model card from saved results; optionally check site readiness."""
    from c3_core.report.command import report_command

    raise typer.Exit(report_command(results_dir, readiness=readiness, out=out, echo=typer.echo, overwrite=overwrite))


@app.command()
def generate(
    modality: Annotated[str | None, typer.Option("--modality", "-m", help="Modality (default: the only installed one).")] = None,
    data: Annotated[str | None, typer.Option(help="Registered dataset id, or a CSV / folder in the modality's conventions.")] = None,
    neighborhood: Annotated[Path | None, typer.Option("--neighborhood", "--neighbourhood", help="Neighbourhood spec (TOML); default: the dataset's.")] = None,
    op: Annotated[list[str] | None, typer.Option("--op", help="Operator or editor id to draw from (repeatable; instead of --neighborhood).")] = None,
    op_option: Annotated[list[str] | None, typer.Option("--op-option", help="KEY=VALUE for every --op's constructor (repeatable), e.g. weights=PATH from `c3 editor fit`.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Counterfactuals per case.")] = 4,
    seed: Annotated[int, typer.Option(help="Base seed: counterfactual k of exam e is drawn from the stream keyed by (seed, e) at counter k.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases.")] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("c3-generated"),
    data_option: DataOption = None,
    key_file: KeyFileOption = None,
    overwrite: OverwriteOption = False,
    max_failures: Annotated[int, typer.Option(min=0, help="Stop once more than this many cases failed to read (exit 3).")] = 100,
    max_counterfactuals: MaxCounterfactualsOption = None,
) -> None:
    """Write counterfactual images (16-bit PNG for 2-D, NIfTI for 3-D) with their provenance JSON."""
    from c3_core.generate import generate_command

    code = generate_command(
        modality, _absolute(data), _absolute(neighborhood), list(op or []), k, seed, out, limit,
        device=device, host=_host(), echo=lambda m: typer.echo(m, err=True),
        data_options=_pairs(data_option, "--data-option"), key_file=_key_path(key_file), overwrite=overwrite,
        max_failures=max_failures, max_counterfactuals=max_counterfactuals,
        op_options=_pairs(op_option, "--op-option"),
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
    seed: Annotated[int, typer.Option(help="Seed of the initialisation, shuffling, augmentation, dropout and counterfactual draws.")] = 0,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1 ...")] = "cpu",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bfloat16 autocast on CUDA.")] = False,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Also checkpoint every N steps (0: each epoch).")] = 0,
    heldout: Annotated[int, typer.Option(min=1, help="Test-split cases for the held-out consistency measure.")] = 64,
    limit: Annotated[int | None, typer.Option(min=1, help="Train on the first N cases only.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("c3-train"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue the interrupted run in this folder (with its own options).")] = None,
    data_option: DataOption = None,
    model_option: ModelOption = None,
    overwrite: OverwriteOption = False,
    max_counterfactuals: MaxCounterfactualsOption = None,
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
        data_options=_pairs(data_option, "--data-option"), model_options=_pairs(model_option, "--model-option"),
        overwrite=overwrite, max_counterfactuals=max_counterfactuals,
    )
    raise typer.Exit(run_training(request, _host(), echo))


@app.command()
def experiment(
    modality: Annotated[list[str] | None, typer.Option("--modality", "-m", help="Modality (repeatable; default: every installed one).")] = None,
    seeds: Annotated[int | None, typer.Option(min=1, help="Seeds per row (default: the size's: 2, --powered 3, --full 5).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke size (a few minutes).")] = False,
    full: Annotated[bool, typer.Option("--full", help="GPU-scale size: every case, 5 seeds, long training (use with --device cuda).")] = False,
    powered: Annotated[bool, typer.Option("--powered", help="CPU size that can see an effect: every row from a seeded initialisation, 3 seeds, 1,000 test cases (hours; resumable).")] = False,
    out: Annotated[Path, typer.Option(help="Output folder: runs, checkpoints and stores (the same command resumes it).")] = Path("c3-experiment"),
    results: Annotated[Path | None, typer.Option(help="Markdown results file to (re)write (default OUT/results.md).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda[:i] (default: the size's).")] = None,
    rows: Annotated[str | None, typer.Option(help="Comma-separated row keys (default: every row).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch intra-op threads (1 is faster on a CPU shared with other jobs).")] = None,
    lam_warmup_epochs: Annotated[float | None, typer.Option(min=0.0, help="Ramp λ of the C³ rows and AugMix's JSD weight in linearly over this many epochs (default 0: full weight from the first step).")] = None,
    study: Annotated[str, typer.Option(help="paper: the paper's comparison of training rows; failure: whether each exam's verdict predicts its failure under the held-out shifts.")] = "paper",
    cases: Annotated[int | None, typer.Option(min=1, help="--study failure: test cases per modality (default 1000 exams, 120 volumes for a segmentation modality; --quick 120 and 12).")] = None,
    data: Annotated[str | None, typer.Option(help="--study failure on your own cohort: dataset id or path (one --modality).")] = None,
    split: Annotated[str, typer.Option(help="--study failure with --data: the split of in-domain test cases.")] = "test",
    data_option: Annotated[list[str] | None, typer.Option("--data-option", help="--study failure with --data: KEY=VALUE for the dataset factory (repeatable).")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="--study failure with --data: trained model (repeatable: one per seed; together the ensemble).")] = None,
    teacher: Annotated[str | None, typer.Option(help="--study failure with --data: the validity gate's teacher model.")] = None,
    gate: Annotated[Path | None, typer.Option("--gate", help="--study failure with --data: thresholds from `c3 gate calibrate`.")] = None,
    shift: Annotated[list[str] | None, typer.Option("--shift", help="--study failure with --data: a held-out shift OP@SEVERITY[+OP@SEVERITY] (repeatable).")] = None,
    neighborhood: Annotated[Path | None, typer.Option("--neighborhood", help="--study failure with --data: neighbourhood spec (default: the dataset's).")] = None,
) -> None:
    """The paper's experiments on the embedded cohorts (every row, in-domain and under a held-out shift), or the failure-prediction study."""
    from c3_core.experiments.paper import experiment_command

    if sum((quick, full, powered)) > 1:
        raise _fail("--quick, --powered and --full exclude each other")
    if study not in ("paper", "failure"):
        raise _fail(f"--study must be 'paper' or 'failure', got {study!r}")
    if study == "failure":
        from c3_core.experiments.failure_report import failure_command
        from c3_core.experiments.failure_study import StudySource

        if full or powered or rows or lam_warmup_epochs is not None:
            raise _fail("--study failure takes neither --full, --powered, --rows nor --lam-warmup-epochs")
        source = StudySource(
            data=_absolute(data), split=split, data_options=_pairs(data_option, "--data-option"),
            models=tuple(_absolute(m) or m for m in model or ()), teacher=_absolute(teacher),
            gate=_absolute(gate), shifts=tuple(shift or ()), neighbourhood=_absolute(neighborhood),
        )
        if not source.is_demo and len(modality or []) != 1:
            raise _fail("--study failure with --data / --model / --shift studies one --modality")
        raise typer.Exit(failure_command(
            modalities=list(modality or []) or None, seeds=seeds, quick=quick, out=str(out),
            results=str(results) if results is not None else None, device=device, threads=threads, cases=cases,
            echo=lambda m: typer.echo(m, err=True), source=source,
        ))
    own = {"--cases": cases, "--data": data, "--data-option": data_option, "--model": model, "--teacher": teacher,
           "--gate": gate, "--shift": shift, "--neighborhood": neighborhood}
    given = [k for k, v in own.items() if v] + (["--split"] if split != "test" else [])
    if given:
        raise _fail(f"{', '.join(given)} belong to --study failure")
    code = experiment_command(
        modalities=list(modality or []) or None, seeds=seeds, full=full, out=str(out),
        results=str(results) if results is not None else None, device=device, quick=quick,
        echo=lambda m: typer.echo(m, err=True), rows=rows.split(",") if rows else None, threads=threads,
        powered=powered, lam_warmup_epochs=lam_warmup_epochs,
    )
    raise typer.Exit(code)


def main() -> None:
    """Console entry point. The process's ``malloc`` keeps freed memory for reuse
    (:func:`c3_core.allocator.keep_freed_memory`: each batch reuses the pages the last one
    mapped) unless the user chose the allocator's behaviour."""
    from c3_core.allocator import keep_freed_memory

    keep_freed_memory()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # `python -m c3_core.cli` (used under torchrun)
    main()
