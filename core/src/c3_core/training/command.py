"""`c3 train`: resolve plugin contributions, train, write weights and a record of the run.

Writes into OUT: ``model.safetensors`` (the weights ``c3 evaluate --model`` loads),
``model.json`` (architecture, modality, task, class names), ``history.csv`` (one row per
epoch), ``train.json`` (options, versions, timing, held-out consistency) and ``checkpoint/``
(weights, optimiser moments and counters, in safetensors + JSON). ``--resume OUT`` continues an
interrupted run with the options it was started with.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from c3_core.plugins.host import PluginHost
from c3_core.shown_paths import portable_source

EXIT_OK, EXIT_USAGE, EXIT_RUN_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130
MEMBERS = ("all", "operators", "editors")


class TrainInputError(ValueError):
    """Bad options or inputs of `c3 train` (exit 2, nothing written)."""


@dataclass
class TrainRequest:
    """Everything `c3 train` was asked for (stored in the checkpoint so --resume repeats it)."""

    modality: str | None = None
    data: str | None = None
    model: str | None = None
    init: str | None = None
    neighbourhood: str | None = None
    members: str = "all"
    k: int = 1
    teacher: str | None = None
    gate_file: str | None = None
    heldout: int = 64
    device: str = "cpu"
    workers: int = 0
    limit: int | None = None
    out: str = "c3-train"
    quiet: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    max_counterfactuals: int | None = None

    RESULT_FIELDS = ("modality", "data", "model", "init", "neighbourhood", "members", "k", "teacher",
                     "gate_file", "heldout", "limit", "options", "data_options", "model_options")

    def result_options(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.RESULT_FIELDS}


def resume_train_request(out: str, quiet: bool, workers: int, device: str | None) -> TrainRequest:
    """The request stored in OUT's checkpoint (only quiet, workers and device may change)."""
    from c3_core.training.checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(Path(out) / "checkpoint")
    stored = meta.get("request")
    if not isinstance(stored, dict):
        raise TrainInputError(f"{out}/checkpoint/state.json: holds no c3 train request")
    known = {f.name for f in fields(TrainRequest)}
    req = TrainRequest(**{k: v for k, v in stored.items() if k in known})
    req.out, req.quiet, req.workers, req.overwrite = out, quiet, workers, False
    if device is not None:
        req.device = device
    return req


def _select_members(spec: Any, host: PluginHost, members: str) -> Any:
    """The spec restricted to physics-only or editor members (the ablations)."""
    from c3_core.neighbourhood import NeighbourhoodSpec

    if members == "all":
        return spec
    if members not in MEMBERS:
        raise TrainInputError(f"--members must be one of {MEMBERS}, got {members!r}")
    keep = []
    for m in spec.members:
        kinds = {host.make_operator(s.op, s.options).kind for s in m.steps}
        has_editor = "editor" in kinds
        if (members == "editors") == has_editor:
            keep.append(m)
    if not keep:
        raise TrainInputError(f"--members {members}: the neighbourhood {spec.source} has no such member")
    return NeighbourhoodSpec(tuple(keep), spec.k, spec.seed, spec.source)


def _seed(req: TrainRequest) -> int:
    """The run's ``--seed`` (TrainOptions' default when the request does not set one)."""
    from c3_core.training.trainer import TrainOptions

    return int(req.options.get("seed", TrainOptions.seed))


def _modality(req: TrainRequest, host: PluginHost) -> str:
    installed = host.modalities()
    if req.modality is None:
        if len(installed) == 1:
            return installed[0]
        raise TrainInputError(f"choose what to train with --modality (installed: {', '.join(installed) or 'none'})")
    if req.modality not in installed:
        raise TrainInputError(f"--modality {req.modality}: not installed (installed: {', '.join(installed) or 'none'})")
    return req.modality


@dataclass
class PreparedTraining:
    modality: str
    dataset_id: str
    model_id: str
    train_set: Any
    test_set: Any
    bundle: Any
    teacher: Any
    teacher_id: str | None
    neighbourhood: Any
    gate: Any


