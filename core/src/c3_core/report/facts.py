"""Numbers and provenance facts shared by the HTML report and the model card (formatted text).

A metric the summary leaves undefined (``null``, its reason at the same path under
``"undefined"``) is shown as ``undefined: <reason>``; a metric the summary does not have at all
(e.g. ECE of a segmentation run) as ``n/a``.
"""

from __future__ import annotations

import datetime as _dt
import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from c3_core.report.results import RunResults


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, ``n/a`` when undefined."""
    if isinstance(value, bool) or value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def fmt_ci(value: Any, ci: Sequence[float] | None) -> str:
    """``0.743 [0.691, 0.794]``."""
    if ci is None or len(ci) != 2:
        return fmt(value)
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def _at(summary: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` of a summary (None where any step is missing)."""
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def reason(summary: Mapping[str, Any], *path: str) -> str | None:
    """Why the metric at ``path`` is undefined (None when the summary gives no reason)."""
    node: Any = summary.get("undefined")
    for key in path:
        node = node.get(str(key)) if isinstance(node, Mapping) else None
    return node if isinstance(node, str) else None


def undefined_text(why: str | None) -> str:
    """``undefined: <reason>``, or ``n/a`` without a reason."""
    return f"undefined: {why}" if why else "n/a"


def metric(summary: Mapping[str, Any], *path: str, digits: int = 3) -> str:
    """The metric at ``path`` formatted, or ``undefined: <reason>`` where the run left it null."""
    value = _at(summary, path)
    if value is None:
        return undefined_text(reason(summary, *path))
    return fmt(value, digits)


def metric_ci(summary: Mapping[str, Any], *path: str) -> str:
    """A metric with its CI (``<path>_ci``): ``0.743 [0.691, 0.794]``; an undefined value or CI
    says why."""
    *parent, key = path
    value, ci = _at(summary, path), _at(summary, (*parent, f"{key}_ci"))
    if value is None:
        return metric(summary, *path)
    if isinstance(ci, Sequence) and len(ci) == 2:
        return fmt_ci(value, ci)
    why = reason(summary, *parent, f"{key}_ci")
    return f"{fmt(value)} (CI {undefined_text(why)})" if why else fmt(value)


