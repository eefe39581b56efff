"""The robustness report: HTML (one self-contained file), model card and site-readiness check.

Everything here reads a finished results folder (``run.json``, ``summary.json`` and per modality
``cases.csv`` / ``counterfactuals.csv`` / ``summary.json``), never the evaluation internals.
Importing this package is cheap: matplotlib and torch are imported inside the functions that
need them.
"""

from __future__ import annotations

from c3_core.report.command import (
    EXIT_NOT_READY,
    EXIT_OK,
    EXIT_USAGE,
    render_report,
    report_command,
    try_render_report,
)
from c3_core.report.errors import MissingDependencyError, ReportError

__all__ = [
    "EXIT_NOT_READY",
    "EXIT_OK",
    "EXIT_USAGE",
    "MissingDependencyError",
    "ReportError",
    "render_report",
    "report_command",
    "try_render_report",
]
