"""``c3 editor fit`` for the structure editors: the 2-D Seg-CFT area editors and the 3-D volume editors.

The fit runs the editor's stages (:mod:`c3_core.editors.structure_stages`): segmentor, conditional
VAE, then Seg-CFT fine-tuning of the decoder against the frozen segmentor, on the arrays the
editor class names (``fit_arrays``: its plugin's demo training split at the working grid). Every
finished epoch (of any stage) is checkpointed in ``OUT.ckpt/``; after Ctrl-C the same command with
``--resume`` continues from the last one to the same bytes (same device), and the folder is
removed once ``OUT`` is written. ``OUT`` is a safetensors file whose metadata holds the
configuration, so the editor option ``weights=OUT`` alone rebuilds the model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from c3_core.editors.fit_checkpoint import FitState

EXIT_OK, EXIT_USAGE, EXIT_RUN_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130
AREA_FORMAT = "c3-structure-area-model"


def is_structure_editor(cls: Any) -> bool:
    from c3_core.editors.structure import StructureAreaEditor
    from c3_core.editors.volume_structure_editor import VolumeStructureEditor

    return isinstance(cls, type) and issubclass(cls, StructureAreaEditor | VolumeStructureEditor)


def parse_grid(text: str) -> tuple[int, int, int]:
    """``"D,H,W"`` -> three ints (ValueError otherwise)."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--grid must be three integers D,H,W, got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


