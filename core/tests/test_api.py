"""c3_core.api: one author module, light to import; the guide, template and example use only it;
a plugin written against 0.1's imports still loads (with a DeprecationWarning from the kit)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from c3_core import api
from c3_core._legacy_imports import legacy_imports
from c3_core.plugins.host import PluginHost
from c3_core.testing import plugin_checks

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "plugin-authors.md"
TEMPLATE = REPO / "packages" / "plugin-template"
ULTRASOUND = REPO / "packages" / "ultrasound"
in_repo = pytest.mark.skipif(not GUIDE.exists(), reason="docs/ and packages/ are not shipped with the sdist")


# -- the module -----------------------------------------------------------------------------
def test_all_lists_exactly_the_exports_and_each_resolves_to_its_home_object() -> None:
    exported = {name: module for module, names in api._EXPORTS.items() for name in names}
    assert sorted(api.__all__) == sorted(exported) and len(api.__all__) == len(set(api.__all__))
    for name, module in exported.items():
        assert getattr(api, name) is getattr(importlib.import_module(module), name), name
    assert set(api.__all__) <= set(dir(api))


def test_type_checking_imports_match_the_exports() -> None:
    tree = ast.parse(Path(api.__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    imported = {n.module: sorted(a.name for a in n.names) for n in block.body if isinstance(n, ast.ImportFrom)}
    assert imported == {m: sorted(names) for m, names in api._EXPORTS.items()}


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        api.Nope  # noqa: B018


def test_importing_the_api_and_light_names_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from c3_core.api import DatasetMeta, Domain, ExperimentSpec, Registry, hookimpl\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- who imports what -----------------------------------------------------------------------
def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def _c3_core_imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "c3_core":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "c3_core")
    return found


@in_repo
def test_guide_template_and_example_import_only_the_author_api_and_the_kit() -> None:
    """A plugin imports c3-core through ``c3_core.api`` (and its tests through ``c3_core.testing``);
    a benchmark script in a ``bench/`` folder, which is not part of the plugin, may also use the
    benchmark helpers ``c3_core.benchmarking`` (docs/benchmarks.md)."""
    sources = {f"{GUIDE.name} block {i}": code for i, code in enumerate(_python_blocks(GUIDE.read_text(encoding="utf-8")))}
    for root in (TEMPLATE, ULTRASOUND):
        sources.update({str(p.relative_to(REPO)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))})

    def allowed(where: str) -> set[str]:
        kit = {"c3_core.api", "c3_core.testing"}
        return kit | {"c3_core.benchmarking"} if "bench" in Path(where).parts[:-1] else kit

    wrong = {where: sorted(m - allowed(where)) for where, code in sources.items() if (m := _c3_core_imports(code))}
    assert {k: v for k, v in wrong.items() if v} == {}
    assert any("c3_core.api" in _c3_core_imports(code) for code in sources.values())
    assert not allowed("packages/ultrasound/src/c3_ultrasound/bench.py") - {"c3_core.api", "c3_core.testing"}  # only a bench/ folder


# -- the guide's layout is the template's ---------------------------------------------------
def _guide_tree() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    block = text.split("## Shape of a plugin", 1)[1].split("```", 2)[1]
    paths, stack = [], []
    for line in block.strip("\n").splitlines()[1:]:  # the first line is the root folder
        entry = line.split("#", 1)[0].rstrip()
        depth = (len(entry) - len(entry.lstrip())) // 2 - 1
        stack[depth:] = [entry.strip()]
        if not entry.strip().endswith("/"):
            paths.append("".join(stack))
    return paths


@in_repo
def test_guide_layout_matches_the_template() -> None:
    guide = [p.replace("c3_mymod", "c3_plugin_template") for p in _guide_tree()]
    files = {
        str(p.relative_to(TEMPLATE)) for p in TEMPLATE.rglob("*")
        if p.is_file() and not any(part.startswith((".", "__pycache__")) or part.endswith(".egg-info") for part in p.relative_to(TEMPLATE).parts)
    }
    patterns = [re.compile("^" + re.escape(g).replace(re.escape("<family>"), r"[a-z][a-z0-9_]*") + "$") for g in guide]
    for g, pattern in zip(guide, patterns):
        assert any(pattern.match(f) for f in files), f"the guide lists {g}; the template has no such file"
    unlisted = sorted(f for f in files if not f.endswith("__init__.py") and not any(p.match(f) for p in patterns))
    assert unlisted == [], f"template files the guide's layout does not show: {unlisted}"
    for f in files:  # every folder of the package is a package
        if f.startswith("src/") and f.endswith(".py"):
            assert (TEMPLATE / f).parent.joinpath("__init__.py").exists(), f


# -- 0.1 plugins keep working ---------------------------------------------------------------
LEGACY_PLUGIN = '''
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_operators(registry):
    registry.add("legacy.gain", "c3_legacy01.operators:Gain", "global gain")

@hookimpl
def c3_register_datasets(registry):
    registry.add("legacy.demo", "c3_legacy01.data:make_demo_dataset", "tiny cohort", task="multiclass", demo=True,
                 default_model="legacy.cnn", default_neighbourhood="c3_legacy01:default.toml")

@hookimpl
def c3_register_models(registry):
    registry.add("legacy.cnn", "c3_legacy01.models:cnn", "tiny CNN", task="multiclass", architecture="SmallCNN")
'''

LEGACY_OPERATORS = '''
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.domains import IntensityDomain
from c3_core.operator import Operator, Severity, SeveritySource
from c3_core.seeding import uniform


@dataclass(frozen=True)
class GainParams:
    gain_db: float


class Gain(Operator[GainParams]):
    id = "legacy.gain"
    modality = "legacy"
    domain = IntensityDomain.DISPLAY
    severity = Severity("gain", "dB", 0.0, 6.0, source=SeveritySource("gain", derivation="test", extreme_rationale="test"))
    params_type = GainParams
    summary = "global gain"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> GainParams:
        return GainParams(severity if uniform(generator, 0, 1) < 0.5 else -severity)

    def _apply(self, batch: Batch, params) -> Batch:
        g = torch.tensor([10 ** (p.gain_db / 20) for p in params], dtype=batch.image.dtype).view(-1, 1, 1, 1)
        return batch.replace(image=batch.image * g)
'''

LEGACY_DATA = '''
import torch

from c3_core.batch import Sample
from c3_core.seeding import derive_seed, generator_from_seed


class Demo:
    def __len__(self):
        return 4

    def __getitem__(self, i):
        img = torch.rand((1, 16, 16), generator=generator_from_seed(derive_seed(0, "legacy", i)))
        return Sample(img, f"legacy-{i}", "legacy", "display", (1.0, 1.0), torch.tensor(i % 2))


def make_demo_dataset(*, source=None, split="test", **options):
    return Demo()
'''

LEGACY_MODELS = '''
from c3_core.cache import cached_weights
from c3_core.model import ModelBundle, load_state_dict_safely
from c3_core.reference_models import SmallCNN
from c3_core.reference_training import train_reference


def cnn(*, weights=None, device="cpu", **options):
    net = SmallCNN(1, 2, width=4, depth=1)
    bundle = ModelBundle(net, "multiclass", ("a", "b"), "display", name="legacy.cnn")
    if weights == "demo":
        load_state_dict_safely(cached_weights("legacy", lambda: train_reference(bundle, None)), net)
    return bundle.to(device)
'''


def _write_legacy_plugin(root: Path) -> None:
    pkg = root / "c3_legacy01"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, source in (("plugin", LEGACY_PLUGIN), ("operators", LEGACY_OPERATORS), ("data", LEGACY_DATA), ("models", LEGACY_MODELS)):
        (pkg / f"{name}.py").write_text(textwrap.dedent(source))
    (pkg / "default.toml").write_text('k = 4\n\n[[members]]\nop = "legacy.gain"\nseverity = [1.0, 6.0]\n')
    info = root / "c3_legacy01-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: c3-legacy01\nVersion: 0.1.0\nRequires-Dist: c3-core>=0.1,<1\n")
    (info / "entry_points.txt").write_text("[c3]\nlegacy = c3_legacy01.plugin\n")


def test_a_plugin_written_against_the_0_1_imports_still_loads_and_passes_the_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_legacy_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost(allow=["c3-legacy01"]).load()
    record = host.plugin("legacy")
    assert record.status == "loaded", record.error
    assert host.make_operator("legacy.gain").severity.extreme == 6.0

    module = importlib.import_module("c3_legacy01.plugin")
    checks = plugin_checks(module)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for check in checks:
            check()
    legacy = [w for w in caught if issubclass(w.category, DeprecationWarning) and "c3_core.api" in str(w.message)]
    modules = {str(w.message).split(" ", 1)[0] for w in legacy}
    assert modules == {
        "c3_core.plugins.markers", "c3_core.batch", "c3_core.domains", "c3_core.operator", "c3_core.seeding",
        "c3_core.cache", "c3_core.model", "c3_core.reference_models", "c3_core.reference_training",
    }
    assert all(Path(w.filename).parent.name == "c3_legacy01" and w.lineno > 0 for w in legacy)
    markers = next(w for w in legacy if str(w.message).startswith("c3_core.plugins.markers"))
    assert "import hookimpl from c3_core.api" in str(markers.message)


def test_the_legacy_scan_ignores_the_author_api_and_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "c3_modern"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import plugin\n")
    (pkg / "plugin.py").write_text(
        "import c3_core\nfrom c3_core import __version__\nfrom c3_core.api import hookimpl\nimport c3_core.testing\n"
        "from c3_core import Batch\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = legacy_imports(importlib.import_module("c3_modern.plugin"))
    assert [(f.module, f.names, f.line) for f in found] == [("c3_core", ("Batch",), 5)]
