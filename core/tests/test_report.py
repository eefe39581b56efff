"""The robustness report: rendering, pseudonymisation, gallery replay, readiness exit codes, scale."""

from __future__ import annotations

import csv
import hashlib
import hmac
import html
import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_dists import write_dist
from typer.testing import CliRunner

from c3_core.cli import app
from c3_core.pseudonyms import Pseudonymiser, load_key
from c3_core.report.pseudonym import StoredIds, matching_key_pseudonymiser
from c3_core.report.readiness import check, load_thresholds

pytest.importorskip("matplotlib")

TOY_MODULE = '''
from toy_plugin import c3_register_operators, c3_register_models  # noqa: F401
from c3_core.plugins.markers import hookimpl

@hookimpl
def c3_register_datasets(registry):
    registry.add("toy.demo", "toy_plugin:make_dataset", "toy demo", task="multiclass", demo=True,
                 default_model="toy.model", default_neighbourhood=NEIGHBOURHOOD)
'''

SPEC = """k = 4
seed = 2
[[members]]
op = "toy.gain"
levels = [1.0, 3.0, 6.0]
[[members]]
op = "toy.noise"
severity = [0.05, 0.3]
[[members]]
steps = [{ op = "toy.shift", levels = [2.0] }, { op = "toy.noise", severity = [0.1, 0.2] }]
"""

runner = CliRunner()
HTTP_IN_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The toy plugin installed (as a fake distribution) and the only one loaded; case 5 unreadable."""
    root = tmp_path_factory.mktemp("site")
    spec = root / "toy.toml"
    spec.write_text(SPEC)
    write_dist(root, "c3-toy", "c3_toy_report_entry", f"NEIGHBOURHOOD = {str(spec)!r}\n" + TOY_MODULE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        mp.setenv("C3_PLUGINS", "c3-toy")
        mp.delenv("C3_DISABLE_PLUGIN_AUTOLOAD", raising=False)
        mp.setenv("TOY_FAIL", "5")
        yield root


@pytest.fixture(scope="module")
def toy_run(toy_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "run"
    result = runner.invoke(app, ["evaluate", "--out", str(out), "--quiet", "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    report = runner.invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    return out


def _stored_ids(run: Path, modality: str = "toy") -> list[str]:
    with (run / modality / "cases.csv").open() as fh:
        return [r["exam_id"] for r in csv.DictReader(fh)]


def _raw_ids(run: Path, modality: str = "toy") -> list[str]:
    """The toy dataset's own (stable) ids of the evaluated cases: case 5 is unreadable."""
    return [f"toy-{i:03d}" for i in range(12) if i != 5][: len(_stored_ids(run, modality))]


def test_report_has_every_section_and_opens_offline(toy_run: Path) -> None:
    page = (toy_run / "report.html").read_text(encoding="utf-8")
    for section in ('id="overview"', 'id="m-toy"', 'id="model-card"', 'id="provenance"'):
        assert section in page
    assert 'class="sortable cases"' in page and "aria-sort" in page and "addEventListener" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not HTTP_IN_ATTR.search(page), "the report must not load anything from the network"
    assert "<link" not in page and "@import" not in page and "url(" not in page
    images = re.findall(r'<img src="(data:image/(?:png|jpeg);base64,[A-Za-z0-9+/=]+)"', page)
    # severity response, reliability, utility + 6 gallery cases x (original, counterfactual, difference)
    assert len(images) == 3 + 6 * 3, len(images)
    assert "Gallery not available" not in page and "Images not available" not in page
    # every evaluated exam has a row; the failed one is counted, not shown
    assert page.count("<tr><td>case-") == 11
    assert "1 exam(s) could not be read" in page and "1× OSError" in page
    # provenance: versions, seeds, the spec and a command that repeats the run
    assert "c3-core" in page and "seed = 2" in page and "toy.shift" in page and "c3 evaluate" in page
    # the neighbourhood spec shown in provenance is valid TOML that rebuilds the run's spec
    from c3_core.neighbourhood import NeighbourhoodSpec

    shown = re.search(r"<h3>Neighbourhood: toy</h3>\n<p[^>]*>[^<]*</p>\n<pre>(.*?)</pre>", page, re.S)
    assert shown is not None
    manifest = json.loads((toy_run / "run.json").read_text())["neighbourhoods"]["toy"]
    manifest.pop("source")
    assert NeighbourhoodSpec.from_toml_string(html.unescape(shown.group(1))).to_dict() == manifest
    card = (toy_run / "model_card.md").read_text(encoding="utf-8")
    assert card.startswith("## Robustness to acquisition shift (C3)")
    assert "| toy | toy.demo | toy.model | 11 |" in card and "### Reproducing" in card