# -- 2-D area models: file I/O -------------------------------------------------------------------
def save_area_model(model: Any, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a :class:`~c3_core.editors.structure.StructureModel` with its config in the metadata."""
    from c3_core.weightsfile import safetensors_bytes

    meta = {"format": AREA_FORMAT, "config": json.dumps(asdict(model.config)), "structures": json.dumps(list(model.structures))}
    if extra:
        meta["fit"] = json.dumps(extra, default=str)
    Path(path).write_bytes(safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, meta))
    return Path(path)


def load_area_model(path: str | Path) -> Any:
    """The 2-D structure model in ``path`` (written by ``c3 editor fit``); ValueError naming the file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from c3_core.editors.structure import StructureModel, StructureModelConfig

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise ValueError(f"{path}: cannot read the structure model ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != AREA_FORMAT:
        raise ValueError(f"{path}: not a {AREA_FORMAT} file (write one with `c3 editor fit`)")
    cfg = json.loads(meta["config"])
    config = StructureModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    return StructureModel.from_state_dict(state, config, json.loads(meta["structures"]), source=str(path))


# -- the stages of each family ---------------------------------------------------------------------
def _tune_fingerprint(tune: Any) -> dict[str, Any]:
    """The fine-tuning settings as recorded (``target`` only when not the first version's ``"scale"``
    and ``sharpness`` only when not 1, so checkpoints written before those options existed still
    resume; the 2-D plan records its own sharpness)."""
    out = asdict(tune)
    if out.get("target") == "scale":
        del out["target"]
    if out.get("sharpness") == 1.0:
        del out["sharpness"]
    return out


def _area_plan(cls: Any, size: int | None, epochs: int | None, batch_size: int | None, lr: float | None,
               limit: int | None, g: torch.Generator, device: torch.device) -> tuple[list[Any], Callable[[dict[str, Any]], Any], dict[str, Any], int]:
    from c3_core.editors.nets import built_quietly, init_parameters
    from c3_core.editors.structure import ConditionalVAE, StructureModel, StructureSegmentor
    from c3_core.editors.structure_stages import (
        TuneSettings,
        fine_tune_stage,
        generator_stage,
        segmentor_measure,
        segmentor_stage,
    )

    config = cls.model_config
    if size is not None:
        config = replace(config, size=int(size))
    over = {k: v for k, v in {"batch_size": batch_size, "lr": lr}.items() if v is not None}
    if epochs is not None:
        over.update(gen_epochs=epochs, seg_epochs=epochs)
    config = replace(config, **over)
    ft = cls.tune_config
    tune = TuneSettings(steps=ft.steps, epochs=min(5, ft.steps), batch_size=ft.batch_size, lr=ft.lr, closeness=ft.closeness,
                        reconstruction=ft.reconstruction, ratio_low=ft.ratio_low, ratio_high=ft.ratio_high, margin=ft.margin_px,
                        target=ft.target)  # fmt: skip
    u, masks, info = cls.fit_arrays(limit=limit, size=config.size)
    u, masks = u.to(device), masks.float().to(device)
    frac = masks.flatten(2).mean(2)
    mean, std = frac.mean(0), frac.std(0).clamp_min(1e-6)
    structures = info["structures"]
    stages = [
        ("seg", lambda d: segmentor_stage(lambda: built_quietly(lambda: StructureSegmentor(config)), init_parameters, u, masks,
                                          config.seg_epochs, config.batch_size, config.lr, g)),
        ("gen", lambda d: generator_stage(lambda: built_quietly(lambda: ConditionalVAE(config)), init_parameters, u, (frac - mean) / std,
                                          config.beta, config.gen_epochs, config.batch_size, config.lr, g)),
        ("tuned", lambda d: fine_tune_stage(d["gen"], segmentor_measure(d["seg"], ft.sharpness), u, frac, masks, mean, std, tune, g)),
    ]  # fmt: skip

    def finish(done: dict[str, Any]) -> Any:
        return StructureModel(config, tuple(structures), done["tuned"], done["seg"], mean.cpu(), std.cpu())

    described = {"config": asdict(config), "tune": {**_tune_fingerprint(tune), "sharpness": ft.sharpness}, **info}
    return stages, finish, described, int(u.shape[0])


def _volume_plan(cls: Any, grid: tuple[int, int, int] | None, epochs: int | None, batch_size: int | None, lr: float | None,
                 limit: int | None, g: torch.Generator, device: torch.device) -> tuple[list[Any], Callable[[dict[str, Any]], Any], dict[str, Any], int]:
    from c3_core.editors.volume_structure_model import model_from_stages, volume_fit_stages

    config = cls.model_config
    if config is None:
        raise ValueError(f"{cls.id} declares no model_config to train")
    over: dict[str, Any] = {k: v for k, v in {"batch_size": batch_size, "lr": lr, "grid": grid}.items() if v is not None}
    if epochs is not None:
        over.update(gen_epochs=epochs, seg_epochs=epochs, reg_epochs=epochs)
    config = replace(config, **over)
    tune = cls.tune_settings
    u, masks, info = cls.fit_arrays(limit=limit, config=config)
    u, masks = u.to(device), masks.float().to(device)
    stages = volume_fit_stages(u, masks, config, tune, g)
    structures = info.get("structures", (cls.structure,))

    def finish(done: dict[str, Any]) -> Any:
        return model_from_stages(done, masks.cpu(), config, structures, cls.min_volume_ml)

    return stages, finish, {"config": config.to_json(), "tune": _tune_fingerprint(tune), **info}, int(u.shape[0])


def fit_command(
    editor: str,
    out: str | Path,
    *,
    data: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    size: int | None = None,
    grid: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    device: str = "cpu",
    host: Any = None,
    echo: Callable[[str], None] = print,
    resume: bool = False,
) -> int:
    """``c3 editor fit`` for a structure editor (see the module docstring). Returns 0, 2 (bad input;
    nothing written), 3 (training failed) or 130 (interrupted; the finished epochs are kept)."""
    from c3_core.editors import fit_checkpoint as ckpt
    from c3_core.editors.structure_stages import run_stages
    from c3_core.editors.volume_structure_editor import VolumeStructureEditor
    from c3_core.editors.volume_structure_model import save_volume_model
    from c3_core.plugins.registry import ContributionError, UnknownContributionError

    target = Path(out)
    if target.suffix != ".safetensors":
        echo(f"error: --out {target} must be a .safetensors file")
        return EXIT_USAGE
    if target.exists():
        echo(f"error: {target} already exists; choose another --out")
        return EXIT_USAGE
    folder = ckpt.checkpoint_dir_for(target)
    last = ckpt.latest(folder)
    if resume and last is None:
        echo(f"error: --resume: no checkpoint in {folder}")
        return EXIT_USAGE
    if not resume and last is not None:
        echo(f"error: {folder} holds an unfinished fit; continue it with --resume (same options) or delete it")
        return EXIT_USAGE
    if host is None:
        from c3_core.plugins.host import PluginHost

        host = PluginHost().load()
    g = torch.Generator().manual_seed(int(seed))
    try:
        cls = host.registry("editors").get(editor).load()
        if not is_structure_editor(cls):
            raise ValueError(f"{editor} is not a structure editor")
        if data is not None:
            raise ValueError(f"{editor}: structure editors fit on their plugin's demo training split; --data is not supported yet")
        if limit is not None and int(limit) < 2:
            raise ValueError("--limit must be >= 2")
        volume = issubclass(cls, VolumeStructureEditor)
        if volume and size is not None:
            raise ValueError(f"{editor} is 3-D: set its working grid with --grid D,H,W, not --size")
        if not volume and grid is not None:
            raise ValueError(f"{editor} is 2-D: set its working grid with --size, not --grid")
        if not volume and not callable(getattr(cls, "fit_arrays", None)):
            raise ValueError(f"{editor} does not say what to fit on (no fit_arrays)")
        dev = torch.device(device)
        if volume:
            stages, finish, described, n = _volume_plan(cls, None if grid is None else parse_grid(grid), epochs, batch_size, lr, limit, g, dev)
        else:
            stages, finish, described, n = _area_plan(cls, size, epochs, batch_size, lr, limit, g, dev)
        fingerprint = json.loads(json.dumps({"editor": editor, "seed": int(seed), "cases": n, "limit": limit, **described}, default=str))
        start = None
        if last is not None:
            start = ckpt.load(last)
            differs = ckpt.mismatch(start.fingerprint, fingerprint)
            if differs:
                raise ValueError(f"--resume: {last} was made with other options ({differs}); use the same options or delete {folder}")
    except (UnknownContributionError, ContributionError, ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        echo(f"error: {exc}")
        return EXIT_USAGE
    echo(f"{editor}: fitting on {n} training images on {device} (stages {', '.join(s for s, _ in stages)})"
         + ("" if start is None else f", resuming after epoch {start.epoch} from {folder}"))  # fmt: skip

    def keep(state: FitState) -> None:
        state.fingerprint = fingerprint
        ckpt.save(folder, state)

    try:
        done, history = run_stages(stages, g, checkpoint=keep, resume=start,
                                   progress=lambda s, e, loss: echo(f"  {s} epoch {e}: loss {loss:.4f}"))  # fmt: skip
        model = finish({k: v.cpu() for k, v in done.items()})
        extra = {"editor": editor, "seed": int(seed), "cases": n, "loss": history, "device": device}
        if volume:
            save_volume_model(model, target, extra)
        else:
            save_area_model(model, target, extra)
    except KeyboardInterrupt:
        kept = ckpt.latest(folder)
        finished = 0 if kept is None else int(kept.stem.split("-")[1])
        echo(f"interrupted: {finished} finished epoch(s) kept in {folder}; continue with the same command and --resume")
        return EXIT_INTERRUPTED
    except (RuntimeError, OSError) as exc:
        echo(f"error: training failed: {exc}" + (f" (finished epochs are kept in {folder}; --resume continues)" if ckpt.latest(folder) else ""))
        return EXIT_RUN_FAILED
    shutil.rmtree(folder, ignore_errors=True)
    echo(f"wrote {target}")
    return EXIT_OK
