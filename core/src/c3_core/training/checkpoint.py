"""Training checkpoints in safetensors (never a pickle): weights, optimiser moments, counters.

A checkpoint is a folder holding ``state.safetensors`` (model parameters and buffers under
``model.``; every optimiser tensor under ``optim.<param index>.<name>``) and ``state.json``
(the optimiser's hyper-parameters, the step and epoch counters and the run's options). Both are
written to temporary names and renamed, ``state.json`` last, so a kill at any moment leaves the
previous complete checkpoint or the new one, never a torn mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
FORMAT = "c3-train-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed or does not fit the model."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimiser state dict into flat tensors and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(folder: str | Path, network: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any]) -> Path:
    """Write the checkpoint into ``folder`` (created); returns it."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    opt_tensors, opt_rest = optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    _atomic_write_bytes(folder / STATE_TENSORS, save(tensors))
    doc = {"format": FORMAT, "optimizer": opt_rest, **meta}
    _atomic_write_bytes(folder / STATE_JSON, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"))
    return folder


def read_checkpoint_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON half of a checkpoint; raises :class:`CheckpointError` naming the file."""
    p = Path(folder) / STATE_JSON
    if not p.is_file():
        raise CheckpointError(f"{p}: no checkpoint here (nothing to resume)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{p}: unreadable checkpoint ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a c3 training checkpoint (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    return doc


def load_checkpoint(folder: str | Path, network: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore ``network`` and ``optimizer`` in place; returns the checkpoint's JSON metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(folder)
    p = Path(folder) / STATE_TENSORS
    try:
        tensors = load_file(str(p))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{p}: unreadable weights ({exc})") from None
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        network.load_state_dict(model_sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{p}: weights do not fit the model ({str(exc).splitlines()[0]})") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, rest in meta["optimizer"]["scalars"].items():
        state.setdefault(int(idx), {}).update(rest)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    return meta


def save_weights(path: str | Path, network: nn.Module, metadata: dict[str, str]) -> Path:
    """The trained weights alone, as ``c3 evaluate --model`` reads them (safetensors; the same
    bytes for the same weights and metadata)."""
    from c3_core.weightsfile import safetensors_bytes

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    _atomic_write_bytes(path, safetensors_bytes(tensors, metadata))
    return path
