"""scripts/torch_site.py: the one torch environment refuses to start an install the disk cannot hold."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("torch_site", ROOT / "scripts" / "torch_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_room_names_the_folder_and_the_free_space(tmp_path: Path) -> None:
    torch_site = _module()
    target = tmp_path / "not-yet" / "_torch"  # not made yet: its nearest existing parent is measured
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(torch_site.NoRoom) as caught:
        torch_site.check_room(target, needed=free + 2**40)
    message = str(caught.value)
    assert str(target) in message
    assert f"{free / 2**30:.1f} GiB" in message
    assert not target.exists()


def test_room_enough_passes(tmp_path: Path) -> None:
    _module().check_room(tmp_path / "_torch", needed=1)


@pytest.mark.skipif("NOX_CURRENT_SESSION" not in os.environ, reason="checks how nox sessions get torch")
def test_this_session_imports_the_shared_torch() -> None:
    torch_site = _module()
    site = torch_site.TORCH_VENV / "lib"
    import torch

    assert Path(torch.__file__).resolve().is_relative_to(site.resolve()), (
        "nox sessions are meant to import torch from .nox/_torch, not from a copy of their own"
    )
