"""``c3 report``: re-render the report from a results folder, optionally check site readiness.

Exit codes: 0 rendered (and every readiness check passed), 2 bad input (not a results folder,
bad thresholds file, matplotlib missing, output not writable), 4 rendered but a readiness
check failed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c3_core.report.errors import ReportError, require_matplotlib
from c3_core.report.pseudonym import StoredIds, matching_key_pseudonymiser
from c3_core.report.readiness import CheckResult, check, load_thresholds
from c3_core.report.results import GALLERY_CASES, ModalityResults, load_results

EXIT_OK, EXIT_USAGE, EXIT_NOT_READY = 0, 2, 4
REPORT_NAME = "report.html"
MODEL_CARD_NAME = "model_card.md"
READINESS_NAME = "readiness.json"
Echo = Callable[..., None]
_DEFAULT_HOST: Any = object()


def _echo(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout)


@dataclass
class ReportOutcome:
    """What a rendering wrote and, with a thresholds file, the readiness checklist."""

    html: Path
    model_card: Path
    checks: list[CheckResult] | None
    seconds: float

    @property
    def ready(self) -> bool:
        return self.checks is None or all(c.passed for c in self.checks)


def build_report(
    results_dir: str | Path,
    *,
    out: str | Path | None = None,
    readiness: str | Path | None = None,
    host: Any = _DEFAULT_HOST,
    gallery_cases: int = GALLERY_CASES,
    overwrite: bool = False,
) -> ReportOutcome:
    """Render ``report.html`` and ``model_card.md`` (beside the report) from a results folder.

    ``host`` is the plugin host that rebuilds datasets for the gallery (default: a fresh
    :class:`~c3_core.plugins.host.PluginHost`; None: no gallery images). Raises
    :class:`ReportError` for bad input; nothing is written before the input is validated.
    """
    t0 = time.perf_counter()
    require_matplotlib()
    root = Path(results_dir)
    if not (root / "run.json").is_file() and not (root / "run-failed.json").is_file():
        raise ReportError(f"{root}: not a finished c3 results folder (no run.json)")
    html_target = Path(out) if out is not None else root / REPORT_NAME
    targets = [html_target, html_target.parent / MODEL_CARD_NAME] + ([html_target.parent / READINESS_NAME] if readiness else [])
    if not overwrite:
        for target in targets:
            if target.exists() and not _written_by_c3(target):
                raise ReportError(f"{target}: exists and was not written by `c3 report`; choose another --out or pass --overwrite")
    thresholds_path = Path(readiness) if readiness is not None else None
    thresholds = load_thresholds(thresholds_path) if thresholds_path is not None else None
    pseudonymise = StoredIds()
    run = load_results(root, pseudonymise, gallery_cases)
    fingerprint = run.manifest.get("pseudonym_key")
    key_source = f"the user's key (fingerprint {fingerprint}), kept outside the results" if fingerprint else ""
    checks = None
    if thresholds is not None and thresholds_path is not None:
        checks = check(thresholds_path, thresholds, {m: r.summary for m, r in run.modalities.items()})
    if host is _DEFAULT_HOST:
        host = _load_host()

    from c3_core.report.gallery import build_gallery
    from c3_core.report.html import render_html
    from c3_core.report.model_card import model_card

    figures = {m: _figures(mod, host) for m, mod in run.modalities.items()}
    matcher = matching_key_pseudonymiser(run.manifest)
    galleries = {m: build_gallery(run, mod, host, pseudonymise, matcher) for m, mod in run.modalities.items()}
    card = model_card(run, checks, thresholds_path.name if thresholds_path else "")
    page = render_html(run, figures, galleries, card, checks, thresholds_path.name if thresholds_path else "", key_source)
    html_path = Path(out) if out is not None else root / REPORT_NAME
    _write(html_path, page)
    card_path = _write(html_path.parent / MODEL_CARD_NAME, card)
    if checks is not None:
        _write(html_path.parent / READINESS_NAME, json.dumps(
            {"thresholds": str(thresholds_path), "ready": all(c.passed for c in checks),
             "checks": [c.to_dict() for c in checks]}, indent=2) + "\n")
    return ReportOutcome(html_path, card_path, checks, time.perf_counter() - t0)


def render_report(results_dir: Path) -> Path:
    """Render ``results_dir/report.html`` (and ``model_card.md``); returns the report's path.

    Raises :class:`ReportError` (e.g. :class:`MissingDependencyError` without matplotlib)."""
    return build_report(results_dir).html


def try_render_report(results_dir: Path, echo: Callable[[str], None] | None = None) -> Path | None:
    """:func:`render_report` for the end of ``c3 evaluate``: a report that cannot be rendered is
    a warning through ``echo`` (default: stderr), never an error, since the results are already
    written. Returns the report's path or None."""
    say = echo or (lambda message: _echo(message, err=True))
    try:
        outcome = build_report(results_dir)
    except Exception as exc:  # noqa: BLE001 - the evaluation's results stand without a report
        say(f"warning: no report written ({exc})")
        return None
    say(f"report written to {outcome.html} ({outcome.seconds:.1f} s)")
    return outcome.html


