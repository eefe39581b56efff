"""The user cache for demo reference weights (trained by the project's own code on first use)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

ENV_CACHE = "C3_CACHE_DIR"


def cache_dir() -> Path:
    """``$C3_CACHE_DIR`` or ``$XDG_CACHE_HOME/c3`` or ``~/.cache/c3``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "c3"


def cached_weights(name: str, train: Callable[[], dict[str, torch.Tensor]]) -> Path:
    """Path of the safetensors file ``name``; ``train()`` makes its state dict on first use.

    The file is written to a temporary name and renamed into place, so an interrupted training
    never leaves a truncated file that later runs would trust. ``train`` runs with autograd
    enabled even when the caller is inside ``torch.no_grad()`` (an editor's apply loads lazily).
    """
    from safetensors.torch import save_file

    path = cache_dir() / "weights" / f"{name}.safetensors"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.enable_grad():
        trained = train()
    state = {k: v.detach().contiguous().cpu() for k, v in trained.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
