"""Write fake installed distributions (dist-info + module) into a folder for discovery tests."""

from __future__ import annotations

from pathlib import Path

GOOD_MODULE = '''
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_operators(registry):
    registry.add("fake.gain", "toy_plugin:ToyGain", "a gain")
'''

BROKEN_MODULE = "raise RuntimeError('plugin exploded on import')\n"

BAD_HOOK_MODULE = '''
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_operatorz(registry):
    pass
'''

FAILING_REGISTRAR = '''
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_operators(registry):
    registry.add("failing.ok", "toy_plugin:ToyGain", "registered before the failure")
    registry.add("failing.bad id", "x:y", "bad")
'''


def write_dist(root: Path, name: str, module: str, source: str, requires: str | None = "c3-core>=0.1,<1") -> None:
    """A dist-info folder for distribution ``name`` whose entry point ``c3`` names ``module``."""
    info = root / f"{name.replace('-', '_')}-0.3.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 0.3.0"]
    if requires:
        lines.append(f"Requires-Dist: {requires}")
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    short = name.split("-", 1)[-1]
    (info / "entry_points.txt").write_text(f"[c3]\n{short} = {module}\n")
    (root / f"{module}.py").write_text(source)


def populate(root: Path) -> None:
    write_dist(root, "c3-fakegood", "c3_fakegood_plugin", GOOD_MODULE)
    write_dist(root, "c3-fakebroken", "c3_fakebroken_plugin", BROKEN_MODULE)
    write_dist(root, "c3-fakefuture", "c3_fakefuture_plugin", GOOD_MODULE.replace("fake.gain", "future.gain"), "c3-core>=9,<10")
    write_dist(root, "c3-fakenorange", "c3_fakenorange_plugin", GOOD_MODULE.replace("fake.gain", "norange.gain"), None)
    write_dist(root, "c3-fakebadhook", "c3_fakebadhook_plugin", BAD_HOOK_MODULE)
    write_dist(root, "c3-fakefailing", "c3_fakefailing_plugin", FAILING_REGISTRAR)
