"""Errors of the metric set."""


class UndefinedMetricError(ValueError):
    """A metric that is undefined for the given input (e.g. AUROC with one class present)."""
