"""Render the report as one self-contained HTML file: inline CSS, images as data URIs, a tiny
inline script that sorts tables, and a Content-Security-Policy that forbids any network load."""

from __future__ import annotations

import datetime as _dt
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from c3_core.report.facts import (
    fmt,
    headline,
    main_metric,
    metric,
    metric_ci,
    reproduce_command,
    spec_toml,
    started,
    undefined_by_reason,
    undefined_text,
    versions,
)
from c3_core.report.gallery import Gallery
from c3_core.report.readiness import CheckResult
from c3_core.report.results import CaseView, ModalityResults, RunResults

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
:root{--fg:#1b1f24;--muted:#5a6270;--line:#d8dde3;--bg:#f6f8fa;--ok:#1a7f37;--bad:#cf222e}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0 auto;max-width:1280px;padding:0 20px 40px}
header{border-bottom:2px solid var(--fg);margin-bottom:8px}
h1{font-size:24px;margin:18px 0 4px}h2{font-size:20px;margin:28px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
nav a{margin-right:12px}.muted{color:var(--muted)}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
th{background:var(--bg)}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable th::after{content:" \\2195";color:var(--muted)}
table.sortable th[aria-sort=ascending]::after{content:" \\2191";color:var(--fg)}
table.sortable th[aria-sort=descending]::after{content:" \\2193";color:var(--fg)}
.scroll{max-height:560px;overflow:auto;border:1px solid var(--line)}
.scroll table{margin:0}.scroll th{position:sticky;top:0}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0}figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{font-size:12px;color:var(--muted)}
.gallery{display:flex;flex-wrap:wrap;gap:16px}
.case{border:1px solid var(--line);padding:8px;background:var(--bg);max-width:540px}
.trio{display:flex;gap:6px}.trio figure{text-align:center}
.pass{color:var(--ok);font-weight:600}.fail{color:var(--bad);font-weight:600}
.banner{padding:8px 12px;border:1px solid var(--bad);color:var(--bad);margin:10px 0}
.notice{padding:6px 10px;border-left:4px solid var(--muted);background:var(--bg);margin:8px 0}
pre{background:var(--bg);border:1px solid var(--line);padding:10px;overflow:auto;font-size:12px;white-space:pre-wrap}
"""

SORT_JS = """
(function () {
  function key(cell, num) {
    var v = cell.getAttribute("data-v");
    if (v === null) { v = cell.textContent; }
    if (!num) { return v.toLowerCase(); }
    var f = parseFloat(v);
    return isNaN(f) ? Infinity : f;
  }
  function sortBy(table, col, asc) {
    var heads = table.tHead.rows[0].cells;
    var num = heads[col].getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], num), y = key(b.cells[col], num);
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", asc ? "ascending" : "descending");
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    body.appendChild(frag);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      function go() { sortBy(table, col, th.getAttribute("aria-sort") !== "ascending"); }
      th.addEventListener("click", go);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
      });
    });
  });
})();
"""


@dataclass
class ModalityFigures:
    """The data URIs of one modality's figures (None where a figure does not apply)."""

    severity: str | None = None
    reliability: str | None = None
    utility: str | None = None
    units: dict[str, str] = field(default_factory=dict)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def anchor(name: str) -> str:
    """An id-safe form of a modality name."""
    return "m-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def render_html(
    run: RunResults,
    figures: Mapping[str, ModalityFigures],
    galleries: Mapping[str, Gallery],
    model_card_md: str,
    checks: Sequence[CheckResult] | None = None,
    thresholds_name: str = "",
    key_source: str = "",
) -> str:
    """The whole report as one HTML string."""
    now = _dt.datetime.now(tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "<title>C3 robustness report</title>\n<style>", CSS, "</style>\n</head>\n<body>\n<header>\n",
        "<h1>C3 robustness report</h1>\n",
        f'<p class="muted">Run started {esc(started(run))} · report rendered {esc(now)} · '
        f"c3-core {esc(run.manifest.get('c3_core', '?'))} · status <b>{esc(run.status)}</b></p>\n<nav>",
        '<a href="#overview">Overview</a>',
        '<a href="#readiness">Site readiness</a>' if checks is not None else "",
        *(f'<a href="#{anchor(m)}">{esc(m)}</a>' for m in run.modalities),
        '<a href="#model-card">Model card</a><a href="#provenance">Provenance</a></nav>\n</header>\n',
    ]
    if run.status != "complete" or run.failed:
        failed = ", ".join(run.failed) or "unknown"
        parts.append(f'<div class="banner">This run did not complete: no results for {esc(failed)} '
                     "(see run-failed.json in the results folder).</div>\n")
    parts.append(_overview(run))
    if checks is not None:
        parts.append(_readiness(checks, thresholds_name))
    for name, mod in run.modalities.items():
        parts.append(_modality(name, mod, figures.get(name, ModalityFigures()), galleries.get(name, Gallery())))
    parts += [
        '<section id="model-card">\n<h2>Model card section</h2>\n',
        "<p>Markdown, ready to paste into a model card (also written as <code>model_card.md</code>).</p>\n",
        f"<pre>{esc(model_card_md)}</pre>\n</section>\n",
        _provenance(run, key_source),
        "<script>", SORT_JS, "</script>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>\n" for r in rows)
    return f'<table{f" class={cls!r}" if cls else ""}><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n'


