"""Calibrate a plugin's demo gate: δ (classification) or τ (segmentation) for its demo teacher.

The anchors are built reproducibly from the modality's demo cohort, on cases the default run never
evaluates (the demo test split's generator continued past its end: indices n..2n−1 of a split
of n cases), so the thresholds are not fitted to the exams they gate:

* **valid** — label-preserving physics counterfactuals: the default neighbourhood's K draws per
  case (the ones an operator's own check rejects are left out: the operator already says they
  are not label-preserving);
* **invalid** — planted label-changing edits: the lesion removed by the modality's
  ``probe_role = "removed"`` editor at the probe's margin, on every case with a lesion (the
  planted set of :mod:`c3_core.evaluation.gate_effect`).

The anchor statistic is the *teacher's* (the dataset's ``default_teacher``, never the evaluated
model): max |Δp| over classes/findings, or the IoU of its binarised masks. The anchors go to a CSV
that ``c3 gate calibrate`` reads, and the thresholds come from the same
:func:`c3_core.gate.calibrate` at target precision 0.95. The gate JSON (read by ``c3 evaluate``
through the dataset's ``default_gate``) records the thresholds, the calibration, the teacher and
the sha256 of its weights, its in-domain quality on the demo test split, the anchors' counts and
the share of planted label-changing edits the calibrated gate rejects (the full gate: threshold
plus the argmax / positive-set test for classification). Everything runs on one CPU thread, so a
second run writes the same bytes.

    python scripts/calibrate_demo_gates.py --modality cxr                 # writes the package's gates/
    python scripts/calibrate_demo_gates.py --modality mri --cases 4 --out-dir /tmp/gates
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from c3_core.batch import Batch, collate
from c3_core.evaluation.gate_effect import GateEffect
from c3_core.evaluation.probe import find_probe_editors
from c3_core.evaluation.runner import load_spec, resolve_model, resolve_resource, weights_sha256
from c3_core.evaluation.scoring import GateSettings
from c3_core.gate import ClassificationGate, SegmentationGate, calibrate, load_anchors_csv
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood
from c3_core.plugins.host import PluginHost
from c3_core.seeding import derive_seed, generator_from_seed

REPO = Path(__file__).resolve().parents[1]
ANCHOR_COLUMNS = ("statistic", "valid", "kind", "exam_id", "operator", "severity")
TARGET_PRECISION = 0.95
THRESHOLD = 0.5  # binarisation of the teacher's masks / positive set, as the evaluation's gate


@dataclass
class Collected:
    """The teacher's outputs on originals, physics counterfactuals and planted edits, and the anchor rows."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    ref: list[Tensor] = field(default_factory=list)  # per batch: (B, ...) teacher output on originals
    physics: list[Tensor] = field(default_factory=list)  # (B, K, ...)
    physics_ok: list[Tensor] = field(default_factory=list)  # (B, K) not rejected by an operator check
    planted: list[Tensor] = field(default_factory=list)  # (B, L, ...)
    planted_valid: list[Tensor] = field(default_factory=list)  # (B, L) the edit changed something
    operator_rejected: int = 0


def relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (records carry no machine paths)."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def teacher_output(teacher: ModelBundle, images: Tensor) -> Tensor:
    """Probabilities (classification) or the binarised foreground mask (segmentation)."""
    probs = teacher.probabilities(teacher.logits(images))
    return probs[:, :1] >= THRESHOLD if teacher.task == "segmentation" else probs


def statistic(task: str, ref: Tensor, cf: Tensor) -> Tensor:
    """max |Δp| (B, K) or teacher IoU (B, K) of ``cf (B, K, ...)`` against ``ref (B, ...)``."""
    gate = make_gate(task, GateSettings(delta=1.0, tau=0.0, threshold=THRESHOLD), ())
    return gate(ref, cf).statistic


def make_gate(task: str, settings: GateSettings, class_names: Sequence[str]) -> Any:
    if task == "segmentation":
        return SegmentationGate(tau=settings.tau, threshold=settings.threshold)
    return ClassificationGate(delta=settings.delta, multilabel=task == "multilabel", threshold=settings.threshold,
                              class_names=tuple(class_names) or None)


def calibration_cases(factory: Any, n: int | None) -> tuple[Any, range]:
    """The demo test split continued past its end: ``(dataset, indices)`` of ``n`` unseen cases."""
    n0 = len(factory(split="test"))
    n = n0 if n is None else n
    try:
        extended = factory(split="test", n=n0 + n)
    except TypeError as exc:
        raise SystemExit(f"the demo dataset cannot be extended past its test split (it takes no n=): {exc}") from None
    return extended, range(n0, n0 + n)


