"""Discovery, compatibility checks and failure isolation of the plugin host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fake_dists import populate

from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import ContributionError, Registry, UnknownContributionError


@pytest.fixture()
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    populate(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("C3_PLUGINS", raising=False)
    monkeypatch.delenv("C3_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return tmp_path


def _by_dist(host: PluginHost) -> dict[str, object]:
    return {p.distribution: p for p in host.plugins}


def test_each_failure_is_reported_and_the_rest_load(fake_site: Path) -> None:
    host = PluginHost().load()
    plugins = _by_dist(host)
    assert plugins["c3-fakegood"].status == "loaded"
    assert plugins["c3-fakegood"].core_range == "<1,>=0.1"
    assert plugins["c3-fakegood"].modalities == ["fake"]
    assert plugins["c3-fakebroken"].status == "error"
    assert "plugin exploded on import" in plugins["c3-fakebroken"].error
    assert plugins["c3-fakefuture"].status == "incompatible"
    assert "needs c3-core" in plugins["c3-fakefuture"].error
    assert plugins["c3-fakenorange"].status == "incompatible"
    assert plugins["c3-fakebadhook"].status == "error"
    assert "c3_register_operatorz" in plugins["c3-fakebadhook"].error
    assert plugins["c3-fakefailing"].status == "error"
    assert "failing.bad id" in plugins["c3-fakefailing"].error
    ops = host.registry("operators")
    assert "fake.gain" in ops
    assert "failing.ok" not in ops  # partial contributions of a failed plugin are dropped
    assert "future.gain" not in ops


def test_incompatible_plugin_is_never_imported(fake_site: Path) -> None:
    PluginHost().load()
    assert "c3_fakefuture_plugin" not in sys.modules


def test_autoload_off_and_allow_list(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert PluginHost().load().plugins == []
    monkeypatch.delenv("C3_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("C3_PLUGINS", "c3-fakegood")
    plugins = _by_dist(PluginHost().load())
    assert plugins["c3-fakegood"].status == "loaded"
    assert plugins["c3-fakebroken"].status == "disabled"


def test_load_is_idempotent(fake_site: Path) -> None:
    host = PluginHost()
    host.load()
    n = len(host.plugins)
    host.load()
    assert len(host.plugins) == n


def test_listing_plugins_does_not_import_torch(fake_site: Path) -> None:
    code = (
        "import sys; from c3_core.plugins.host import PluginHost; h = PluginHost().load(); "
        "[p.to_dict() for p in h.plugins]; print('torch' in sys.modules)"
    )
    env_path = f"{fake_site}"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_registry_validates_ids_and_targets() -> None:
    reg = Registry("operators")
    with pytest.raises(ContributionError, match="modality.name"):
        reg.add("NoDot", "a.b:C")
    with pytest.raises(ContributionError, match="package.module:attr"):
        reg.add("mod.op", "a.b.C")
    reg.add("mod.op", "a.b:C", "ok")
    with pytest.raises(ContributionError, match="already registered"):
        reg.add("mod.op", "a.b:D")
    with pytest.raises(UnknownContributionError, match="mod.nope"):
        reg.get("mod.nope")


def test_lazy_target_errors_name_the_contribution() -> None:
    reg = Registry("models")
    reg.add("mod.missing", "no_such_module_xyz:thing")
    with pytest.raises(ContributionError, match="mod.missing"):
        reg.get("mod.missing").load()