def _overview(run: RunResults) -> str:
    rows = []
    for name, mod in run.modalities.items():
        s = mod.summary
        label, value = main_metric(s)
        rows.append([
            f'<a href="#{anchor(name)}">{esc(name)}</a>', esc(s.get("task", "")), esc(fmt(s.get("n_cases"))),
            f"{esc(label)} {esc(value)}", esc(metric(s, "ece")), esc(metric(s, "brier")),
            esc(metric(s, "neighbourhood_agreement")), esc(metric_ci(s, "utility", "mean")),
            esc(metric_ci(s, "utility", "p10")), esc(metric(s, "flip_rate")),
        ])
    for name in run.failed:
        rows.append([esc(name), "", "", '<span class="fail">evaluation failed</span>', "", "", "", "", "", ""])
    return (
        '<section id="overview">\n<h2>Overview</h2>\n'
        + _gate_warnings(run)
        + "<p>Per modality: the task metric on the original exams, calibration, and robustness over each exam's "
        "counterfactual neighbourhood. Utility U(x) is an exam's lowest score over the original and its admitted "
        "counterfactuals; brackets are percentile-bootstrap 95% CIs over exams.</p>\n"
        + _table(["modality", "task", "exams", "AUROC / Dice", "ECE", "Brier", "agreement",
                  "utility mean [95% CI]", "utility p10 [95% CI]", "flip rate"], rows, "overview")
        + "</section>\n"
    )


def _gate_warnings(run: RunResults) -> str:
    """A banner per modality whose validity gate is weaker than it should be (no teacher: operator
    checks only), with why and how to gate it."""
    out = []
    for name, mod in run.modalities.items():
        gate = mod.summary.get("gate") or {}
        why = gate.get("warning")
        if not why and str(mod.summary.get("gated_by", "")).startswith("operator checks only"):
            why = ("operator checks only: no teacher model gated this cohort, so label-changing counterfactuals "
                   "were not screened out. Gate it with --teacher MODEL and --gate gate.json from `c3 gate calibrate`")
        if why:
            out.append(f'<div class="banner">Warning — {esc(name)}: {esc(why)}.</div>\n')
    return "".join(out)


def _readiness(checks: Sequence[CheckResult], name: str) -> str:
    ready = all(c.passed for c in checks)
    rows = [[
        f'<span class="{"pass" if c.passed else "fail"}">{"PASS" if c.passed else "FAIL"}</span>',
        esc(c.modality), esc(c.metric), esc("n/a" if c.value is None else fmt(c.value, 4)),
        esc(c.op), esc(fmt(c.threshold, 4)), esc(c.note),
    ] for c in checks]
    verdict = '<span class="pass">READY</span>' if ready else '<span class="fail">NOT READY</span>'
    return (
        f'<section id="readiness">\n<h2>Site readiness: {verdict}</h2>\n'
        f"<p>Thresholds from <code>{esc(name)}</code>; {sum(c.passed for c in checks)} of {len(checks)} checks pass.</p>\n"
        + _table(["result", "modality", "metric", "value", "", "threshold", "note"], rows, "readiness")
        + "</section>\n"
    )


