"""The paper's experiments on the embedded cohorts, in one command.

For every installed modality (or the ones asked for): train each row (standard augmentation,
AugMix, C³ and its ablations; TTA reuses the standard model) for every seed on the source
domain, with the held-out shift family removed from the training neighbourhood; evaluate every
model in-domain and under the held-out shift with the evaluation runner; write one Markdown
table per modality and condition into the results file (atomically), with the hardware and the
wall time. Each finished run leaves ``runs/<modality>/<row>/seed<s>.json`` in the output folder,
and a run that was cut off resumes from its training checkpoint and evaluation store, so
running the same command again continues an interrupted experiment and skips finished runs.

``python -m c3_core.experiments.paper --help`` runs it without the CLI; ``nox -s paper`` runs
the default size and writes ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from c3_core.experiments.rows import BASELINE, ROWS, Row
from c3_core.experiments.sizes import Budget, Size, choose_size
from c3_core.shown_paths import portable_source, shown_args, shown_path
from c3_core.streams import STREAM_VERSION

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130


@dataclass(frozen=True)
class ExperimentConfig:
    """What to run: modalities (None = every installed one), size, rows, output folder and results file."""

    size: Size
    out: Path
    results: Path
    modalities: tuple[str, ...] | None = None
    rows: tuple[Row, ...] = ROWS
    command: str = "c3 experiment"
    extra_facts: dict[str, Any] = field(default_factory=dict)


def row_note(ctx: Any, row: Row, keys: Sequence[str]) -> str | None:
    """Why a row has no numbers of its own for this modality (None: it runs)."""
    if row.members == "editors" and not ctx.has_members("editors"):
        if ctx.editors_registered == 0:
            return f"no editors registered for {ctx.modality}"
        return (f"no admissible editor for {ctx.modality} ({ctx.editors_registered} interventional editors registered; "
                "they change the label, so they do not train the consistency term)")
    if row.members == "operators" and not ctx.has_members("editors") and "c3" in keys:
        return "same model as C³: the neighbourhood has no editor members, so physics-only is C³"
    if row.members == "operators" and not ctx.has_members("operators"):
        return f"no physics operators in the {ctx.modality} neighbourhood"
    return None


def _check_fingerprint(root: Path, modality: str, fingerprint: dict[str, Any]) -> None:
    """Refuse to mix runs of a different budget, shift or neighbourhood in one output folder."""
    from c3_core.evaluation.output import write_json
    from c3_core.experiments.context import ExperimentInputError

    folder = root / "runs" / modality
    path = folder / "experiment.json"
    canonical = json.loads(json.dumps(fingerprint, sort_keys=True))
    if path.is_file():
        stored = _portable_sources(json.loads(path.read_text(encoding="utf-8")))
        if stored != canonical:
            changed = sorted(k for k in set(stored) | set(canonical) if stored.get(k) != canonical.get(k))
            raise ExperimentInputError(
                f"{path}: this folder holds {modality} runs made with a different {', '.join(changed)}; "
                "choose another --out (or delete the folder) to start afresh"
            )
        return
    write_json(folder, "experiment.json", canonical)


def _portable_sources(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A stored fingerprint as this version writes it: its neighbourhoods' ``source`` as
    :func:`portable_source` gives it (folders made before recorded the spec file's absolute path)
    and every budget field it lacks at the field's default (fields added since)."""
    out = dict(fingerprint)
    if isinstance(out.get("budget"), dict):  # a budget field added since the folder was made had its default
        out["budget"] = json.loads(json.dumps(asdict(Budget()))) | out["budget"]
    for key in ("eval_neighbourhood", "train_neighbourhood"):
        if isinstance(out.get(key), dict) and "source" in out[key]:
            out[key] = out[key] | {"source": portable_source(out[key]["source"])}
    return out


def _eval_batch_size(ctx: Any) -> int:
    return 2 if len(ctx.spacing) >= 3 else 8


