"""The model-card section: Markdown that can be pasted into a model card as it is."""

from __future__ import annotations

from collections.abc import Sequence

from c3_core.report.facts import (
    fmt,
    main_metric,
    metric,
    metric_ci,
    reproduce_command,
    started,
    undefined_by_reason,
    versions,
    worst_operators,
)
from c3_core.report.readiness import CheckResult
from c3_core.report.results import RunResults


def model_card(run: RunResults, checks: Sequence[CheckResult] | None = None, thresholds_name: str = "") -> str:
    """Markdown: results per modality with CIs, the most damaging shifts, readiness, how to repeat."""
    lines = [
        "## Robustness to acquisition shift (C3)",
        "",
        f"Evaluated with C3 ({', '.join(f'{n} {v}' for n, v in versions(run))}) on {started(run)}. "
        "Each exam was re-rendered as other scanners, protocols and cameras would have acquired it "
        "(a counterfactual neighbourhood of K variants per exam); a validity gate kept only label-preserving variants. "
        "**Shift-stable utility** U(x) is the exam's lowest score over the original and its admitted variants "
        "(true-class probability, 1 − Brier for multi-label, or Dice); the p10 is the 10th percentile over exams. "
        "Brackets are percentile-bootstrap 95% confidence intervals over exams.",
        "",
        "| modality | dataset | model | exams | metric | ECE | Brier | utility mean | utility p10 | flip rate | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, mod in run.modalities.items():
        s = mod.summary
        label, value = main_metric(s)
        cells = [metric(s, "ece"), metric(s, "brier"), metric_ci(s, "utility", "mean"), metric_ci(s, "utility", "p10"),
                 metric(s, "flip_rate"), metric(s, "neighbourhood_agreement")]
        lines.append(
            f"| {name} | {s.get('dataset', '')} | {s.get('model', '')} | {fmt(s.get('n_cases'))} | {label} {value} | "
            + " | ".join(_cell(c) for c in cells) + " |"
        )
    for name in run.failed:
        lines.append(f"| {name} | | | | evaluation failed | | | | | | |")
    lines += ["", "### Most damaging shifts", ""]
    for name, mod in run.modalities.items():
        worst = worst_operators(mod.summary)
        text = "; ".join(f"{op} at severity {sev:.3g} (mean score drop {drop:.3f}, flip rate {fmt(flip, 2)})"
                         for op, sev, drop, flip in worst)
        lines.append(f"- **{name}**: {text or 'no admitted counterfactuals'}")
    lines += _undefined_section(run)
    lines += ["", "### Validity gate", ""]
    for name, mod in run.modalities.items():
        g = mod.summary.get("gate") or {}
        lines.append(f"- **{name}**: {fmt(g.get('admitted'))} of {fmt(g.get('counterfactuals'))} counterfactuals admitted "
                     f"({metric(mod.summary, 'gate', 'admission_rate')}); gated by {mod.summary.get('gated_by', 'n/a')}")
    if checks is not None:
        ready = all(c.passed for c in checks)
        lines += ["", f"### Site readiness{f' ({thresholds_name})' if thresholds_name else ''}: "
                      f"{'READY' if ready else 'NOT READY'}", ""]
        for c in checks:
            value = "n/a" if c.value is None else f"{c.value:.3f}"
            note = f" ({c.note})" if c.note else ""
            lines.append(f"- [{'x' if c.passed else ' '}] {c.modality} {c.metric} {value} {c.op} {c.threshold:g}{note}")
    lines += [
        "",
        "### Reproducing",
        "",
        "```",
        reproduce_command(run),
        "```",
        "",
        "Seeds: " + ", ".join(f"{m} {spec.get('seed')} (K = {spec.get('k')})"
                               for m, spec in (run.manifest.get("neighbourhoods") or {}).items()
                               if m in run.modalities) + ".",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _undefined_section(run: RunResults) -> list[str]:
    """``### Undefined metrics``: per modality, each reason and the metrics it leaves null."""
    lines: list[str] = []
    for name, mod in run.modalities.items():
        for why, paths in undefined_by_reason(mod.summary):
            lines.append(f"- **{name}**: {', '.join(paths)}: undefined: {why}")
    return ["", "### Undefined metrics", "", *lines] if lines else []