def test_no_raw_exam_id_in_any_output(toy_run: Path, tmp_path: Path) -> None:
    raw = _raw_ids(toy_run)
    assert len(raw) == 11 and all(r.startswith("toy-") for r in raw)
    thresholds = tmp_path / "t.toml"
    thresholds.write_text("[toy]\nutility_p10_min = 0.99\n")
    result = runner.invoke(app, ["report", str(toy_run), "--readiness", str(thresholds), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 4
    outputs = [p for p in tmp_path.iterdir() if p.is_file() and p != thresholds]
    assert {p.name for p in outputs} == {"r.html", "model_card.md", "readiness.json"}
    texts = {p.name: p.read_text(encoding="utf-8") for p in outputs}
    texts["log"] = result.output
    texts["report.html"] = (toy_run / "report.html").read_text(encoding="utf-8")
    for exam in raw + ["toy-0", "toy-"]:
        for name, text in texts.items():
            assert exam not in text, name
    # pseudonyms are HMAC-SHA256 of the stable id with the user's key, which is not in the results
    key = load_key(create=False)
    expected = "case-" + hmac.new(key.secret, raw[0].encode(), hashlib.sha256).hexdigest()[:12]
    assert expected in texts["r.html"] and expected in texts["report.html"]
    assert _stored_ids(toy_run)[0] == expected
    assert not [p for p in toy_run.rglob("*") if "key" in p.name]
    assert json.loads((toy_run / "run.json").read_text())["pseudonym_key"] == key.fingerprint
    assert key.path is not None and key.path.stat().st_mode & 0o077 == 0


def test_gallery_replays_the_recorded_counterfactual(toy_run: Path, toy_site: Path) -> None:
    """The gallery's counterfactual is the one evaluated: the model scores it as recorded."""
    import torch

    from c3_core.plugins.host import PluginHost
    from c3_core.report.gallery import _replay, open_dataset
    from c3_core.report.results import load_results

    run = load_results(toy_run, StoredIds())
    matcher = matching_key_pseudonymiser(run.manifest)
    assert matcher is not None
    mod = run.modalities["toy"]
    host = PluginHost().load()
    dataset = open_dataset(run, mod, host)
    model = host.registry("models").get("toy.model").load()()
    utilities = sorted(c.utility for c in mod.cases)
    assert [c.utility for c in mod.gallery] == utilities[:6]
    for cand in mod.gallery:
        assert cand.index != 5  # the unreadable case is skipped when mapping rows to dataset indices
        original, cf, domain, _, _ = _replay(cand, dataset, host, matcher)
        assert domain == "display" and cf.shape == original.shape
        with torch.no_grad():
            probs = model.probabilities(model.logits(cf[None]))
        label = int(dataset[cand.index].label)
        assert float(probs[0, label]) == pytest.approx(cand.cf["score"], abs=1e-6)


def test_gallery_says_why_when_the_dataset_cannot_be_rebuilt(toy_run: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in toy_run.rglob("*"):
        if p.is_file():
            (moved / p.relative_to(toy_run)).parent.mkdir(parents=True, exist_ok=True)
            (moved / p.relative_to(toy_run)).write_bytes(p.read_bytes())
    manifest = json.loads((moved / "run.json").read_text())
    manifest["request"]["data"] = str(tmp_path / "gone" / "cohort.csv")
    (moved / "run.json").write_text(json.dumps(manifest))
    (moved / "results.sqlite").unlink()  # the store would name the data's real path
    result = runner.invoke(app, ["report", str(moved)])
    assert result.exit_code == 0, result.output
    page = (moved / "report.html").read_text()
    assert "Gallery not available: the data this run read (--data) is no longer at its recorded location" in page
    notice = re.search(r"Gallery not available:[^<]*", page)
    assert notice and "gone" not in notice.group(0)  # the path shows in the reproduce command only


def test_gallery_without_the_plugin(toy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3_PLUGINS", "nothing-installed")
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(toy_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "dataset &#x27;toy.demo&#x27; is not installed here" in out.read_text()


def test_gallery_hides_a_failing_loaders_message(toy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_N", "DOE^JANE")  # the toy loader's int() fails and quotes the value
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(toy_run), "--out", str(out)]).exit_code == 0
    page = out.read_text()
    assert "Gallery not available: the dataset could not be rebuilt (ValueError)" in page
    assert "DOE" not in page


def _write_thresholds(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_readiness_exit_codes(toy_run: Path, tmp_path: Path) -> None:
    ok = _write_thresholds(tmp_path / "ok.toml", "[all]\nutility_p10_min = 0.0\nflip_rate_max = 1.0\n[toy]\nauroc_min = 0.5\n")
    result = runner.invoke(app, ["report", str(toy_run), "--readiness", str(ok), "--out", str(tmp_path / "a.html")])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert len(lines) == 3 and all(ln.startswith("PASS") for ln in lines)
    assert "site ready" in result.output
    assert "Site readiness: <span class=\"pass\">READY" in (tmp_path / "a.html").read_text()
    verdict = json.loads((tmp_path / "readiness.json").read_text())
    assert verdict["ready"] is True and len(verdict["checks"]) == 3

    bad = _write_thresholds(tmp_path / "fail.toml", "[toy]\nutility_mean_min = 0.999\nece_max = 1.0\n")
    result = runner.invoke(app, ["report", str(toy_run), "--readiness", str(bad), "--out", str(tmp_path / "b.html")])
    assert result.exit_code == 4, result.output
    assert re.search(r"^FAIL\s+toy\s+utility_mean\s", result.stdout, re.M)
    assert re.search(r"^PASS\s+toy\s+ece\s", result.stdout, re.M)
    assert "site NOT ready: 1 of 2 checks fail" in result.output
    assert "- [ ] toy utility_mean" in (tmp_path / "model_card.md").read_text()

    absent = _write_thresholds(tmp_path / "absent.toml", "[mri]\ndice_min = 0.5\n")
    result = runner.invoke(app, ["report", str(toy_run), "--readiness", str(absent), "--out", str(tmp_path / "c.html")])
    assert result.exit_code == 4 and "not evaluated in this run" in result.stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[toy\nece_max = 0.1\n", "not valid TOML"),
        ("[toy]\nutility_p10_mn = 0.4\n", "unknown threshold 'utility_p10_mn': a key is a metric plus _min or _max"),
        ("[toy]\nutility_p10 = 0.4\n", "unknown threshold 'utility_p10'"),
        ("[toy]\nece_max = 'low'\n", "ece_max must be a finite number"),
        ("[toy]\nece_max = true\n", "ece_max must be a finite number"),
        ("ece_max = 0.1\n", "top-level key 'ece_max' must be a table"),
        ("[toy]\ndice_min = 0.5\n", "[toy] dice_min does not apply to toy"),
        ("[all]\nhd95_mm_max = 5\n", "[all] hd95_mm_max applies to none"),
        ("# nothing\n", "defines no thresholds"),
    ],
)
def test_bad_thresholds_exit_2_naming_file_and_key(toy_run: Path, tmp_path: Path, text: str, needle: str) -> None:
    path = _write_thresholds(tmp_path / "thresholds.toml", text)
    out = tmp_path / "never.html"
    result = runner.invoke(app, ["report", str(toy_run), "--readiness", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and needle in result.output
    assert not out.exists()


def test_not_a_results_folder_and_missing_thresholds_file(tmp_path: Path, toy_run: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a finished c3 results folder" in result.output
    assert not any(tmp_path.iterdir())
    result = runner.invoke(app, ["report", str(toy_run), "--readiness", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "nope.toml" in result.output


def test_missing_matplotlib_exits_2_with_the_install_hint(toy_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = runner.invoke(app, ["report", str(toy_run)])
    assert result.exit_code == 2
    assert "pip install 'c3-core[report]'" in result.output


def test_try_render_report_only_warns(tmp_path: Path) -> None:
    from c3_core.report import try_render_report

    said: list[str] = []
    assert try_render_report(tmp_path, echo=said.append) is None
    assert said and said[0].startswith("warning: no report written")


def test_failed_run_still_renders_with_a_banner(toy_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "failed"
    (run / "toy").mkdir(parents=True)
    for name in ("summary.json", "toy/summary.json", "toy/cases.csv", "toy/counterfactuals.csv"):
        (run / name).write_bytes((toy_run / name).read_bytes())
    manifest = json.loads((toy_run / "run.json").read_text())
    manifest.update(status="failed", failures={"other": "RunAborted: other: more than --max-failures 0 cases failed"})
    (run / "run-failed.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert "This run did not complete: no results for other" in page and 'id="m-toy"' in page


# -- units -----------------------------------------------------------------------------------
def test_pseudonymiser_is_keyed_stable_and_scrubs(tmp_path: Path) -> None:
    key = load_key(tmp_path / "k" / "pseudonym.key")
    assert load_key(tmp_path / "k" / "pseudonym.key") == key  # created once, then reused
    assert (tmp_path / "k" / "pseudonym.key").stat().st_mode & 0o077 == 0
    p, q = Pseudonymiser(key), Pseudonymiser(b"\x01" * 32)
    assert p("MRN-0042") == p("MRN-0042") != q("MRN-0042")
    assert re.fullmatch(r"case-[0-9a-f]{12}", p("MRN-0042"))
    text = p.scrub("case MRN-0042 failed: /data/DOE^JANE/img.dcm not readable")
    assert "MRN-0042" not in text and "DOE" not in text and p("MRN-0042") in text and "<path>" in text


def test_all_section_applies_and_modality_overrides(tmp_path: Path) -> None:
    path = _write_thresholds(tmp_path / "t.toml", "[all]\nflip_rate_max = 0.1\nece_max = 0.5\n[cls]\nflip_rate_max = 0.9\n")
    summaries = {
        "cls": {"task": "multiclass", "flip_rate": 0.5, "ece": 0.2},
        "seg": {"task": "segmentation", "flip_rate": None},
    }
    results = {(r.modality, r.metric): r for r in check(path, load_thresholds(path), summaries)}
    assert set(results) == {("cls", "flip_rate"), ("cls", "ece"), ("seg", "flip_rate")}  # ECE is not a Dice metric
    assert results[("cls", "flip_rate")].passed and results[("cls", "flip_rate")].threshold == 0.9
    assert not results[("seg", "flip_rate")].passed and results[("seg", "flip_rate")].note == "undefined for this run"


# -- undefined metrics ----------------------------------------------------------------------------
def test_a_single_case_cohort_reports_undefined_metrics_with_reasons(
    toy_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One case (one class present, no CI): evaluate exits 0, and summary.json, the console, the
    report and the model card say why each undefined metric is undefined."""
    monkeypatch.setenv("TOY_N", "1")
    out = tmp_path / "one"
    result = runner.invoke(app, ["evaluate", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "toy" / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    why = summary["undefined"]
    assert summary["auroc_macro"] is None and why["auroc_macro"].startswith("no class defines it")
    assert summary["utility"]["mean_ci"] is None and why["utility"]["mean_ci"] == "a bootstrap CI needs at least two cases (1 evaluated)"
    assert "AUROC undefined: no class defines it" in result.output
    page = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    assert "AUROC undefined: no class defines it (absent: only one class is present" in page  # overview
    assert "<h3>Undefined metrics</h3>" in page and "auroc.present" in page
    assert "(CI undefined: a bootstrap CI needs at least two cases (1 evaluated))" in page
    card = (out / "model_card.md").read_text(encoding="utf-8")
    assert "### Undefined metrics" in card and "undefined: only one class is present" in card
    thresholds = _write_thresholds(tmp_path / "t.toml", "[toy]\nauroc_min = 0.5\nutility_mean_ci_low_min = 0.1\n")
    checked = runner.invoke(app, ["report", str(out), "--readiness", str(thresholds), "--out", str(tmp_path / "r.html")])
    assert checked.exit_code == 4
    assert re.search(r"^FAIL\s+toy\s+auroc\s+n/a >= 0.5\s+\(undefined: no class defines it", checked.stdout, re.M)
    assert "(undefined: a bootstrap CI needs at least two cases (1 evaluated))" in checked.stdout


def test_facts_show_undefined_metrics_and_skip_undefined_curve_points() -> None:
    from c3_core.report.facts import headline, metric, metric_ci, undefined_by_reason, worst_operators
    from c3_core.report.figures import severity_response_figure

    points = [{"severity": 1.0, "n": 2, "admitted_rate": 0.0, "mean_score_drop": None, "flip_rate": None},
              {"severity": 2.0, "n": 2, "admitted_rate": 0.5, "mean_score_drop": 0.2, "flip_rate": 1.0}]
    nothing = "no counterfactual at this severity was admitted (0 of 2)"
    summary = {
        "task": "segmentation", "volume_slope": None, "dice_volume_mean": 1.0, "severity_response": {"op": points},
        "utility": {"mean": 0.8, "mean_ci": None, "p10": 0.8, "p10_ci": None},
        "undefined": {"volume_slope": "every lesion mask is empty (no lesion volume to regress on)",
                      "utility": {"mean_ci": "one case", "p10_ci": "one case"},
                      "severity_response": {"op": {"0": {"mean_score_drop": nothing, "flip_rate": nothing}}}},
    }
    rows = dict(headline(summary))
    assert rows["volume calibration slope"] == "undefined: every lesion mask is empty (no lesion volume to regress on)"
    assert rows["utility mean U(x) [95% CI]"] == "0.800 (CI undefined: one case)"
    assert rows["small-lesion recall"] == "n/a"  # missing without a reason: not applicable
    assert metric(summary, "ece") == "n/a" and metric_ci({"utility": {"mean": 0.5, "mean_ci": [0.4, 0.6]}}, "utility", "mean") == "0.500 [0.400, 0.600]"
    assert worst_operators(summary) == [("op", 2.0, 0.2, 1.0)]
    assert undefined_by_reason(summary) == [
        ("every lesion mask is empty (no lesion volume to regress on)", ["volume_slope"]),
        ("one case", ["utility.mean_ci", "utility.p10_ci"]),
    ]
    assert len(undefined_by_reason(summary, curves=True)) == 3
    assert severity_response_figure({"op": points}, {}) is not None  # a gap, not a crash
    nothing_admitted = [dict(points[0]), dict(points[0], severity=2.0)]  # no defined drop at any severity
    assert severity_response_figure({"op": nothing_admitted}, {}) is not None


# -- scale -----------------------------------------------------------------------------------
def _synthetic_run(root: Path, n: int, k: int) -> list[str]:
    """A results folder of ``n`` cases x ``k`` counterfactuals for an uninstalled dataset."""
    rng = random.Random(0)
    ops = [f"syn.op{i}" for i in range(6)]
    ids = [f"PATIENT-{i:06d}" for i in range(n)]
    (root / "syn").mkdir(parents=True)
    cases, cfs = [], []
    for exam in ids:
        score = rng.random()
        drops = [rng.random() * 0.3 for _ in range(k)]
        worst = max(range(k), key=lambda j: drops[j])
        cases.append({"exam_id": exam, "score": score, "utility": score - drops[worst], "worst_k": worst,
                      "worst_ops": f"{ops[worst % 6]}@0.5", "worst_operator": ops[worst % 6], "worst_severity": 0.5,
                      "n_counterfactuals": k, "n_admitted": k - 1, "n_rejected": 1, "n_flipped": 1, "agreement": 0.8,
                      "label": 1, "pred": 1, "prob_a": 1 - score, "prob_b": score})
        for j in range(k):
            prov = {"exam_id": exam, "index": j, "member": 0, "seed": j, "steps": [
                {"op_id": ops[j % 6], "op_version": "1", "severity": 0.5, "params": {"x": [0.1] * 20}, "options": {}}]}
            cfs.append({"exam_id": exam, "k": j, "ops": f"{ops[j % 6]}@0.5", "operator": ops[j % 6], "severity": 0.5,
                        "admitted": j != 0, "reason": "" if j else f"visibility {rng.random():.2f} < 0.50",
                        "gate_statistic": 0.0, "score": score - drops[j], "score_drop": drops[j], "flipped": j == 1,
                        "provenance": json.dumps(prov)})
    for name, rows in (("cases.csv", cases), ("counterfactuals.csv", cfs)):
        with (root / "syn" / name).open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    bins = [{"accuracy": i / 15, "confidence": (i + 0.5) / 15, "count": n // 15, "lower": i / 15, "upper": (i + 1) / 15}
            for i in range(15)]
    summary = {"modality": "syn", "task": "multiclass", "dataset": "syn.missing", "model": "syn.model", "n_cases": n,
               "n_failed": 0, "k": k, "gated_by": "operator checks only", "score_mean": 0.5, "auroc_macro": 0.8,
               "ece": 0.05, "brier": 0.2, "flip_rate": 0.4, "neighbourhood_agreement": 0.8,
               "utility": {"mean": 0.4, "mean_ci": [0.38, 0.42], "p10": 0.1, "p10_ci": [0.08, 0.12], "ci_level": 0.95},
               "gate": {"counterfactuals": n * k, "admitted": n * (k - 1), "admission_rate": (k - 1) / k, "rejections": {}},
               "reliability": {"top_label": bins},
               "severity_response": {op: [{"severity": s, "n": 10, "admitted_rate": 0.9, "mean_score_drop": s / 4,
                                           "flip_rate": s / 2} for s in (0.1, 0.3, 0.5, 0.7, 0.9)] for op in ops}}
    (root / "syn" / "summary.json").write_text(json.dumps(summary))
    (root / "summary.json").write_text(json.dumps({"syn": summary}))
    (root / "run.json").write_text(json.dumps({"status": "complete", "c3_core": "0.1.0", "plugins": [],
                                               "request": {"modalities": ["syn"], "k": k}, "failures": {},
                                               "neighbourhoods": {"syn": {"k": k, "seed": 0, "members": []}}}))
    return ids


def test_thousand_case_report_is_fast_small_and_pseudonymous(tmp_path: Path) -> None:
    from c3_core.report.command import build_report

    ids = _synthetic_run(tmp_path, n=1000, k=8)  # "PATIENT-000000" ...
    t0 = time.perf_counter()
    outcome = build_report(tmp_path, host=None)
    seconds = time.perf_counter() - t0
    page = outcome.html.read_text(encoding="utf-8")
    assert seconds < 30, f"report of 1,000 cases took {seconds:.1f} s"
    assert len(page.encode()) < 1_500_000, len(page.encode())  # ~0.5 KB per exam row plus the figures
    assert page.count("<tr><td>case-") == 1000
    assert ids[0] not in page and "PATIENT-" not in page
    assert "Gallery not available" in page and "syn.missing" in page
    assert "visibility # &lt; #" in page  # rejection reasons grouped with their numbers masked


def test_table_keeps_the_lowest_utility_rows_above_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from c3_core.report import results
    from c3_core.report.command import build_report

    monkeypatch.setattr(results, "MAX_TABLE_ROWS", 100)
    _synthetic_run(tmp_path, n=300, k=2)
    page = build_report(tmp_path, host=None).html.read_text()
    assert page.count("<tr><td>case-") == 100
    assert "Showing the 100 exams with the lowest utility of 300" in page
    with (tmp_path / "syn" / "cases.csv").open() as fh:
        lowest = sorted(float(r["utility"]) for r in csv.DictReader(fh))[:100]
    shown = [float(v) for v in re.findall(r'<td>case-[0-9a-f]{12}</td><td class="n" data-v="([^"]+)"', page)]
    assert sorted(shown) == pytest.approx(lowest)
    # the utility distribution still sees every case
    mod = results.load_results(tmp_path, Pseudonymiser(b"k" * 32)).modalities["syn"]
    assert len(mod.cases) == 100 and len(mod.utilities) == 300 and 'alt="syn utility distribution"' in page


def test_report_never_replaces_a_file_it_did_not_write(toy_run: Path, tmp_path: Path) -> None:
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my notes</p>")
    result = runner.invoke(app, ["report", str(toy_run), "--out", str(mine)])
    assert result.exit_code == 2 and "not written by `c3 report`" in result.output, result.output
    assert mine.read_text() == "<p>my notes</p>" and not (tmp_path / "model_card.md").exists()
    again = runner.invoke(app, ["report", str(toy_run), "--out", str(tmp_path / "r.html")])
    assert again.exit_code == 0, again.output
    assert runner.invoke(app, ["report", str(toy_run), "--out", str(tmp_path / "r.html")]).exit_code == 0  # its own file
    forced = runner.invoke(app, ["report", str(toy_run), "--out", str(mine), "--overwrite"])
    assert forced.exit_code == 0 and "C3 robustness report" in mine.read_text()