def run_modality_experiment(
    host: Any, modality: str, config: ExperimentConfig, echo: Callable[[str], None]
) -> dict[str, Any]:
    """All rows and seeds of one modality; returns what :func:`tables.render` needs."""
    from c3_core.experiments.context import ExperimentInputError, declared_experiment, prepare_context
    from c3_core.experiments.runs import finished_run, recorded_seconds, run_one

    started = time.perf_counter()
    declared = declared_experiment(host, modality)
    try:
        budget = config.size.budget(declared.budget_fields(config.size.name) if declared is not None else None)
    except ValueError as exc:
        raise ExperimentInputError(f"{modality}: the declared budget does not fit: {exc}") from None
    echo(f"[{modality}] preparing data, held-out shift and teacher")
    ctx = prepare_context(host, modality, budget, config.size.device)
    described = ctx.describe()
    _check_fingerprint(config.out, modality, {
        "budget": asdict(budget), "shift": described["shift"], "train_neighbourhood": described["train_neighbourhood"],
        "eval_neighbourhood": described["eval_neighbourhood"], "in_domain_split": ctx.in_domain_split,
        "teacher": described["teacher"], "gate": described["gate"], **ctx.operators_record(),
        "streams": STREAM_VERSION,
    })
    keys = [r.key for r in config.rows]
    notes = {r.key: row_note(ctx, r, keys) for r in config.rows}
    runs: dict[str, list[dict[str, Any]]] = {r.key: [] for r in config.rows}
    for seed in range(config.size.seeds):
        for row in config.rows:
            if notes[row.key] is not None:
                continue
            done = finished_run(config.out, modality, row.key, seed)
            if done is not None:
                echo(f"[{modality}] {row.key} seed {seed}: finished earlier, skipped")
            else:
                echo(f"[{modality}] {row.key} seed {seed}: {'evaluating' if not row.trains else 'training'}")
                done = run_one(
                    ctx, row, seed, budget, config.out, device=config.size.device,
                    eval_batch_size=_eval_batch_size(ctx), echo=lambda m: echo(f"  {m}"), tta_views=budget.tta_views,
                )
                m = done["conditions"]
                echo(f"[{modality}] {row.key} seed {seed}: {done['seconds']:.0f} s; "
                     + ", ".join(f"{c} {_headline(ctx.task, m[c]['metrics'])}" for c in m))
            runs[row.key].append(done)
    table_rows = [[r.label, notes[r.key] if notes[r.key] is not None else runs[r.key]] for r in config.rows]
    class_names = list((ctx.teacher or ctx.make_model(None)).class_names)
    paired: dict[str, Any] = {}
    if BASELINE in keys:
        from c3_core.experiments.paired import modality_paired

        echo(f"[{modality}] paired differences to {BASELINE} ({budget.n_boot} bootstrap replicates)")
        by_key = modality_paired(config.out, modality, ctx.task, class_names,
                                 [r.key for r in config.rows if notes[r.key] is None], config.size.seeds,
                                 n_boot=budget.n_boot)
        paired = {r.label: by_key[r.key] for r in config.rows if r.key in by_key}
    return {
        "context": described, "class_names": class_names, "rows": table_rows, "paired": paired,
        "budget": asdict(budget), "seconds": time.perf_counter() - started,
        "recorded_seconds": sum(recorded_seconds(config.out, modality, r) for rs in runs.values() for r in rs),
    }


def _headline(task: str, metrics: dict[str, Any]) -> str:
    key = "lesion_dice" if task == "segmentation" else "auroc_macro"
    v = metrics.get(key)
    return f"{key} {v:.3f}" if isinstance(v, float) else f"{key} n/a"


