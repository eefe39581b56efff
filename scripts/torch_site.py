"""One torch-only virtual environment, made once, shared by `.venv` and every nox session.

`pip install torch==2.14.1 torchvision==0.29.1` takes this machine's local wheels, a CUDA build of
5.5 GB once unpacked. Installing it into `.venv` *and* into nox's sessions needed 11 GB of free
disk; here it is installed once into `.nox/_torch` and made importable elsewhere by a `.pth` file
(pip then sees torch as installed and never fetches a build of its own).

    python scripts/torch_site.py            # make it if needed; print its site-packages
    python scripts/torch_site.py --link VENV  # ...and make VENV import it (writes _c3_torch.pth)

Exits non-zero with a message naming the folder when the disk has too little room, before pip
starts writing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
TORCH_VENV = ROOT / ".nox" / "_torch"
NEEDED_BYTES = 6 * 2**30  # 5.5 GB measured in the venv, plus pip's working room
PTH_NAME = "_c3_torch.pth"


class NoRoom(RuntimeError):
    """The disk holding the torch environment has less free space than the install needs."""


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    )
    return Path(out.stdout.strip())


def check_room(folder: Path, needed: int = NEEDED_BYTES) -> None:
    """Raise NoRoom naming `folder` when its disk has fewer than `needed` bytes free."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise NoRoom(
            f"installing {' '.join(TORCH)} into {folder} needs about {needed / 2**30:.1f} GiB free; "
            f"the disk holding it has {free / 2**30:.1f} GiB. Free some space (old clones, "
            f"virtual environments) and run again."
        )


def torch_site(venv: Path = TORCH_VENV) -> Path:
    """site-packages of a venv holding only torch and torchvision (made on first call)."""
    python = venv / "bin" / "python"
    marker = venv / ".c3-torch-ok"
    if not marker.exists() or marker.read_text().split() != list(TORCH):
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one from a failed install frees its room
        check_room(venv)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *TORCH], check=True)
        marker.write_text(" ".join(TORCH))
    return _site_packages(python)


def link(into_python: Path, site: Path) -> Path:
    """Write a .pth into the venv of `into_python` so that it imports from `site`; return its path."""
    pth = _site_packages(into_python) / PTH_NAME
    pth.write_text(f"{site}\n")
    return pth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link", type=Path, metavar="VENV", help="a venv to make import the torch environment")
    args = parser.parse_args(argv)
    try:
        site = torch_site()
    except NoRoom as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.link is not None:
        link(args.link / "bin" / "python", site)
    print(site)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
