"""Errors of the report package (each maps to exit code 2 on the command line)."""

from __future__ import annotations


class ReportError(ValueError):
    """Bad input for a report: not a results folder, unreadable file, bad thresholds file."""


class MissingDependencyError(ReportError):
    """An optional dependency of the report (matplotlib) is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`MissingDependencyError` unless matplotlib can be imported."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("the report needs matplotlib: pip install 'c3-core[report]'")