def run_experiment(config: ExperimentConfig, host: Any, echo: Callable[[str], None]) -> dict[str, Any]:
    """Run every modality and write the results file; returns the facts and per-modality results."""
    import os

    from c3_core.evaluation.output import prepare_output_dir, write_atomic, write_json
    from c3_core.experiments import hardware, tables
    from c3_core.experiments.context import ExperimentInputError

    installed = host.modalities()
    wanted = list(config.modalities) if config.modalities else installed
    unknown = [m for m in wanted if m not in installed]
    if unknown:
        raise ExperimentInputError(f"--modality {', '.join(unknown)}: not installed (installed: {', '.join(installed) or 'none'})")
    if not wanted:
        raise ExperimentInputError("no modality installed: install a plugin (e.g. c3-cxr)")
    started = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    out = prepare_output_dir(config.out)
    config = ExperimentConfig(config.size, out, config.results, tuple(wanted), config.rows, config.command, config.extra_facts)
    results = [run_modality_experiment(host, m, config, echo) for m in wanted]
    hw = hardware.describe(config.size.device)
    facts = {
        "command": config.command, "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "size": config.size.name, "size_note": config.size.note, "seeds": config.size.seeds,
        "hardware": hw, "seconds": time.perf_counter() - started, "load_start": load_start,
        "load_end": hw.get("load_average_1min"), "n_boot": results[0]["budget"]["n_boot"],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **config.extra_facts,
    }
    results_path = Path(config.results)
    existing = results_path.read_text(encoding="utf-8") if results_path.is_file() else None
    text = tables.render(tables.split_intro(existing), facts, results)
    write_atomic(results_path.parent.resolve(), results_path.name, text)
    write_json(out, "experiment.json", {"facts": facts, "modalities": results})
    echo(f"wrote {results_path} ({facts['seconds'] / 60:.1f} min)")
    return {"facts": facts, "modalities": results}


def rewrite_results(out: Path, results: Path) -> None:
    """Render the results file again from a finished experiment's ``OUT/experiment.json`` (the
    stored numbers, facts and timings; nothing is recomputed), keeping its hand-written intro."""
    from c3_core.evaluation.output import write_atomic
    from c3_core.experiments import tables
    from c3_core.experiments.context import ExperimentInputError

    path = Path(out) / "experiment.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        facts, modalities = stored["facts"], stored["modalities"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ExperimentInputError(f"{path}: no finished experiment to render ({exc})") from None
    existing = results.read_text(encoding="utf-8") if results.is_file() else None
    write_atomic(results.parent.resolve(), results.name, tables.render(tables.split_intro(existing), facts, modalities))


def _invocation() -> str:
    """How this process was started (``python -m c3_core.experiments.paper ...``, ``c3 ...``)."""
    prog = Path(sys.argv[0]).name
    if prog == "paper.py":
        prog = "python -m c3_core.experiments.paper"
    return " ".join([prog, *(shlex.quote(a) for a in shown_args(sys.argv[1:]))])


def _canonical_command(
    modalities: Sequence[str] | None, seeds: int | None, full: bool, quick: bool, out: str, results: str | None,
    device: str | None, threads: int | None = None, powered: bool = False, lam_warmup_epochs: float | None = None,
) -> str:
    parts = ["c3", "experiment"]
    parts += ["--quick"] if quick else ["--full"] if full else ["--powered"] if powered else []
    for m in modalities or ():
        parts += ["--modality", m]
    if seeds is not None:
        parts += ["--seeds", str(seeds)]
    parts += ["--out", shown_path(out)]
    if results is not None:
        parts += ["--results", shown_path(results)]
    if device is not None:
        parts += ["--device", device]
    if threads is not None:
        parts += ["--threads", str(threads)]
    if lam_warmup_epochs is not None:
        parts += ["--lam-warmup-epochs", f"{float(lam_warmup_epochs):g}"]
    return shlex.join(parts)


