"""C3 core: counterfactual neighbourhoods, validity gate, consistency losses, shift-stable utility.

Importing ``c3_core`` is cheap: it does not import torch. Heavy names are resolved lazily on
first attribute access (PEP 562), so ``c3 plugins`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Batch": "c3_core.batch",
    "Sample": "c3_core.batch",
    "CaseInfo": "c3_core.batch",
    "IntensityDomain": "c3_core.domains",
    "collate": "c3_core.batch",
    "Operator": "c3_core.operator",
    "Editor": "c3_core.operator",
    "Severity": "c3_core.operator",
    "Provenance": "c3_core.provenance",
    "Neighbourhood": "c3_core.neighbourhood",
    "NeighbourhoodSpec": "c3_core.neighbourhood",
    "ModelBundle": "c3_core.model",
    "PluginHost": "c3_core.plugins.host",
    "hookimpl": "c3_core.plugins.markers",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'c3_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
