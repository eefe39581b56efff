"""One (modality, row, seed) run: train with the Trainer, evaluate in-domain and under the held-out shift.

Folder of a run: ``runs/<modality>/<row>/seed<s>/`` with ``train/`` (``model.safetensors``,
``train.json``, ``checkpoint/`` while unfinished) and ``eval-in_domain/``, ``eval-held_out/``
(the evaluation stores, ``results.sqlite``); the run's result is ``seed<s>.json`` beside the
folder, written last and atomically, so its presence means the run is finished.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c3_core.evaluation.output import write_json
from c3_core.evaluation.scoring import GateSettings
from c3_core.experiments.casemetrics import bootstrap_intervals, case_table, prediction_flips, table_metrics
from c3_core.experiments.context import ModalityContext
from c3_core.experiments.rows import Row
from c3_core.experiments.sizes import Budget
from c3_core.model import ModelBundle, load_state_dict_safely
from c3_core.seeding import derive_seed, generator_from_seed
from c3_core.shown_paths import portable_source
from c3_core.training.rng import StepSeeds, seeded_rng

CONDITIONS = ("in_domain", "held_out")


def _finite(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def fresh_model(ctx: ModalityContext, init: str | None, seed: int) -> ModelBundle:
    """The row's starting network: ``init`` weights (e.g. the demo reference model) or a random
    initialisation seeded by (seed, modality), without touching the global RNG's state."""
    with seeded_rng(derive_seed(seed, "experiment-init", ctx.modality)):  # the CPU's RNG, as before
        return ctx.make_model(init)


def row_train_options(row: Row, budget: Budget, seed: int) -> Any:
    """The :class:`~c3_core.training.trainer.TrainOptions` of one row and seed under ``budget``
    (a warm-up ramps λ and AugMix's JSD weight in linearly)."""
    from c3_core.training.trainer import TrainOptions

    return TrainOptions(
        epochs=budget.epochs, batch_size=budget.batch_size, lr=budget.lr, seed=seed,
        lam_warmup_epochs=budget.lam_warmup_epochs, lam_shape="linear" if budget.lam_warmup_epochs else "constant",
        **row.train_options(budget.lam),
    )


def train_row(
    ctx: ModalityContext, row: Row, seed: int, budget: Budget, folder: Path, echo: Callable[[str], None]
) -> Path:
    """Train (or resume, or reuse) the row's model; returns the weights file."""
    from c3_core.training.checkpoint import save_weights
    from c3_core.training.trainer import Trainer

    weights = folder / "model.safetensors"
    if weights.is_file() and (folder / "train.json").is_file():
        return weights
    nb = None
    options = row_train_options(row, budget, seed)
    if options.lam > 0:
        from c3_core.neighbourhood import Neighbourhood

        nb = Neighbourhood(ctx.restricted_spec(row.members, budget.k_train), ctx.make_operator)
    bundle = fresh_model(ctx, budget.init, seed)
    ckpt = folder / "checkpoint"
    step_seed = StepSeeds(derive_seed(seed, "experiment-step-rng", ctx.modality, row.key))
    trainer = Trainer(
        bundle, ctx.train_set, nb, options, teacher=ctx.teacher if row.use_gate else None, gate=ctx.gate or GateSettings(),
        checkpoint_dir=ckpt, echo=echo, checkpoint_meta={"experiment_row": row.key, "seed": seed}, on_step=step_seed,
    )
    if (ckpt / "state.json").is_file():
        trainer.resume(ckpt)
        echo(f"  resuming at epoch {trainer.state.epoch + 1}")
    started = time.perf_counter()
    history = step_seed.fit(trainer, ctx.device)
    save_weights(weights, bundle.network, {"modality": ctx.modality, "row": row.key, "seed": str(seed)})
    write_json(folder, "train.json", _finite({
        "row": row.key, "seed": seed, "options": options.__dict__, "init": budget.init,
        "neighbourhood": None if nb is None else nb.spec.to_dict() | {"source": portable_source(nb.spec.source)},
        "teacher": ctx.teacher_id if row.use_gate and nb is not None else None,
        "history": history, "seconds_this_session": round(time.perf_counter() - started, 2),
    }))
    return weights


def load_model(ctx: ModalityContext, budget: Budget, weights: Path) -> ModelBundle:
    """The architecture the row trained, with its trained weights."""
    bundle = fresh_model(ctx, budget.init, 0)
    load_state_dict_safely(weights, bundle.network)
    return bundle


