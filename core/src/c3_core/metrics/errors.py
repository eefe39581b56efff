"""Errors of the metric set."""


class UndefinedMetricError(ValueError):
    """The metric is undefined for the given input (e.g. AUROC with one class present).

    Raised instead of returning NaN; callers decide whether to skip, report ``None`` or fail.
    """
