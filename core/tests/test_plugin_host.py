"""Discovery, compatibility checks and failure isolation of the plugin host."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_dists import populate, write_dist

from c3_core.plugins import catalogue
from c3_core.plugins.host import PluginHost
from c3_core.plugins.registry import ContributionError, ContributionLoadError, Registry, UnknownContributionError


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


# -- contributions whose target fails to import (degraded plugins) ---------------------------

BROKEN_OPERATOR_PLUGIN = '''
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_operators(registry):
    registry.add("halfway.gain", "toy_plugin:ToyGain", "works")
    registry.add("halfway.native", "c3_halfway_native:NativeOp", "its module raises on import")
'''


@pytest.fixture()
def halfway_site(fake_site: Path) -> Path:
    write_dist(fake_site, "c3-halfway", "c3_halfway_plugin", BROKEN_OPERATOR_PLUGIN)
    (fake_site / "c3_halfway_native.py").write_text("raise ImportError('libnative.so: cannot open shared object file')\n")
    return fake_site


def test_a_target_that_fails_to_import_degrades_its_plugin(halfway_site: Path) -> None:
    host = PluginHost().load()
    record = _by_dist(host)["c3-halfway"]
    assert record.status == "loaded" and host.failures() == []  # nothing imported while listing
    failures = host.check(kinds=["operators"])
    assert [(f.plugin, f.id) for f in failures] == [("halfway", "halfway.native")]
    assert "ImportError: libnative.so" in failures[0].error
    assert record.status == "degraded" and "halfway.native" in record.error
    assert record.to_dict()["failures"][0]["id"] == "halfway.native"
    assert _by_dist(host)["c3-fakegood"].status == "loaded"
    assert host.make_operator("halfway.gain").id == "toy.gain"  # the plugin's other operator still works


def test_a_failure_seen_during_a_run_names_plugin_and_contribution(halfway_site: Path) -> None:
    host = PluginHost().load()
    with pytest.raises(ContributionLoadError) as info:
        host.make_operator("halfway.native")
    err = info.value
    assert isinstance(err, ContributionError)  # callers that caught ContributionError still do
    assert (err.plugin, err.contribution) == ("halfway", "halfway.native")
    assert isinstance(err.__cause__, ImportError)
    assert [f.id for f in host.failures(["halfway"])] == ["halfway.native"] and host.failures(["fake"]) == []
    assert _by_dist(host)["c3-halfway"].status == "degraded"


def test_a_target_that_exits_on_import_is_a_failure_not_an_exit(halfway_site: Path) -> None:
    (halfway_site / "c3_halfway_native.py").write_text("raise SystemExit('no GPU driver')\n")
    failures = PluginHost().load().check(modalities=["halfway"])
    assert "SystemExit: no GPU driver" in failures[0].error


# -- the catalogue: listing from a shipped file, drift against describe() ------------------

CATALOGUE_PLUGIN = '''
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_operators(registry):
    registry.add("cat.gain", "toy_plugin:ToyGain", "gain")
    registry.add("cat.shift", "toy_plugin:ToyShift", "shift")

@hookimpl
def c3_register_editors(registry):
    registry.add("cat.lesion_removed", "toy_interventions:ToyLesionRemoved", "removed")
    registry.add("cat.lesion_only", "toy_interventions:ToyLesionOnly", "only")
'''


def _package_dist(root: Path, name: str, package: str, source: str) -> None:
    """An installed distribution whose entry module is ``package.plugin`` (a package can ship data)."""
    write_dist(root, name, f"{package}_unused", "")
    (root / f"{package}_unused.py").unlink()
    (root / f"{name.replace('-', '_')}-0.3.0.dist-info" / "entry_points.txt").write_text(f"[c3]\ncat = {package}.plugin\n")
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    (root / package / "plugin.py").write_text(source)


@pytest.fixture()
def catalogue_site(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    _package_dist(fake_site, "c3-fakecat", "c3_fakecat", CATALOGUE_PLUGIN)
    monkeypatch.setenv("C3_PLUGINS", "c3-fakecat")
    yield fake_site
    for name in ("c3_fakecat", "c3_fakecat.plugin"):  # the next test's package lives in another folder
        sys.modules.pop(name, None)


def test_catalogue_is_written_read_and_checked_for_drift(catalogue_site: Path) -> None:
    host = PluginHost().load()
    assert [e.imported for e in catalogue.entries(host)] == [True] * 4  # no catalogue yet: imported
    path = catalogue.write(host, "cat")
    assert path == catalogue_site / "c3_fakecat" / "catalogue.json"
    assert catalogue.drift(host, "cat") == []
    listed = catalogue.entries(PluginHost().load(), modalities=["cat"])
    assert [e.id for e in listed] == ["cat.gain", "cat.shift", "cat.lesion_only", "cat.lesion_removed"]
    assert not any(e.imported for e in listed)
    assert listed[0].to_dict()["severity"]["unit"] == "dB" and listed[0].to_dict()["plugin"] == "cat"
    assert catalogue.editor_roles(host, "cat")["removed"].id == "cat.lesion_removed"
    data = json.loads(path.read_text())
    data["operators"]["cat.gain"]["severity"]["extreme"] = 60.0
    del data["editors"]["cat.lesion_only"]
    path.write_text(json.dumps(data))
    problems = catalogue.drift(PluginHost().load(), "cat")
    assert "cat.gain: severity differs from describe()" in problems
    assert "cat.lesion_only: registered but not in catalogue.json" in problems
    again = catalogue.entries(PluginHost().load(), modalities=["cat"])
    assert [e.imported for e in again] == [False, False, True, False]  # a stale file: the missing id is imported


def test_listing_the_catalogue_imports_no_torch_and_no_operator_module(catalogue_site: Path) -> None:
    catalogue.write(PluginHost().load(), "cat")
    code = (
        "import sys; from c3_core.plugins.host import PluginHost; from c3_core.plugins.catalogue import entries; "
        "listed = entries(PluginHost().load()); assert len(listed) == 4 and not any(e.imported for e in listed); "
        "print(sorted(m for m in ('torch', 'toy_plugin', 'toy_interventions', 'c3_core.operator') if m in sys.modules))"
    )
    env = {"PYTHONPATH": f"{catalogue_site}{os.pathsep}{Path(__file__).parent}", "PATH": "/usr/bin:/bin", "C3_PLUGINS": "c3-fakecat"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_contribution_pickles_without_its_host(halfway_site: Path) -> None:
    c = PluginHost().load().contribution("operators", "halfway.gain")
    again = pickle.loads(pickle.dumps(c))
    assert again == c and again.on_failure is None and c.on_failure is not None