def undefined_metrics(summary: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every undefined metric of a summary as (dotted path, reason), in the summary's order."""
    yield from _leaves(summary.get("undefined"), ())


def _leaves(node: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    if isinstance(node, str) and prefix:
        yield ".".join(prefix), node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, (*prefix, str(key)))


def undefined_by_reason(summary: Mapping[str, Any], curves: bool = False) -> list[tuple[str, list[str]]]:
    """(reason, metric paths) for each distinct reason; severity-response points only with
    ``curves``."""
    grouped: dict[str, list[str]] = {}
    for path, why in undefined_metrics(summary):
        if curves or not path.startswith("severity_response."):
            grouped.setdefault(why, []).append(path)
    return list(grouped.items())


def headline(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The modality's metrics as (label, formatted value) pairs, CIs where the run has them."""
    u = summary.get("utility") or {}
    gate = summary.get("gate") or {}
    rows: list[tuple[str, str]] = [("cases", fmt(summary.get("n_cases"))), ("failed cases", fmt(summary.get("n_failed", 0)))]
    if summary.get("task") == "segmentation":
        rows += [
            ("Dice (volume, mean)", metric(summary, "dice_volume_mean")),
            ("lesion Dice (mean)", metric(summary, "lesion_dice_mean")),
            ("lesion F1 (mean)", metric(summary, "lesion_f1_mean")),
            ("small-lesion recall", metric(summary, "small_lesion_recall")),
            ("HD95 mm (mean)", metric(summary, "hd95_mm_mean", digits=1)),
            ("volume calibration slope", metric(summary, "volume_slope")),
        ]
    else:
        rows += [
            ("AUROC (macro)", metric(summary, "auroc_macro")),
            ("AUPRC (macro)", metric(summary, "auprc_macro")),
            ("ECE", metric(summary, "ece")),
            ("Brier", metric(summary, "brier")),
        ]
        for key, label in (("accuracy", "accuracy"), ("quadratic_weighted_kappa", "quadratic-weighted kappa"),
                           ("referable_auroc", "referable AUROC")):
            if key in summary:
                rows.append((label, metric(summary, key)))
    rows += [
        ("score mean s(x)", metric(summary, "score_mean")),
        (f"utility mean U(x) [{_level(u)} CI]", metric_ci(summary, "utility", "mean")),
        (f"utility p10 [{_level(u)} CI]", metric_ci(summary, "utility", "p10")),
        ("flip rate", metric(summary, "flip_rate")),
        ("neighbourhood agreement", metric(summary, "neighbourhood_agreement")),
        ("counterfactuals admitted", f"{fmt(gate.get('admitted'))} of {fmt(gate.get('counterfactuals'))} "
                                     f"({metric(summary, 'gate', 'admission_rate')})"),
        ("K per case", fmt(summary.get("k"))),
        ("gated by", str(summary.get("gated_by", "n/a"))),
    ]
    return rows


def _level(u: Mapping[str, Any]) -> str:
    level = u.get("ci_level")
    return f"{round(100 * level)}%" if isinstance(level, int | float) else "95%"


def main_metric(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(name, value) of the task's headline metric: macro AUROC or mean Dice."""
    if summary.get("task") == "segmentation":
        return "Dice", metric(summary, "dice_volume_mean")
    return "AUROC", metric(summary, "auroc_macro")


def worst_operators(summary: Mapping[str, Any], n: int = 3) -> list[tuple[str, float, float, float | None]]:
    """(operator, severity, mean score drop, flip rate) at each operator's most damaging level
    among the levels with an admitted counterfactual (where the drop is defined)."""
    worst = []
    for op, points in (summary.get("severity_response") or {}).items():
        defined = [q for q in points or [] if isinstance(q.get("mean_score_drop"), int | float)]
        if defined:
            p = max(defined, key=lambda q: q["mean_score_drop"])
            worst.append((op, p["severity"], p["mean_score_drop"], p.get("flip_rate")))
    return sorted(worst, key=lambda w: -w[2])[:n]


def versions(run: RunResults) -> list[tuple[str, str]]:
    """(distribution, version) of c3-core and every plugin the run loaded."""
    out = [("c3-core", str(run.manifest.get("c3_core", "?")))]
    for p in run.manifest.get("plugins") or []:
        if isinstance(p, dict) and p.get("status", "loaded") == "loaded":
            out.append((str(p.get("name", "?")), str(p.get("version", "?"))))
    return out


def started(run: RunResults) -> str:
    """When the run started (UTC), or ``unknown``."""
    t = run.manifest.get("started")
    if not isinstance(t, int | float):
        return "unknown"
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def reproduce_command(run: RunResults) -> str:
    """The ``c3 evaluate`` command line that repeats the run (same options, same seeds)."""
    r = run.request
    args = ["c3", "evaluate"]
    for m in r.get("modalities") or []:
        args += ["-m", str(m)]
    for key, flag in (("model", "--model"), ("data", "--data"), ("teacher", "--teacher"),
                      ("neighbourhood", "--neighborhood"), ("k", "--k"), ("seed", "--seed"), ("limit", "--limit"),
                      ("gate_file", "--gate")):
        if r.get(key) is not None:
            args += [flag, str(r[key])]
    if r.get("device") not in (None, "cpu"):
        args += ["--device", str(r["device"])]
    if r.get("batch_size") not in (None, 8):
        args += ["--batch-size", str(r["batch_size"])]
    return " ".join(shlex.quote(a) for a in args + ["--out", "NEW_FOLDER"])


def spec_toml(spec: Mapping[str, Any]) -> str:
    """A neighbourhood spec (``run.json``'s dict form) written back as TOML."""
    lines = [f"k = {spec.get('k')}", f"seed = {spec.get('seed')}"]
    for member in spec.get("members") or []:
        lines += ["", "[[members]]", f"weight = {_toml(member.get('weight', 1.0))}"]
        steps = member.get("steps") or []
        lines.append("steps = [")
        for s in steps:
            parts = [f"{k} = {_toml(v)}" for k, v in s.items()]
            lines.append("  { " + ", ".join(parts) + " },")
        lines.append("]")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return _toml(str(value))