def _modality(name: str, mod: ModalityResults, figs: ModalityFigures, gallery: Gallery) -> str:
    s = mod.summary
    parts = [
        f'<section id="{anchor(name)}" class="modality" data-modality="{esc(name)}">\n',
        f"<h2>{esc(name)}</h2>\n",
        f'<p class="muted">dataset <b>{esc(s.get("dataset", "?"))}</b> · model <b>{esc(s.get("model", "?"))}</b> · '
        f"task {esc(s.get('task', '?'))} · K = {esc(s.get('k', '?'))} counterfactuals per exam</p>\n",
        _table(["metric", "value"], [[esc(k), esc(v)] for k, v in headline(s)], "metrics"),
        _undefined(s),
        "<h3>Severity response, calibration and utility</h3>\n<div class=\"figs\">\n",
    ]
    for uri, alt, caption in (
        (figs.severity, f"{name} severity-response curves",
         "Severity response per operator: mean score drop, flip rate (among admitted) and admission rate "
         "against the operator's severity (its own physical units)."),
        (figs.reliability, f"{name} reliability diagram", "Reliability of the original predictions (marker area: bin size)."),
        (figs.utility, f"{name} utility distribution", "Distribution of per-exam utility U(x) beside the original scores."),
    ):
        if uri:
            parts.append(f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>\n')
    if figs.reliability is None and s.get("task") == "segmentation":
        parts.append('<p class="muted">No reliability diagram: segmentation runs report Dice and the volume '
                     "calibration slope instead.</p>\n")
    parts.append("</div>\n")
    parts.append(_gate(mod))
    parts.append(_gallery(name, gallery))
    parts.append(_cases(name, mod))
    parts.append("</section>\n")
    return "".join(parts)


def _undefined(summary: Mapping[str, Any]) -> str:
    """The metrics this cohort leaves undefined, grouped by reason (nothing when there are none)."""
    groups = undefined_by_reason(summary, curves=True)
    if not groups:
        return ""
    rows = [[esc(", ".join(paths)), esc(f"undefined: {why}")] for why, paths in groups]
    return ("<h3>Undefined metrics</h3>\n<p>Metrics this cohort does not define: <code>null</code> in "
            "summary.json, with the reason under <code>undefined</code> at the same path.</p>\n"
            + _table(["metric (summary.json path)", "reason"], rows, "undefined"))


def _gate(mod: ModalityResults) -> str:
    g = mod.summary.get("gate") or {}
    rows = [[esc(op), str(n), str(a), fmt(a / n if n else None), str(f),
             fmt(f / a) if a else esc(undefined_text("no counterfactual was admitted"))]
            for op, (n, a, f) in mod.gate_by_operator.items()]
    out = [
        "<h3>Validity gate</h3>\n",
        f"<p>{esc(fmt(g.get('admitted')))} of {esc(fmt(g.get('counterfactuals')))} counterfactuals admitted "
        f"(rate {esc(fmt(g.get('admission_rate')))}); gated by {esc(mod.summary.get('gated_by', 'n/a'))}.</p>\n",
        _table(["operator (first step)", "counterfactuals", "admitted", "admission rate", "flipped (admitted)",
                "flip share"], rows, "gate"),
    ]
    if mod.reasons:
        out.append(_table(["rejection reason (numbers as #)", "count"],
                          [[esc(k), str(v)] for k, v in mod.reasons.most_common()]))
    else:
        out.append('<p class="muted">No counterfactual was rejected.</p>\n')
    if mod.failures:
        kinds: dict[str, int] = {}
        for _, kind in mod.failures:
            kinds[kind] = kinds.get(kind, 0) + 1
        text = ", ".join(f"{v}× {k}" for k, v in sorted(kinds.items()))
        out.append(f'<p class="notice">{len(mod.failures)} exam(s) could not be read and were left out ({esc(text)}); '
                   "their reasons are in failures.csv.</p>\n")
    return "".join(out)


def _gallery(name: str, gallery: Gallery) -> str:
    out = ["<h3>Worst cases</h3>\n"]
    if gallery.unavailable:
        out.append(f'<p class="notice">Gallery not available: {esc(gallery.unavailable)}.</p>\n')
        return "".join(out)
    if not gallery.items:
        out.append('<p class="muted">No cases.</p>\n')
        return "".join(out)
    out.append("<p>The exams with the lowest utility: the original, the counterfactual that set U(x) (replayed "
               "from its provenance), and their difference in display units (red brighter, blue darker).</p>\n"
               '<div class="gallery">\n')
    for it in gallery.items:
        head = (f"<b>{esc(it.exam)}</b> · U {esc(fmt(it.utility))} · s {esc(fmt(it.score))}"
                + (f" · {esc(it.shift)} → score {esc(fmt(it.cf_score))}" if it.shift else ""))
        out.append(f'<div class="case"><div>{head}</div>\n')
        if it.error:
            out.append(f'<p class="notice">Images not available: {esc(it.error)}.</p>\n')
        else:
            out.append('<div class="trio">')
            for uri, label in ((it.original, "original"), (it.counterfactual, "worst counterfactual"),
                               (it.difference, f"difference (±{it.diff_scale:.2g})")):
                out.append(f'<figure><img src="{uri}" alt="{esc(name)} {esc(it.exam)} {esc(label)}">'
                           f"<figcaption>{esc(label)}</figcaption></figure>")
            out.append("</div>\n")
        notes = "; ".join(n for n in (it.view, it.note) if n)
        if notes:
            out.append(f'<p class="muted">{esc(notes)}</p>\n')
        out.append("</div>\n")
    out.append("</div>\n")
    return "".join(out)


def _num(value: float, digits: int = 3) -> str:
    return f'<td class="n" data-v="{"" if value != value else repr(value)}">{esc(fmt(value, digits))}</td>'


def _cases(name: str, mod: ModalityResults) -> str:
    cols = [("exam (pseudonym)", "text"), ("utility U(x)", "num"), ("score s(x)", "num"), ("drop s−U", "num"),
            ("margin", "num"), ("worst margin", "num"),
            ("worst shift", "text"), ("worst operator", "text"), ("worst severity", "num"), ("admitted", "num"),
            ("rejected", "num"), ("flipped", "num"), ("agreement", "num"), ("rejection reasons", "text")]
    sort = ' aria-sort="ascending"'
    head = "".join(f'<th data-type="{t}"{sort if i == 1 else ""}>{esc(c)}</th>' for i, (c, t) in enumerate(cols))
    rows = sorted(mod.cases, key=lambda c: (float("inf") if c.utility != c.utility else c.utility, c.exam))
    body = "".join(_case_row(c) for c in rows)
    note = ""
    if mod.n_cases_total > len(mod.cases):
        note = (f'<p class="notice">Showing the {len(mod.cases)} exams with the lowest utility of '
                f"{mod.n_cases_total}; cases.csv holds them all.</p>\n")
    return (
        f"<h3>Per-exam robustness profiles ({mod.n_cases_total} exams)</h3>\n{note}"
        "<p>Click a column header to sort (first click ascending). Exam ids are keyed pseudonyms. "
        "<em>Margin</em>: the distance of the exam's probabilities to its decision boundary (small: likely to fail "
        "under a new site); <em>worst margin</em>: the smallest margin over the exam and its admitted "
        "counterfactuals (negative: one of them changes the decision), with the worst shift naming the acquisition "
        "change that does it. Neither predicts failure best under every held-out shift of the demo cohorts (the "
        "margin on the fundus shifts, the worst margin on a gridless bedside CXR; docs/failure-study.md): read "
        "them together.</p>\n"
        f'<div class="scroll"><table class="sortable cases" id="cases-{anchor(name)}" data-modality="{esc(name)}">'
        f"<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>\n"
    )


def _case_row(c: CaseView) -> str:
    reasons = "; ".join(f"{n}× {k}" for k, n in c.reasons.most_common()) if c.reasons else ""
    return (
        f"<tr><td>{esc(c.exam)}</td>{_num(c.utility)}{_num(c.score)}{_num(c.score - c.utility)}"
        f"{_num(c.margin)}{_num(c.worst_margin)}"
        f"<td>{esc(c.worst_ops)}</td><td>{esc(c.worst_operator)}</td>{_num(c.worst_severity, 4)}"
        f"{_num(c.n_admitted, 0)}{_num(c.n_rejected, 0)}{_num(c.n_flipped, 0)}{_num(c.agreement, 2)}"
        f"<td>{esc(reasons)}</td></tr>\n"
    )


def _provenance(run: RunResults, key_source: str) -> str:
    m = run.manifest
    gate = m.get("gate") or {}
    plat = m.get("platform") or {}
    info = [
        ["status", esc(run.status)], ["started", esc(started(run))], ["seconds", esc(m.get("seconds", "?"))],
        ["processes", esc(m.get("processes", 1))],
        ["platform", esc(f"Python {plat.get('python', '?')} on {plat.get('machine', '?')}")],
        ["gate thresholds", esc(", ".join(f"{k} = {v}" for k, v in gate.items()) or "n/a")],
        ["exam pseudonyms", esc(f"HMAC-SHA256 of the exam id, key from {key_source or 'the results folder'}")],
    ]
    out = [
        '<section id="provenance">\n<h2>Provenance</h2>\n',
        "<p>Enough to repeat the run: versions, options, seeds and each neighbourhood spec. Every counterfactual's "
        "full provenance is in counterfactuals.csv and replays it bit for bit.</p>\n",
        _table(["distribution", "version"], [[esc(n), esc(v)] for n, v in versions(run)], "versions"),
        _table(["run", ""], info),
        f"<h3>Command</h3>\n<pre>{esc(reproduce_command(run))}</pre>\n",
    ]
    for name, spec in (m.get("neighbourhoods") or {}).items():
        if not isinstance(spec, dict):
            continue
        out.append(f"<h3>Neighbourhood: {esc(name)}</h3>\n"
                   f'<p class="muted">from {esc(spec.get("source", "?"))} (seed {esc(spec.get("seed"))}, '
                   f"K = {esc(spec.get('k'))})</p>\n<pre>{esc(spec_toml(spec))}</pre>\n")
    out.append("</section>\n")
    return "".join(out)
