"""Open intensity domains: the Domain value, the shared ones, the registry and the hook, and core
code that asks the domain (image files, baselines, the gallery) instead of its name."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np
import pytest
import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.domains import SHARED_DOMAINS, Domain, DomainRegistry, IntensityDomain, parse_domain
from c3_core.imagefiles import quantise_u16
from c3_core.plugins.host import PluginHost
from c3_core.plugins.markers import hookimpl
from c3_core.plugins.registry import ContributionError
from c3_core.training import baselines_ops as ops

SONAR = Domain("sonar_echo", "echo amplitude of a toy sonar, linear", low=0.0,
               display="c3_core.domains:counts_display", display_span=3.0)
PALETTE = Domain("palette_rgb", "a toy colour space in [0, 1]", low=0.0, high=1.0, luma=(0.5, 0.25, 0.25))


def _batch(domain: object, n: int = 1) -> Batch:
    return Batch(torch.rand(n, 1, 8, 8), tuple(f"e{i}" for i in range(n)), "toy", domain, ((1.0, 1.0),) * n)  # type: ignore[arg-type]


# -- the value --------------------------------------------------------------------------------
def test_shared_domains_keep_the_01_spellings() -> None:
    assert [d.value for d in IntensityDomain] == ["counts", "log_attenuation", "hu", "magnitude", "linear_rgb", "srgb", "display"]
    assert IntensityDomain.SRGB is Domain.SRGB and IntensityDomain("srgb") is Domain.SRGB
    assert parse_domain("hu") is Domain.HU and parse_domain(Domain.HU) is Domain.HU
    assert Domain.SRGB == "srgb" and isinstance(Domain.SRGB, str) and {Domain.SRGB: 1}["srgb"] == 1
    assert json.dumps({"domain": Domain.COUNTS}) == '{"domain": "counts"}'
    assert f"{Domain.MAGNITUDE}" == "magnitude" and repr(Domain.MAGNITUDE) == "Domain('magnitude')"
    assert not hasattr(IntensityDomain, "ENVELOPE") and not hasattr(IntensityDomain, "B_MODE")  # moved to c3-ultrasound
    with pytest.raises(ValueError, match="unknown intensity domain 'envelope'; known: counts, log_attenuation"):
        IntensityDomain("envelope")


def test_a_domain_declares_range_display_and_colour() -> None:
    assert SONAR.low == 0.0 and SONAR.high is None and not SONAR.bounded and not SONAR.unit_range
    assert PALETTE.bounded and PALETTE.unit_range and PALETTE.luma == (0.5, 0.25, 0.25)
    x = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.equal(SONAR.to_display(x), -torch.log(x)) and PALETTE.to_display(x) is x
    with pytest.raises(AttributeError, match="immutable"):
        SONAR.low = 1.0  # type: ignore[misc]
    for bad, match in (
        (dict(name="Sonar", meaning="x"), "lower-case identifier"),
        (dict(name="sonar", meaning=" "), "needs a meaning"),
        (dict(name="sonar", meaning="x", low=1.0, high=0.0), "below high"),
        (dict(name="sonar", meaning="x", display="not a target"), "package.module:function"),
        (dict(name="sonar", meaning="x", luma=(1.0, 0.0)), "three weights"),
        (dict(name="sonar", meaning="x", display_span=0.0), "display_span"),
    ):
        with pytest.raises(ValueError, match=match):
            Domain(**bad)  # type: ignore[arg-type]


def test_a_plugin_domain_survives_pickle_copy_and_asdict() -> None:
    @dataclass(frozen=True)
    class Holder:
        domain: Domain

    for twin in (pickle.loads(pickle.dumps(SONAR)), copy.deepcopy(SONAR), asdict(Holder(SONAR))["domain"]):
        assert type(twin) is Domain and twin.declaration() == SONAR.declaration()


# -- batches ----------------------------------------------------------------------------------
def test_a_batch_takes_shared_names_and_plugin_domains_and_names_the_known_ones_otherwise() -> None:
    assert _batch("srgb").domain is Domain.SRGB
    assert _batch(SONAR).domain is SONAR and _batch(SONAR).case_info(0).domain is SONAR
    with pytest.raises(ValueError, match=r"unknown intensity domain 'sonar_echo'; known: counts, .*display; a plugin's own domain"):
        _batch("sonar_echo")
    assert isinstance(_batch(SONAR).case_info(0), CaseInfo)


# -- the registry and the hook ------------------------------------------------------------------
def _plugin(name: str, *domains: Domain, fail_operators: bool = False) -> ModuleType:
    module = ModuleType(name)

    @hookimpl
    def c3_register_domains(registry: DomainRegistry) -> None:
        for d in domains:
            registry.add(d)

    @hookimpl
    def c3_register_operators(registry: object) -> None:
        if fail_operators:
            raise RuntimeError("boom")

    module.c3_register_domains = c3_register_domains  # type: ignore[attr-defined]
    module.c3_register_operators = c3_register_operators  # type: ignore[attr-defined]
    return module


def test_plugins_register_domains_and_the_host_resolves_their_names() -> None:
    host = PluginHost(autoload=False, modules={"sonar": _plugin("sonar", SONAR, PALETTE, Domain.SRGB)}).load()
    assert host.domain("sonar_echo") is SONAR and host.domain(PALETTE) is PALETTE and host.domain("srgb") is Domain.SRGB
    assert host.domains.owner("sonar_echo") == "sonar" and host.domains.owner("srgb") == "c3-core"
    assert host.domains.by_plugin("sonar") == [SONAR, PALETTE]  # re-registering a shared domain as is: allowed
    with pytest.raises(ValueError, match="unknown intensity domain 'nope'; known: counts, .*sonar_echo, palette_rgb"):
        host.domain("nope")
    impostor = Domain("sonar_echo", "something else", low=0.0)
    with pytest.raises(ValueError, match="not registered as declared"):
        host.domain(impostor)


def test_a_conflicting_domain_fails_only_its_plugin() -> None:
    other = Domain("sonar_echo", "another meaning", low=0.0)
    host = PluginHost(autoload=False, modules={"a": _plugin("a", SONAR), "b": _plugin("b", other)}).load()
    status = {p.name: p for p in host.plugins}
    assert status["a"].status == "loaded" and status["b"].status == "error"
    assert "already registered by a with another declaration" in status["b"].error
    assert host.domain("sonar_echo") is SONAR
    registry = DomainRegistry()
    with pytest.raises(ContributionError, match="expected a c3_core.domains.Domain"):
        registry.add("sonar_echo")  # type: ignore[arg-type]


def test_a_plugin_whose_other_hook_fails_loses_its_domains_too() -> None:
    host = PluginHost(autoload=False, modules={"sonar": _plugin("sonar", SONAR, fail_operators=True)}).load()
    assert host.plugins[0].status == "error" and "sonar_echo" not in host.domains
    assert len(host.domains) == len(SHARED_DOMAINS)


def test_the_domain_hook_module_imports_no_torch() -> None:
    code = "import sys, c3_core.plugins.hookspecs, c3_core.domains; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- core code asks the domain --------------------------------------------------------------------
def test_image_files_baselines_and_gallery_follow_the_declaration() -> None:
    from c3_core.report.gallery import _display, _window

    x = np.linspace(0.2, 0.6, 16).reshape(4, 4)
    _, offset, scale = quantise_u16(x, PALETTE)
    assert (offset, scale) == (0.0, 1.0 / 65535)  # a [0, 1] domain: fixed scale
    _, offset, scale = quantise_u16(x, SONAR)
    assert offset == pytest.approx(0.2) and scale == pytest.approx(0.4 / 65535)  # unbounded: the image's range
    assert ops.domain_bounds(SONAR) == (0.0, None) and ops.domain_bounds(Domain.HU) == (None, None)
    rgb = torch.rand(1, 3, 4, 4)
    assert ops.is_colour(rgb, PALETTE) and not ops.is_colour(rgb, SONAR) and ops.luma_weights(PALETTE) == (0.5, 0.25, 0.25)
    assert ops.luma_weights(SONAR) == (0.299, 0.587, 0.114)
    a = torch.logspace(-3, 0, 64, dtype=torch.float64).reshape(1, 8, 8)
    shown = _display(a, SONAR)
    assert torch.equal(shown, -torch.log(a))
    lo, hi = _window(shown, shown, SONAR)
    assert hi - lo == pytest.approx(3.0)  # display_span caps the window
    assert _window(a, a, PALETTE) == (0.0, 1.0) and _window(a, a, Domain.LINEAR_RGB) == (0.0, 1.0)
