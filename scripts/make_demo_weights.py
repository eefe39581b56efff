"""Make, or check, the demo weights the first-party plugins ship (demo models and demo teachers).

Each weights file is trained by the plugin's own factory (``weights="demo"``) in a fresh Python
process, in an empty weights cache, with ``C3_IGNORE_SHIPPED_WEIGHTS=1`` (every recipe seeds its
initialisation and trains on one intra-op thread), then copied to ``plugins/<m>/src/c3_<m>/weights/``
beside ``weights.json``: per file its SHA-256, size, this command and the machine it ran on
(torch version, CPU kernel set, threads). :func:`c3_core.cache.cached_weights` then loads the
shipped file after checking its SHA-256 and never trains it again.

Training depends on the CPU's kernels (``ATEN_CPU_CAPABILITY``, oneDNN/MKL code paths): the same
command on another CPU may make other bytes, which is why the bytes are shipped. ``--check``
verifies the shipped checksums and then retrains in a temporary cache, reporting per file whether
this machine reproduces the bytes, and if not how far the tensors are apart (max |Δ|).

    python scripts/make_demo_weights.py                          # all modalities: train, copy, write weights.json
    python scripts/make_demo_weights.py --modality cxr --modality fundus
    python scripts/make_demo_weights.py --check                  # checksums, then retrain and compare bytes
    python scripts/make_demo_weights.py --check --no-retrain     # checksums only (seconds)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND = "python scripts/make_demo_weights.py"
# modality -> (module, attribute naming the weights, factory) per shipped weights file
SHIPPED = {
    "cxr": (("c3_cxr.models", "DEMO_WEIGHTS", "demo_cnn"), ("c3_cxr.models", "TEACHER_WEIGHTS", "demo_teacher")),
    "fundus": (("c3_fundus.models", "DEMO_WEIGHTS", "demo_cnn"), ("c3_fundus.models", "TEACHER_WEIGHTS", "demo_teacher")),
    "mri": (("c3_mri.models", "DEMO_WEIGHTS", "unet3d"), ("c3_mri.models", "TEACHER_WEIGHTS", "demo_teacher")),
}


def weights_dir(modality: str) -> Path:
    return REPO / "plugins" / modality / "src" / f"c3_{modality}" / "weights"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_names(modality: str) -> list[str]:
    import importlib

    return [getattr(importlib.import_module(mod), attr) for mod, attr, _ in SHIPPED[modality]]


def train_one(modality: str, index: int, threads: int) -> None:
    """(In a fresh process, cache dir from the environment) train one shipped file by its factory."""
    import importlib

    import torch

    torch.set_num_threads(threads)
    mod, _, factory = SHIPPED[modality][index]
    getattr(importlib.import_module(mod), factory)(weights="demo")


def train_into(cache: Path, modality: str, threads: int) -> dict[str, Path]:
    """Train the modality's shipped files into ``cache`` (one fresh process each, so no file
    depends on what ran before it); returns name -> file."""
    env = dict(os.environ, C3_CACHE_DIR=str(cache), C3_IGNORE_SHIPPED_WEIGHTS="1")
    out = {}
    for i, name in enumerate(weights_names(modality)):
        path = cache / "weights" / f"{name}.safetensors"
        if not path.is_file():
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--train-one", f"{modality}:{i}", "--threads", str(threads)],
                           env=env, check=True)
            print(f"{name}: trained in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        out[name] = path
    return out


def machine(threads: int) -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", "(unset)"), "threads": str(threads),
            "python": platform.python_version(), "machine": platform.machine()}


def make(modalities: list[str], threads: int, work: Path) -> None:
    for m in modalities:
        files = train_into(work, m, threads)
        dest = weights_dir(m)
        dest.mkdir(parents=True, exist_ok=True)
        manifest_path = dest / "weights.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        entries = manifest.get("weights", {})
        for name, src in files.items():
            shutil.copyfile(src, dest / src.name)
            entries[name] = {"file": src.name, "sha256": sha256(src), "bytes": src.stat().st_size,
                             "command": f"{COMMAND} --modality {m} --threads {threads}", "made_with": machine(threads)}
        manifest = {"about": "demo weights shipped with the plugin: loaded by c3_core.cache.cached_weights after a "
                             "SHA-256 check, never retrained; regenerate or verify with scripts/make_demo_weights.py",
                    "weights": dict(sorted(entries.items()))}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        print(f"{m}: wrote {', '.join(sorted(files))} to {dest.relative_to(REPO)}")


def compare(a: Path, b: Path) -> str:
    """How far two safetensors files are apart: 'identical bytes' or the largest |Δ| over tensors."""
    if a.read_bytes() == b.read_bytes():
        return "identical bytes"
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    if x.keys() != y.keys():
        return "different tensor names"
    diffs = {k: float((x[k].double() - y[k].double()).abs().max()) for k in x if x[k].is_floating_point()}
    changed = sum(1 for v in diffs.values() if v > 0)
    worst = max(diffs, key=diffs.get)  # type: ignore[arg-type]
    return f"DIFFERENT: {changed}/{len(diffs)} tensors differ, max |Δ| {diffs[worst]:.3g} ({worst})"


def check(modalities: list[str], threads: int, retrain: bool, work: Path) -> int:
    bad = 0
    for m in modalities:
        manifest_path = weights_dir(m) / "weights.json"
        if not manifest_path.is_file():
            print(f"{m}: ships no weights ({manifest_path.relative_to(REPO)} missing)")
            bad += 1
            continue
        entries = json.loads(manifest_path.read_text(encoding="utf-8"))["weights"]
        missing = set(weights_names(m)) - set(entries)
        for name in sorted(missing):
            print(f"{m}: {name} is not shipped")
            bad += 1
        for _name, e in sorted(entries.items()):
            f = weights_dir(m) / e["file"]
            ok = f.is_file() and sha256(f) == e["sha256"]
            bad += not ok
            print(f"{m}: {e['file']}: checksum {'ok' if ok else 'MISMATCH'} ({e['sha256'][:12]}…, {e['bytes']} bytes)")
        if retrain:
            for name, path in train_into(work, m, threads).items():
                if name in entries:
                    print(f"{m}: {name}: retrained here ({machine(threads)['cpu_capability']}, {threads} threads) "
                          f"vs shipped: {compare(weights_dir(m) / entries[name]['file'], path)}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modality", action="append", choices=sorted(SHIPPED), help="repeatable; default: all")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of the process (the recipes train on one thread anyway; default 1)")
    ap.add_argument("--check", action="store_true", help="verify checksums, then retrain and compare the bytes")
    ap.add_argument("--no-retrain", action="store_true", help="with --check: checksums only")
    ap.add_argument("--work-dir", type=Path, help="weights cache to train into (default: a new temporary folder)")
    ap.add_argument("--train-one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.train_one:
        m, i = args.train_one.split(":")
        train_one(m, int(i), args.threads)
        return 0
    modalities = args.modality or sorted(SHIPPED)
    with tempfile.TemporaryDirectory(prefix="c3-demo-weights-") as tmp:
        work = args.work_dir or Path(tmp)
        if args.check:
            return check(modalities, args.threads, not args.no_retrain, work)
        make(modalities, args.threads, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