def prepare_training(req: TrainRequest, host: PluginHost) -> PreparedTraining:
    """Resolve the dataset (train and test splits), the architecture, N(x), the teacher and δ/τ."""
    from torch.utils.data import Subset

    from c3_core.evaluation.runner import (
        EvaluationInputError,
        build_dataset,
        check_counterfactual_budget,
        load_spec,
        read_gate_file,
        resolve_dataset,
        resolve_model,
    )
    from c3_core.evaluation.scoring import GateSettings
    from c3_core.factory_options import FactoryOptionError, convert
    from c3_core.model import WeightsError, load_state_dict_safely
    from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpecError
    from c3_core.seeding import derive_seed
    from c3_core.training.rng import seeded_rng

    modality = _modality(req, host)
    try:
        dataset_c, source = resolve_dataset(host, modality, req.data)
        spec = _select_members(load_spec(dataset_c, req.neighbourhood, req.k, None), host, req.members)
        nb = Neighbourhood(spec, host.make_operator)
        models = host.registry("models")
        model_id = req.model or dataset_c.meta.get("default_model")
        if model_id is None or model_id not in models:
            raise TrainInputError(f"--model {model_id}: not a registered model id for {modality} (see `c3 plugins`)")
        factory = models.get(model_id).load()
        model_kwargs = convert(req.model_options, factory, "model", "--model-option", model_id)
        with seeded_rng(derive_seed(_seed(req), "train-init"), req.device):  # the architecture's initialisation
            bundle = factory(weights=None, device=req.device, **model_kwargs)
        if req.init is not None:
            if req.init == "demo":
                bundle = factory(weights="demo", device=req.device, **model_kwargs)
            else:
                load_state_dict_safely(req.init, bundle.network)
        teacher_id = req.teacher or dataset_c.meta.get("default_teacher")
        if teacher_id is None and dataset_c.meta.get("demo"):
            teacher_id = dataset_c.meta.get("default_model")
        teacher = resolve_model(host, modality, dataset_c, teacher_id, req.device, role="--teacher")[0] if teacher_id else None
    except (EvaluationInputError, NeighbourhoodSpecError, WeightsError, FactoryOptionError) as exc:
        raise TrainInputError(str(exc)) from None
    splits = {}
    for split in ("train", "test"):
        try:
            splits[split] = build_dataset(dataset_c, source, split, req.data_options)
        except (ValueError, OSError) as exc:
            raise TrainInputError(f"dataset {dataset_c.id}: cannot load the {split} split ({exc})") from None
    train_set = splits["train"]
    if req.limit is not None:
        train_set = Subset(train_set, range(min(req.limit, len(train_set))))
    if len(train_set) == 0:
        raise TrainInputError(f"dataset {dataset_c.id}: the train split is empty")
    try:
        check_counterfactual_budget(len(train_set), spec.k, req.max_counterfactuals, modality)
    except EvaluationInputError as exc:
        raise TrainInputError(f"{exc} (per epoch)") from None
    if req.gate_file:
        gate = GateSettings.from_file(req.gate_file)
    elif teacher_id and teacher_id == dataset_c.meta.get("default_teacher") and dataset_c.meta.get("default_gate"):
        gate = read_gate_file(str(dataset_c.meta["default_gate"]))[0]  # calibrated for that teacher
    else:
        gate = GateSettings()
    return PreparedTraining(modality, dataset_c.id, model_id, train_set, splits["test"], bundle, teacher, teacher_id, nb, gate)


def _refuse_existing(out: Path, overwrite: bool) -> None:
    from c3_core.output_folder import check_claimable

    existing = check_claimable(out, "train", overwrite=overwrite, signature=("train.json", "checkpoint"))
    if overwrite or not existing:
        return
    if (out / "train.json").exists():
        raise TrainInputError(f"{out}: holds a finished training run; choose another --out")
    if (out / "checkpoint" / "state.json").exists():
        raise TrainInputError(f"{out}: holds an unfinished training run; continue it with `c3 train --resume {out}`")


def _drop_checkpoint(folder: Path) -> None:
    """``--overwrite``: remove an earlier run's checkpoint files (this command's own) so training
    starts fresh instead of mixing with them."""
    if folder.is_dir():
        for f in folder.iterdir():
            if f.is_file():
                f.unlink()


def _portable_request(req: TrainRequest) -> dict[str, Any]:
    """The request as train.json keeps it: file names instead of this machine's paths."""
    out = {k: v for k, v in asdict(req).items() if k not in ("out", "quiet", "workers", "overwrite")}
    for name in ("data", "init", "neighbourhood", "teacher", "gate_file"):
        value = out.get(name)
        if isinstance(value, str) and ("/" in value or "\\" in value):
            out[name] = Path(value).name
    return out