def evaluate_condition(
    ctx: ModalityContext, bundle: ModelBundle, model_id: str, condition: str, folder: Path,
    *, budget: Budget, device: str, batch_size: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate ``bundle`` on one condition with the evaluation runner; returns the condition's
    result (metrics, seed-0-style bootstrap CIs, the runner's own headline numbers) and its rows."""
    from c3_core.evaluation.runner import PreparedModality, finish_modality, run_modality
    from c3_core.evaluation.store import STORE_NAME, ResultStore

    data = ctx.test_set if condition == "in_domain" else ctx.shifted_set
    prepared = PreparedModality(
        ctx.modality, f"{ctx.dataset_id}[{ctx.in_domain_split}{'' if condition == 'in_domain' else '+shift'}]",
        data, len(data), ctx.eval_spec, ctx.eval_nb, bundle, model_id, ctx.teacher, ctx.teacher_id,
    )
    from c3_core.pseudonyms import Pseudonymiser, load_key

    prepared.pseudonymise = Pseudonymiser(load_key())  # the stores name exams by pseudonym, like c3 evaluate's
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultStore(folder / STORE_NAME, create=True)
    try:
        store.set_fingerprint(prepared.fingerprint())
        started = time.perf_counter()
        run_modality(prepared, store, gate=ctx.gate or GateSettings(), device=device, batch_size=batch_size)
        run = finish_modality(prepared, store, time.perf_counter() - started)
        rows = list(store.iter_cases(ctx.modality))
    finally:
        store.close()
    table = case_table(ctx.task, run.class_names, rows)
    g = generator_from_seed(derive_seed(0, "experiment-bootstrap", ctx.modality, condition))
    s = run.summary
    runner_view = {
        "utility_mean": s["utility"]["mean"], "utility_p10": s["utility"]["p10"],
        "agreement": s["neighbourhood_agreement"], "flip_rate": s["flip_rate"],
        **({"lesion_dice": s["lesion_dice_mean"], "dice": s["dice_volume_mean"]} if ctx.task == "segmentation"
           else {"auroc_macro": s["auroc_macro"], "ece": s["ece"], "brier": s["brier"]}),
    }
    result = {
        "n": table.n, "metrics": table_metrics(table), "ci95": bootstrap_intervals(table, g, budget.n_boot),
        "runner_summary": runner_view, "gate": s["gate"], "failed_cases": s.get("n_failed", 0),
    }
    return result, rows


def run_one(
    ctx: ModalityContext, row: Row, seed: int, budget: Budget, root: Path, *,
    device: str, eval_batch_size: int, echo: Callable[[str], None], tta_views: int,
) -> dict[str, Any]:
    """Train (unless the row reuses another's weights) and evaluate; writes and returns the run JSON."""
    from c3_core.experiments.tta import tta_bundle

    folder = root / "runs" / ctx.modality / row.key / f"seed{seed}"
    started = time.perf_counter()
    source = row.weights_of or row.key
    weights = train_row(ctx, row, seed, budget, root / "runs" / ctx.modality / source / f"seed{seed}" / "train", echo)
    train_seconds = time.perf_counter() - started
    bundle = load_model(ctx, budget, weights)
    if row.tta:
        bundle = tta_bundle(bundle, modality=ctx.modality, spacing=ctx.spacing, views=tta_views,
                            seed=derive_seed(seed, "experiment-tta"))
    model_id = f"{ctx.model_id}@{source}/seed{seed}{'+tta' if row.tta else ''}"
    conditions: dict[str, Any] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    for condition in CONDITIONS:
        t0 = time.perf_counter()
        conditions[condition], rows[condition] = evaluate_condition(
            ctx, bundle, model_id, condition, folder / f"eval-{condition}", budget=budget, device=device,
            batch_size=eval_batch_size,
        )
        conditions[condition]["seconds"] = round(time.perf_counter() - t0, 2)
    conditions["held_out"]["metrics"]["shift_flips"] = prediction_flips(rows["in_domain"], rows["held_out"])
    result = _finite({
        "modality": ctx.modality, "row": row.key, "seed": seed, "weights": str(weights.relative_to(root)),
        "train_seconds": round(train_seconds, 2), "seconds": round(time.perf_counter() - started, 2),
        "conditions": conditions,
    })
    write_json(root / "runs" / ctx.modality / row.key, f"seed{seed}.json", result)
    return result


def recorded_seconds(root: Path, modality: str, result: dict[str, Any]) -> float:
    """Compute a finished run recorded, whichever sessions made it: its training epochs' seconds
    (``train.json``'s history; resumed epochs included once) plus its evaluations' seconds."""
    total = sum(float(c.get("seconds") or 0.0) for c in (result.get("conditions") or {}).values())
    train = root / "runs" / modality / str(result.get("row")) / f"seed{result.get('seed')}" / "train" / "train.json"
    if train.is_file():
        try:
            history = json.loads(train.read_text(encoding="utf-8")).get("history") or []
        except (OSError, json.JSONDecodeError):
            history = []
        total += sum(float(h.get("seconds") or 0.0) for h in history)
    return total


def finished_run(root: Path, modality: str, row: str, seed: int) -> dict[str, Any] | None:
    """The stored result of a finished run (None if the run has not finished)."""
    path = root / "runs" / modality / row / f"seed{seed}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged result is recomputed (the run's own stores make that cheap)
