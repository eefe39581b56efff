"""Demo reference weights: shipped with their plugin (checked by SHA-256), else trained on first use.

A weights name starts with the package that owns it (``c3_cxr-demo_cnn-v1``). Where that package
ships ``weights/<name>.safetensors`` listed in its ``weights/weights.json`` (SHA-256, size and the
command that made it, ``scripts/make_demo_weights.py``), :func:`cached_weights` returns that file
once its checksum matches, and never trains: the same bytes on every machine (training them again
depends on the CPU's kernels, see docs/results.md, "Reproducibility"). Otherwise the weights are
trained by the project's own code on first use into the user cache and reused from there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

ENV_CACHE = "C3_CACHE_DIR"
ENV_IGNORE_SHIPPED = "C3_IGNORE_SHIPPED_WEIGHTS"  # "1": train into the cache even where a package ships weights
SHIPPED_DIR = "weights"
MANIFEST = "weights.json"


def cache_dir() -> Path:
    """``$C3_CACHE_DIR`` or ``$XDG_CACHE_HOME/c3`` or ``~/.cache/c3``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "c3"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_dir(package: str) -> Path | None:
    """``<package>/weights`` of an installed package (found without importing it), or None."""
    if not package.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        d = Path(loc) / SHIPPED_DIR
        if (d / MANIFEST).is_file():
            return d
    return None


def shipped_manifest(package: str) -> dict[str, dict]:
    """The entries of ``<package>/weights/weights.json`` by weights name ({} where none is shipped)."""
    d = shipped_dir(package)
    if d is None:
        return {}
    data = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    return dict(data.get("weights", {}))


def shipped_weights(name: str) -> Path | None:
    """The shipped file of weights ``name`` after its SHA-256 matched the manifest, or None where
    its package ships none. A file that does not match raises :class:`~c3_core.model.WeightsError`
    (a damaged install must not silently turn into weights trained on this machine)."""
    package = name.split("-", 1)[0]
    entry = shipped_manifest(package).get(name)
    if entry is None:
        return None
    from c3_core.model import WeightsError

    d = shipped_dir(package)
    assert d is not None
    path = d / entry["file"]
    if not path.is_file():
        raise WeightsError(f"{package}: shipped weights {name} are listed in {SHIPPED_DIR}/{MANIFEST} but "
                           f"{entry['file']} is missing; reinstall {package}")
    digest = file_sha256(path)  # a few MB at most: hashed on every load, no process-wide memo
    if digest != entry["sha256"]:
        raise WeightsError(f"{package}: shipped weights {path.name} have SHA-256 {digest[:12]}…, the manifest says "
                           f"{entry['sha256'][:12]}…; reinstall {package} or regenerate with: {entry.get('command', '?')}")
    return path


def cached_weights(name: str, train: Callable[[], dict[str, torch.Tensor]]) -> Path:
    """Path of the safetensors file ``name``: the package's shipped file where there is one
    (checksum verified, no training), else the user cache's, made by ``train()`` on first use.

    Setting ``C3_IGNORE_SHIPPED_WEIGHTS=1`` skips the shipped files (``make_demo_weights.py --check``
    retrains with it). The file is written to a temporary name and renamed into place, so an
    interrupted training never leaves a truncated file that later runs would trust. ``train`` runs
    with autograd enabled even when the caller is inside ``torch.no_grad()`` (an editor's apply
    loads lazily).
    """
    from safetensors.torch import save_file

    if os.environ.get(ENV_IGNORE_SHIPPED, "").strip().lower() not in {"1", "true", "yes", "on"}:
        shipped = shipped_weights(name)
        if shipped is not None:
            return shipped
    path = cache_dir() / "weights" / f"{name}.safetensors"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"c3: no shipped weights for {name}: training them on first use into {path} (once; later runs reuse "
          "the file, and its bytes depend on this machine's CPU kernels)", file=sys.stderr, flush=True)
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