def report_command(
    results_dir: Path,
    *,
    readiness: Path | None = None,
    out: Path | None = None,
    echo: Echo | None = None,
    overwrite: bool = False,
) -> int:
    """The ``c3 report`` command; returns its exit code. Readiness lines go to stdout, the rest
    to stderr; nothing printed names an exam."""
    say = echo or _echo
    try:
        outcome = build_report(results_dir, out=out, readiness=readiness, overwrite=overwrite)
    except ReportError as exc:
        say(f"error: {exc}", err=True)
        return EXIT_USAGE
    except OSError as exc:
        say(f"error: cannot write the report ({exc})", err=True)
        return EXIT_USAGE
    for c in outcome.checks or []:
        say(c.line())
    say(f"report written to {outcome.html} (model card: {outcome.model_card}; {outcome.seconds:.1f} s)", err=True)
    if outcome.checks is not None:
        failed = [c for c in outcome.checks if not c.passed]
        if failed:
            say(f"site NOT ready: {len(failed)} of {len(outcome.checks)} checks fail", err=True)
            return EXIT_NOT_READY
        say(f"site ready: all {len(outcome.checks)} checks pass", err=True)
    return EXIT_OK


def _load_host() -> Any:
    try:
        from c3_core.plugins.host import PluginHost

        return PluginHost().load()
    except Exception:  # noqa: BLE001 - the report renders without a gallery
        return None


def _units(host: Any, operators: list[str]) -> dict[str, str]:
    units: dict[str, str] = {}
    if host is None:
        return units
    for op in operators:
        for kind in ("operators", "editors"):
            try:
                reg = host.registry(kind)
                if op in reg:
                    units[op] = str(reg.get(op).load().severity.unit)
                    break
            except Exception:  # noqa: BLE001 - a unit is a nicety
                break
    return units


def _figures(mod: ModalityResults, host: Any) -> Any:
    from c3_core.report import figures as F
    from c3_core.report.html import ModalityFigures

    s = mod.summary
    curves = s.get("severity_response") or {}
    units = _units(host, sorted(curves))
    return ModalityFigures(
        severity=F.severity_response_figure(curves, units),
        reliability=F.reliability_figure(s.get("reliability") or {}, s.get("ece")),
        utility=F.utility_figure(mod.utilities, mod.scores, s.get("utility") or {}),
        units=units,
    )


# how each file this command writes begins (so a file of the user's is never replaced unasked)
_SIGNATURES = {".html": "<title>C3 robustness report</title>", ".md": "## Robustness to acquisition shift (C3)", ".json": '"checks"'}


def _written_by_c3(path: Path) -> bool:
    """Whether ``path`` is a report, model card or readiness file an earlier ``c3 report`` wrote."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    mark = _SIGNATURES.get(path.suffix)
    return mark is not None and mark in head


def _write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
