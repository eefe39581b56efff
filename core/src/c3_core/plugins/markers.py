"""pluggy markers for the ``c3`` project. Plugins decorate hook functions with ``hookimpl``."""

from __future__ import annotations

import pluggy

PROJECT = "c3"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
