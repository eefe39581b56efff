"""The weights cache: first-use training, atomic writes, autograd inside no_grad callers."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from c3_core.cache import cached_weights


def _fit_line() -> dict[str, torch.Tensor]:
    """Least squares by gradient descent: needs autograd (fails inside no_grad without the cache's guard)."""
    x = torch.linspace(-1, 1, 32)
    y = 3.0 * x + 0.5
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.5)
    for _ in range(200):
        loss = ((w[0] * x + w[1] - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"w": w.detach()}


def test_first_use_trains_with_autograd_even_under_no_grad(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("C3_CACHE_DIR", str(tmp_path))
    with torch.no_grad():
        path = cached_weights("line", _fit_line)
    w = load_file(str(path))["w"]
    assert torch.allclose(w, torch.tensor([3.0, 0.5]), atol=1e-3)
    calls = []
    assert cached_weights("line", lambda: calls.append(1) or {}) == path and not calls  # cached: no retraining


def test_interrupted_training_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("C3_CACHE_DIR", str(tmp_path))

    def boom() -> dict[str, torch.Tensor]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_weights("broken", boom)
    assert not list((tmp_path / "weights").glob("*"))


def _ship(root, name: str, state: dict[str, torch.Tensor], *, sha: str | None = None) -> str:
    """A package ``c3_fakeship`` under ``root`` that ships weights ``name`` (its manifest's sha256 = ``sha``)."""
    import hashlib
    import json

    from safetensors.torch import save_file

    d = root / "c3_fakeship" / "weights"
    d.mkdir(parents=True)
    (root / "c3_fakeship" / "__init__.py").write_text("")
    save_file(state, str(d / f"{name}.safetensors"))
    digest = hashlib.sha256((d / f"{name}.safetensors").read_bytes()).hexdigest()
    entry = {"file": f"{name}.safetensors", "sha256": sha or digest, "bytes": 0, "command": "python make.py"}
    (d / "weights.json").write_text(json.dumps({"weights": {name: entry}}))
    return digest


def test_shipped_weights_are_used_after_their_checksum_without_training(tmp_path, monkeypatch) -> None:
    import importlib

    monkeypatch.setenv("C3_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("C3_IGNORE_SHIPPED_WEIGHTS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    _ship(tmp_path / "pkgs", "c3_fakeship-demo-v1", {"w": torch.tensor([1.0, 2.0])})
    importlib.invalidate_caches()
    calls = []
    path = cached_weights("c3_fakeship-demo-v1", lambda: calls.append(1) or {"w": torch.zeros(2)})
    assert not calls and path.parent.name == "weights" and path.parent.parent.name == "c3_fakeship"
    assert load_file(str(path))["w"].tolist() == [1.0, 2.0] and not (tmp_path / "cache").exists()
    # C3_IGNORE_SHIPPED_WEIGHTS=1 trains into the cache instead (what make_demo_weights.py --check does)
    monkeypatch.setenv("C3_IGNORE_SHIPPED_WEIGHTS", "1")
    trained = cached_weights("c3_fakeship-demo-v1", lambda: calls.append(1) or {"w": torch.zeros(2)})
    assert calls == [1] and trained.parent == tmp_path / "cache" / "weights"


def test_a_shipped_file_that_fails_its_checksum_is_refused(tmp_path, monkeypatch, capsys) -> None:
    import importlib

    from c3_core.model import WeightsError

    monkeypatch.setenv("C3_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("C3_IGNORE_SHIPPED_WEIGHTS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    _ship(tmp_path / "pkgs", "c3_fakeship-demo-v1", {"w": torch.ones(2)}, sha="0" * 64)
    importlib.invalidate_caches()
    with pytest.raises(WeightsError, match="SHA-256.*python make.py"):
        cached_weights("c3_fakeship-demo-v1", lambda: {"w": torch.zeros(2)})
    # weights no package ships are trained on first use, and the console says so
    cached_weights("c3_fakeship-other-v1", lambda: {"w": torch.zeros(2)})
    assert "no shipped weights for c3_fakeship-other-v1" in capsys.readouterr().err