def experiment_command(
    *, modalities: Sequence[str] | None, seeds: int | None, full: bool, out: str, results: str | None,
    device: str | None, quick: bool, echo: Callable[[str], None] = print, rows: Sequence[str] | None = None,
    threads: int | None = None, powered: bool = False, lam_warmup_epochs: float | None = None,
) -> int:
    """`c3 experiment`: returns the exit code (0 ok, 2 bad input, 3 a run failed, 130 interrupted).

    ``results`` is the Markdown file to (re)write (default ``OUT/results.md``); ``seeds`` and
    ``device`` override the size's defaults; ``rows`` picks a subset of the rows by key;
    ``threads`` sets torch's intra-op threads for the run (on a CPU shared with other jobs, 1 is
    faster: small reductions otherwise wait for a descheduled second thread); ``lam_warmup_epochs``
    ramps λ of the C³ rows and AugMix's JSD weight in linearly over that many epochs.
    """
    from c3_core.evaluation.output import OutputError
    from c3_core.experiments.context import ExperimentInputError
    from c3_core.experiments.rows import rows_by_key
    from c3_core.plugins.host import PluginHost

    try:
        size = choose_size(quick=quick, full=full, seeds=seeds, device=device, powered=powered,
                           lam_warmup_epochs=lam_warmup_epochs)
        left_out = dict(size.left_out or {}) if rows is None else {}
        chosen_rows = rows_by_key(rows if rows is not None or not left_out
                                  else [r.key for r in rows_by_key() if r.key not in left_out])
        if threads is not None and int(threads) < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
    except ValueError as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    if size.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            echo(f"error: --device {size.device}: no CUDA device here (the --full size is meant for a GPU; "
                 "add --device cpu to run it on the CPU anyway)")
            return EXIT_USAGE
    command = _canonical_command(modalities, seeds, full, quick, out, results, device, threads, powered, lam_warmup_epochs)
    config = ExperimentConfig(
        size, Path(out), Path(results) if results else Path(out) / "results.md",
        tuple(modalities) if modalities else None, chosen_rows, command,
        {"invoked_as": _invocation(),
         "rows_left_out": {r.label: left_out[r.key] for r in rows_by_key() if r.key in left_out}},
    )
    import torch

    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        run_experiment(config, PluginHost().load(), echo)
    except ExperimentInputError as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        echo(f"interrupted: finished runs and checkpoints are in {out}; run the same command again to continue")
        return EXIT_INTERRUPTED
    except OutputError as exc:
        echo(f"error: {exc}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - a failed run is reported with its cause, exit 3
        from c3_core.training.trainer import Interrupted

        if isinstance(exc, Interrupted):
            echo(f"interrupted ({exc}): run the same command again to continue")
            return EXIT_INTERRUPTED
        echo(f"error: the experiment failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    finally:
        torch.set_num_threads(before)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m c3_core.experiments.paper`` (the same options as `c3 experiment`)."""
    p = argparse.ArgumentParser(prog="python -m c3_core.experiments.paper", description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", "-m", action="append", dest="modalities", help="a modality (repeat; default: all installed)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per row (default: the size's)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke size (minutes)")
    size.add_argument("--powered", action="store_true",
                      help="CPU size that can see an effect (seeded initialisation, 3 seeds, 1,000 test cases; hours)")
    size.add_argument("--full", action="store_true", help="GPU-scale size (every case, 5 seeds, long training)")
    p.add_argument("--out", default="c3-experiment", help="output folder (runs, checkpoints, stores; resumable)")
    p.add_argument("--results", default=None, help="Markdown results file to write (default OUT/results.md)")
    p.add_argument("--device", default=None, help="cpu or cuda[:i] (default: the size's)")
    p.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's; 1 is faster on a CPU shared with other jobs)")
    p.add_argument("--lam-warmup-epochs", type=float, default=None,
                   help="ramp λ of the C³ rows and AugMix's JSD weight in over this many epochs (default: the size's, 0)")
    p.add_argument("--render-only", action="store_true",
                   help="only rewrite the results file from OUT/experiment.json of a finished experiment")
    a = p.parse_args(argv)
    if a.render_only:
        from c3_core.experiments.context import ExperimentInputError

        results = Path(a.results) if a.results else Path(a.out) / "results.md"
        try:
            rewrite_results(Path(a.out), results)
        except ExperimentInputError as exc:
            print(f"error: {exc}")
            return EXIT_USAGE
        print(f"wrote {results}")
        return EXIT_OK
    return experiment_command(
        modalities=a.modalities, seeds=a.seeds, full=a.full, out=a.out, results=a.results, device=a.device,
        quick=a.quick, rows=a.rows.split(",") if a.rows else None, threads=a.threads, powered=a.powered,
        lam_warmup_epochs=a.lam_warmup_epochs,
    )


if __name__ == "__main__":
    sys.exit(main())