def collect(host: PluginHost, modality: str, teacher: ModelBundle, cases: int | None, k: int | None,
            batch_size: int) -> tuple[Collected, dict[str, Any]]:
    """Draw the anchors: physics counterfactuals (valid) and planted lesion removals (invalid)."""
    dataset_c = host.demo_dataset(modality)
    spec = load_spec(dataset_c, None, k, None)
    nb = Neighbourhood(spec, host.make_operator)
    editors = find_probe_editors(host, modality)
    removed, sev = editors.removed, editors.removed.severity
    margins = [editors.margin_mm]  # the probe's margin, as the planted set of c3_core.evaluation.gate_effect
    dataset, indices = calibration_cases(dataset_c.load(), cases)
    out = Collected()
    for start in range(0, len(indices), batch_size):
        batch = collate([dataset[i] for i in indices[start : start + batch_size]])
        with torch.no_grad():
            cf, plans, reasons = nb.draw(batch)
            edits, valid = plant(removed, batch, margins, spec.seed)
            ref = teacher_output(teacher, batch.image)
            phys = teacher_output(teacher, cf.image).reshape(batch.size, spec.k, *ref.shape[1:])
            pl = teacher_output(teacher, edits.image).reshape(batch.size, len(margins), *ref.shape[1:])
        ok = torch.tensor([[why is None for why in row] for row in reasons])
        stat_phys, stat_pl = statistic(teacher.task, ref, phys), statistic(teacher.task, ref, pl)
        for i, exam in enumerate(batch.exam_ids):
            for j, plan in enumerate(plans[i]):
                if bool(ok[i, j]):
                    step = plan.steps[0]
                    out.rows.append(_row(stat_phys[i, j], True, teacher.task, exam, plan.provenance().label, step.severity))
            for j, margin in enumerate(margins):
                if bool(valid[i, j]):
                    out.rows.append(_row(stat_pl[i, j], False, teacher.task, exam, removed.id, margin))
        out.operator_rejected += int((~ok).sum())
        out.ref.append(ref)
        out.physics.append(phys)
        out.physics_ok.append(ok)
        out.planted.append(pl)
        out.planted_valid.append(valid)
    source = {
        "cases": f"{dataset_c.id} test split generator, indices {indices.start}-{indices.stop - 1} "
                 f"(disjoint from the {indices.start} evaluated cases)",
        "n_cases": len(indices),
        "valid": f"physics counterfactuals of {relative(resolve_resource(dataset_c.meta['default_neighbourhood']))} "
                 f"(K = {spec.k} per case, seed {spec.seed}); operator-rejected draws left out",
        "invalid": f"{removed.id} (planted lesion removal) at the probe's margin {margins[0]:g} {sev.unit} "
                   "on every case with a lesion",
        "operator_rejected_left_out": out.operator_rejected,
    }
    return out, source


def plant(editor: Any, batch: Batch, margins: Sequence[float], seed: int) -> tuple[Batch, Tensor]:
    """The lesion removed at every margin, as one batch ordered case-major ``(B·L)``, and
    ``(B, L)`` whether each edit changed the case (it had a lesion)."""
    from c3_core.batch import concat

    parts, valid = [], []
    for margin in margins:
        gens = [generator_from_seed(derive_seed(seed, e, "planted", margin)) for e in batch.exam_ids]
        params = [editor.sample_params(batch.case_info(i), gens[i], margin) for i in range(batch.size)]
        parts.append(editor.apply(batch, params))
        valid.append(torch.tensor([why is None for why in editor.check(batch, parts[-1], params)]))
    stacked = concat(parts)  # margin-major: (L·B)
    lb = len(margins)
    order = [m * batch.size + i for i in range(batch.size) for m in range(lb)]
    return stacked.select(order), torch.stack(valid, 1)


def _row(stat: Tensor, valid: bool, task: str, exam: str, operator: str, severity: float) -> dict[str, Any]:
    kind = "segmentation" if task == "segmentation" else "classification"
    return {"statistic": f"{float(stat):.6f}", "valid": int(valid), "kind": kind, "exam_id": exam,
            "operator": operator, "severity": f"{float(severity):g}"}