def run_training(
    req: TrainRequest, host: PluginHost, echo: Callable[[str], None], resume: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> int:
    """Train as ``req`` asks; returns the exit code (0 ok, 2 bad input, 3 failed, 130 interrupted)."""
    import c3_core
    from c3_core.evaluation.distributed import ProcessGroup
    from c3_core.evaluation.output import OutputError, prepare_output_dir, write_atomic, write_json
    from c3_core.output_folder import OutputFolderError, busy, claim
    from c3_core.seeding import derive_seed
    from c3_core.training.checkpoint import CheckpointError, save_weights
    from c3_core.training.heldout import heldout_consistency
    from c3_core.training.rng import StepSeeds
    from c3_core.training.trainer import Interrupted, Trainer, TrainOptions, history_csv

    out = Path(req.out)
    claimed = None
    try:
        options = TrainOptions(**req.options)
        holder = busy(out)
        if holder:
            raise TrainInputError(f"{out}: another c3 process ({holder}) is writing to this folder; wait for it or choose another --out")
        if not resume:
            _refuse_existing(out, req.overwrite)
        prepared = prepare_training(req, host)
    except (TrainInputError, ValueError, TypeError, OutputFolderError) as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    group = ProcessGroup.from_environment(req.device)
    try:
        if group.leader:
            try:
                claimed = claim(out, "train", overwrite=req.overwrite, signature=("train.json", "checkpoint"))
            except OutputFolderError as exc:
                echo(f"error: {exc}")
                group.close()
                return EXIT_USAGE
            if req.overwrite and not resume:
                (out / "train.json").unlink(missing_ok=True)  # this command's own record of an earlier run
                _drop_checkpoint(out / "checkpoint")
            out = prepare_output_dir(out)
        ckpt = out / "checkpoint"
        step_seed = StepSeeds(derive_seed(options.seed, "train-step-rng", group.rank))  # each process its own masks

        def after_step(step: int) -> None:
            step_seed(step)
            if on_step is not None:
                on_step(step)

        trainer = Trainer(
            prepared.bundle, prepared.train_set, prepared.neighbourhood, options,
            teacher=prepared.teacher, gate=prepared.gate, group=group, checkpoint_dir=ckpt,
            echo=(lambda m: None) if req.quiet or not group.leader else echo, on_step=after_step, workers=req.workers,
            checkpoint_meta={"request": asdict(req)},
        )
        if resume:
            trainer.resume(ckpt)
            echo(f"resuming at epoch {trainer.state.epoch + 1}, step {trainer.state.global_step}")
        started = time.time()
        history = step_seed.fit(trainer, group.device)  # dropout masks a function of (seed, step); RNG kept
    except Interrupted as exc:
        echo(f"interrupted ({exc}); every completed step is in {out / 'checkpoint'}: continue with `c3 train --resume {out}`")
        if claimed is not None:
            claimed.release()
        return EXIT_INTERRUPTED
    except (CheckpointError, OutputError) as exc:
        echo(f"error: {exc}")
        if claimed is not None:
            claimed.release()
        return EXIT_USAGE if isinstance(exc, CheckpointError) else EXIT_RUN_FAILED
    if not group.leader:
        group.close()
        return EXIT_OK
    try:
        net = prepared.bundle.network
        consistency = heldout_consistency(
            prepared.bundle, prepared.test_set, prepared.neighbourhood.reseeded(prepared.neighbourhood.spec.seed),
            n_cases=req.heldout, teacher=prepared.teacher, gate=prepared.gate, device=group.device,
        )
        versions = {"c3_core": c3_core.__version__, **{p.name: p.version for p in host.plugins}}
        card = {"architecture": prepared.model_id, "modality": prepared.modality, "task": prepared.bundle.task,
                "class_names": list(prepared.bundle.class_names), "dataset": prepared.dataset_id}
        save_weights(out / "model.safetensors", net, {k: json.dumps(v) for k, v in card.items()})
        write_json(out, "model.json", card)
        write_atomic(out, "history.csv", history_csv(history))
        write_json(out, "train.json", {
            **card, "request": _portable_request(req), "options": asdict(options), "versions": versions,
            "teacher": prepared.teacher_id, "gate": prepared.gate.to_dict() if options.use_gate else None,
            "neighbourhood": prepared.neighbourhood.spec.to_dict() | {"source": portable_source(prepared.neighbourhood.spec.source)},
            "heldout_consistency": consistency.to_dict(), "history": history,
            "processes": group.world, "seconds_this_session": round(time.time() - started, 2),
            "platform": {"python": platform.python_version(), "machine": platform.machine()},
        })
    except OutputError as exc:
        echo(f"error: {exc}")
        return EXIT_RUN_FAILED
    finally:
        group.close()
        if claimed is not None:
            claimed.release()
    echo(
        f"held-out consistency: mean D {consistency.mean_distance:.4f} over {consistency.n_pairs} admitted pairs "
        f"({consistency.n_cases} cases); weights -> {out / 'model.safetensors'}"
    )
    return EXIT_OK
