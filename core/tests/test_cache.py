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
