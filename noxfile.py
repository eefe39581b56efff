"""Every development task in one place: `nox -l` lists them.

Test sessions install c3-core plus ONE package, which proves that each plugin installs and works
on its own. PyTorch (5.5 GB with torchvision) is installed once into `.nox/_torch` by scripts/torch_site.py and
made importable in each session (and in `.venv`, by scripts/bootstrap) through a `.pth` file, so
nothing copies it again; pip then sees torch as installed and never fetches a build of its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "scripts"))
from torch_site import NoRoom, link, torch_site  # noqa: E402  (the one place torch is installed)

TEST_TOOLS = ["pytest>=8", "hypothesis>=6", "scipy>=1.10"]
BENCH_TOOLS = ["monai>=1.3", "torchio>=0.19", "albumentations>=2", "imagecorruptions>=1.1", "setuptools<81", "medmnistc>=0.1"]  # the reference implementations the benchmarks compare against (imagecorruptions imports pkg_resources)
BENCH_VALUE_OPTIONS = ("--device", "--sizes", "--kernels", "--k", "--batch-size", "--repeats", "--only", "--modality", "--passes", "--phases", "--image-size")  # bench options taking a value
PACKAGES = {
    "core": "core",
    "cxr": "plugins/cxr",
    "mri": "plugins/mri",
    "fundus": "plugins/fundus",
    "ultrasound": "packages/ultrasound",
    "template": "packages/plugin-template",
}

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests", "integration"]


def _with_torch(session: nox.Session) -> None:
    """Make the session import torch from the one shared torch-only venv (scripts/torch_site.py)."""
    try:
        site = torch_site()
    except NoRoom as err:
        session.error(str(err))
    link(Path(session.bin) / "python", site)


def _install(session: nox.Session, *dirs: str, extras: str = "") -> None:
    _with_torch(session)
    args = []
    for d in dirs:
        args += ["-e", f"{d}{extras if d == 'core' else ''}"]
    session.install(*args, *TEST_TOOLS)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every package, then the import-linter contracts in `.importlinter`.

    import-linter reads the source only (no torch): the packages' `src` folders go on PYTHONPATH
    instead of being installed.
    """
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.run("ruff", "check", *[d for d in PACKAGES.values() if (ROOT / d).exists()], "tests", "scripts", "noxfile.py")
    sources = [str(ROOT / d / "src") for d in PACKAGES.values() if (ROOT / d / "src").exists()]
    session.run("lint-imports", "--no-cache", env={"PYTHONPATH": os.pathsep.join(sources)})


@nox.session(name="tests")
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """One package's tests with only c3-core and that package installed."""
    path = PACKAGES[package]
    if not (ROOT / path).exists():
        session.skip(f"{path} does not exist")
    if package == "core":
        _install(session, "core", extras="[test]")
    else:
        _install(session, "core", path)
    session.env["C3_CACHE_DIR"] = str(ROOT / ".nox" / "_cache")
    session.run("python", "-m", "pytest", f"{path}/tests", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Everything installed: the CLI end to end, plugin discovery, isolation."""
    _install(session, "core", *[d for k, d in PACKAGES.items() if k not in ("core", "template") and (ROOT / d).exists()])
    session.install("-e", "core[test]")
    session.env["C3_CACHE_DIR"] = str(ROOT / ".nox" / "_cache")
    session.run("python", "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """`c3 evaluate` on every installed modality's embedded demo cohort."""
    _install(session, "core", *[d for k, d in PACKAGES.items() if k not in ("core", "template") and (ROOT / d).exists()])
    out = session.posargs[0] if session.posargs else "c3-results"
    session.run("c3", "evaluate", "--out", out)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print ratios measured side by side in one run.

    ``nox -s bench -- mri`` runs only the scripts whose path contains ``mri``; options after
    the words are passed to every script: ``--quick`` (a smoke run on tiny inputs), ``--device
    cuda`` (every script takes ``--device``).
    """
    _install(session, "core", *[d for k, d in PACKAGES.items() if k != "core" and (ROOT / d).exists()])
    session.install(*BENCH_TOOLS)
    words, flags, args = [], [], list(session.posargs)
    while args:  # an option's value travels with it: `-- evaluation --device cuda` picks no script "cuda"
        a = args.pop(0)
        if not a.startswith("-"):
            words.append(a)
            continue
        flags.append(a)
        if a in BENCH_VALUE_OPTIONS and args:
            flags.append(args.pop(0))
    scripts = [s for s in sorted(ROOT.glob("**/bench/bench_*.py")) if ".nox" not in s.parts and ".venv" not in s.parts]
    chosen = [s for s in scripts if not words or any(w in str(s.relative_to(ROOT)) for w in words)]
    if not chosen:
        session.error(f"no benchmark matches {words}; have {[str(s.relative_to(ROOT)) for s in scripts]}")
    for script in chosen:
        session.run("python", str(script), *flags, env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})


@nox.session
def paper(session: nox.Session) -> None:
    """The paper's experiments on the embedded cohorts, written to docs/results.md.

    Default size: every row and modality, 2 seeds, under an hour on a 2-core CPU. Arguments after
    ``--`` go to the command: ``--quick`` is a smoke run of a few minutes (its table goes to
    ``c3-experiment-quick/results.md``, docs untouched); ``--powered`` trains every row from a
    seeded initialisation, 3 seeds, 1,000 test cases (hours on a CPU; ``c3-powered/``); ``--full``
    is the GPU-scale run (every case, 5 seeds, long training; ``--device cuda``); also ``--modality``, ``--seeds``, ``--out``,
    ``--threads 1`` (faster on a CPU shared with other jobs). Running the same command again
    continues an interrupted experiment (finished runs are skipped).
    """
    _install(session, "core", "plugins/cxr", "plugins/mri", "plugins/fundus")
    args = list(session.posargs)
    smoke = "--quick" in args
    if "--out" not in args:
        folder = ("c3-experiment-quick" if smoke else "c3-experiment-full" if "--full" in args
                  else "c3-powered" if "--powered" in args else "c3-experiment")
        args += ["--out", str(ROOT / folder)]
    if "--results" not in args and not smoke:
        args += ["--results", str(ROOT / "docs" / "results.md")]
    session.run("python", "-m", "c3_core.experiments.paper", *args)