def write_anchors(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ANCHOR_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def effect(task: str, settings: GateSettings, class_names: Sequence[str], got: Collected) -> GateEffect:
    """Planted edits and valid anchors the calibrated gate rejects (threshold and class test)."""
    gate = make_gate(task, settings, class_names)
    total = GateEffect(0, 0, 0, 0)
    for ref, phys, ok, pl, valid in zip(got.ref, got.physics, got.physics_ok, got.planted, got.planted_valid):
        caught = ~gate(ref, pl).admitted & valid
        wrongly = ~gate(ref, phys).admitted & ok
        total = total + GateEffect(int(valid.sum()), int(caught.sum()), int(ok.sum()), int(wrongly.sum()))
    return total


def teacher_quality(host: PluginHost, modality: str, teacher: ModelBundle, batch_size: int) -> dict[str, Any]:
    """The teacher's in-domain quality on the demo test split (the evaluated cases)."""
    from c3_core.metrics.classification import macro_auroc

    dataset = host.demo_dataset(modality).load()(split="test")
    outs, labels, dice = [], [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        with torch.no_grad():
            p = teacher_output(teacher, batch.image)
        if teacher.task == "segmentation":
            pred, true = p, batch.mask[:, :1] >= 0.5  # type: ignore[index]
            inter = (pred & true).flatten(1).sum(1).double()
            size = pred.flatten(1).sum(1).double() + true.flatten(1).sum(1).double()
            dice += torch.where(size > 0, 2 * inter / size.clamp_min(1), torch.ones_like(size)).tolist()
        else:
            outs.append(p)
            labels.append(batch.label)
    if teacher.task == "segmentation":
        return {"split": "test", "n": len(dataset), "dice_volume_mean": round(sum(dice) / len(dice), 4)}
    probs, y = torch.cat(outs), torch.cat(labels)  # type: ignore[arg-type]
    targets = y if teacher.task == "multilabel" else torch.nn.functional.one_hot(y.long(), probs.shape[1])
    out = {"split": "test", "n": len(dataset), "auroc_macro": round(float(macro_auroc(probs, targets).value), 4)}
    if teacher.task == "multiclass":
        out["accuracy"] = round(float((probs.argmax(1) == y.long()).double().mean()), 4)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modality", required=True)
    ap.add_argument("--cases", type=int, default=None, help="calibration cases (default: as many as the demo test split)")
    ap.add_argument("--k", type=int, default=None, help="physics counterfactuals per case (default: the spec's K)")
    ap.add_argument("--target-precision", type=float, default=TARGET_PRECISION)
    ap.add_argument("--out-dir", type=Path, default=None, help="default: the folder of the dataset's default_gate")
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the same float sums on every run
    started = time.perf_counter()
    host = PluginHost().load()
    dataset_c = host.demo_dataset(args.modality)
    teacher_id = dataset_c.meta.get("default_teacher")
    ref = dataset_c.meta.get("default_gate")
    if not teacher_id or not ref:
        raise SystemExit(f"{dataset_c.id} declares no default_teacher / default_gate")
    teacher, teacher_id = resolve_model(host, args.modality, dataset_c, teacher_id, "cpu", role="--teacher")
    gate_path = resolve_resource(ref)
    out_dir = args.out_dir or gate_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / gate_path.name, out_dir / f"{gate_path.stem}_anchors.csv"

    got, source = collect(host, args.modality, teacher, args.cases, args.k, args.batch_size)
    write_anchors(csv_path, got.rows)
    kind = "segmentation" if teacher.task == "segmentation" else "classification"
    result = calibrate(load_anchors_csv(csv_path), target_precision=args.target_precision, kind=kind)  # = c3 gate calibrate
    key = "tau" if kind == "segmentation" else "delta"
    settings = GateSettings(**{key: result.threshold, "threshold": THRESHOLD})
    eff = effect(teacher.task, settings, teacher.class_names, got)
    n_valid = sum(r["valid"] for r in got.rows)
    cmd = ["python", "scripts/calibrate_demo_gates.py", "--modality", args.modality]
    cmd += [f"--cases {args.cases}"] if args.cases is not None else []
    cmd += [f"--k {args.k}"] if args.k is not None else []
    record = {
        key: result.threshold,
        "threshold": THRESHOLD,
        "calibration": {kind: result.to_dict()},
        "teacher": teacher_id,
        "teacher_weights_sha256": weights_sha256(teacher),
        "teacher_metadata": dict(teacher.metadata),
        "teacher_quality": teacher_quality(host, args.modality, teacher, args.batch_size),
        "demo_only": f"{teacher_id} was trained on the {dataset_c.id} phantoms; these thresholds gate that cohort only",
        "anchors": {"file": csv_path.name, "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
                    "n": len(got.rows), "n_valid": n_valid, "n_invalid": len(got.rows) - n_valid,
                    "mix": "per case, the K physics draws beside one planted edit where there is a lesion: the target "
                           "precision holds for that share of label-changing counterfactuals (a larger share would "
                           "give a stricter threshold)", **source},
        "planted_rejected": {"n": eff.planted, "rejected": eff.planted_rejected, "share": eff.share_planted_rejected,
                             "test": "the full gate at the calibrated threshold (with the argmax / positive-set test)"
                             if kind == "classification" else "teacher IoU below the calibrated τ"},
        "valid_rejected": {"n": eff.admissible, "rejected": eff.admissible_rejected, "share": eff.share_admissible_rejected},
        "command": " ".join(cmd),
        "equivalent": f"c3 gate calibrate {relative(csv_path)} --kind {kind} --target-precision {args.target_precision:g}",
    }
    json_path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.modality}: {key} = {result.threshold:g}, precision {result.precision:.3f}, recall {result.recall:.3f} "
          f"on {len(got.rows)} anchors ({n_valid} valid); planted edits rejected {eff.planted_rejected}/{eff.planted} "
          f"({eff.share_planted_rejected}); valid rejected {eff.admissible_rejected}/{eff.admissible}; "
          f"{time.perf_counter() - started:.0f} s -> {relative(json_path)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
