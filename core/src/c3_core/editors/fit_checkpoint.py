"""Per-epoch checkpoints of an editor fit (``c3 editor fit``), so Ctrl-C loses no finished epoch.

A fit writing ``OUT`` keeps its checkpoints in the folder ``OUT.ckpt/`` beside it. After epoch
``e`` it writes ``epoch-000e.safetensors`` (network weights ``net.*``, optimiser tensors
``opt.<param>.<key>``, the training generator's state ``rng.state``) and then
``epoch-000e.json`` (format, epoch, loss history, the optimiser's and scheduler's other state,
and the fingerprint of the request), each to a temporary name renamed into place; the JSON marks
the epoch complete, and the previous epoch's files are removed only then. Restoring all of it
continues the fit exactly where it stopped: on the same device the resumed fit gives the same
bytes as one that never stopped.

Structure-editor fits (:mod:`c3_core.editors.structure_fit`) run several networks in stages; their
epochs count in one global number, ``net.<stage>.*`` holds every finished stage's weights and the
current one's, and the optimiser and scheduler are the current stage's
(:func:`c3_core.editors.structure_stages.run_stages`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

FORMAT = "c3-editor-fit-checkpoint"
FORMAT_VERSION = 1


class FitCheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed (the message names the file)."""


@dataclass
class FitState:
    """Everything a fit needs to continue after ``epoch`` finished epochs."""

    epoch: int
    history: list[float]
    network: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: Tensor
    fingerprint: dict[str, Any] = field(default_factory=dict)


def checkpoint_dir_for(out: str | Path) -> Path:
    """The checkpoint folder of a fit that writes ``out``: ``out`` + ``.ckpt``."""
    p = Path(out)
    return p.with_name(p.name + ".ckpt")


def capture(epoch: int, history: list[float], net: torch.nn.Module, opt: torch.optim.Optimizer,
            sched: Any, generator: torch.Generator) -> FitState:
    """The state after ``epoch`` finished epochs (tensors copied to the CPU)."""
    return FitState(
        epoch=int(epoch), history=list(history),
        network={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=generator.get_state().clone(),
    )  # fmt: skip


def restore(state: FitState, net: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, generator: torch.Generator) -> None:
    """Load ``state`` into freshly built ``net``, ``opt``, ``sched`` and ``generator`` (in place)."""
    net.load_state_dict(state.network)
    opt.load_state_dict(state.optimizer)
    sched.load_state_dict(state.scheduler)
    generator.set_state(state.rng)


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stem(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def save(folder: Path, state: FitState) -> Path:
    """Write ``state`` into ``folder`` (tensors first, the JSON that completes it last), then
    remove older epochs; returns the JSON's path."""
    from c3_core.weightsfile import safetensors_bytes

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.contiguous() for k, v in state.network.items()}
    scalars: dict[str, Any] = {}
    for pid, entry in state.optimizer["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"opt.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    tensors["rng.state"] = state.rng.contiguous()
    stem = _stem(state.epoch)
    raw = safetensors_bytes(tensors, {"format": FORMAT, "epoch": str(state.epoch)})
    _atomic(folder / f"{stem}.safetensors", lambda tmp: Path(tmp).write_bytes(raw))
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "epoch": state.epoch, "history": state.history,
        "optimizer": {"param_groups": state.optimizer["param_groups"], "scalars": scalars},
        "scheduler": state.scheduler, "fingerprint": state.fingerprint,
    }  # fmt: skip
    target = folder / f"{stem}.json"
    _atomic(target, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8"))
    for old in folder.glob("epoch-*.*"):
        if old.stem != stem and old.suffix in (".json", ".safetensors"):
            old.unlink(missing_ok=True)
    return target


def latest(folder: Path) -> Path | None:
    """The JSON of the newest complete epoch in ``folder`` (its safetensors present), or None."""
    if not folder.is_dir():
        return None
    done = sorted(p for p in folder.glob("epoch-*.json") if p.with_suffix(".safetensors").is_file())
    return done[-1] if done else None


def load(path: Path) -> FitState:
    """The :class:`FitState` in checkpoint JSON ``path`` and its safetensors; FitCheckpointError otherwise."""
    from safetensors.torch import load_file

    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        tensors = load_file(str(path.with_suffix(".safetensors")), device="cpu")
    except Exception as exc:  # noqa: BLE001 - any reader failure means the checkpoint is unusable
        raise FitCheckpointError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise FitCheckpointError(f"{path}: not a {FORMAT} (version {FORMAT_VERSION}) file")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            pid, name = key[4:].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["optimizer"]["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["optimizer"]["param_groups"]]
    return FitState(
        epoch=int(meta["epoch"]), history=[float(v) for v in meta["history"]],
        network={k[4:]: v for k, v in tensors.items() if k.startswith("net.")},
        optimizer={"state": state, "param_groups": groups}, scheduler=meta["scheduler"],
        rng=tensors["rng.state"], fingerprint=dict(meta.get("fingerprint", {})),
    )  # fmt: skip


def mismatch(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """The first request key whose value differs between a checkpoint and this run, described; or None."""
    for key in sorted(set(saved) | set(wanted)):
        if saved.get(key) != wanted.get(key):
            return f"{key}: checkpoint {saved.get(key)!r}, this run {wanted.get(key)!r}"
    return None
