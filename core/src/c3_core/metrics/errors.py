"""Errors of the metric set."""

from __future__ import annotations


class UndefinedMetricError(ValueError):
    """The metric is undefined for the given input (e.g. AUROC with one class present).

    Raised instead of returning NaN; callers decide whether to skip, report ``None`` or fail.
    ``reason`` is the cause alone (e.g. ``"only one class is present (0 positive, 5 negative)"``),
    ready to be written beside a ``null`` in a summary; the message names the metric too.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message

    @classmethod
    def because(cls, metric: str, reason: str) -> UndefinedMetricError:
        """``"<metric> is undefined: <reason>"``, keeping ``reason`` for summaries."""
        return cls(f"{metric} is undefined: {reason}", reason)
