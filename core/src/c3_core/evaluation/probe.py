"""The causal probe (``c3 evaluate --probe causal``): what a model's output owes to the lesion.

For every case with a lesion mask and every class ``c`` the model outputs, four images go
through the model in one forward: the original, the lesion *removed* (inpainted), the lesion
*only* (background suppressed) and a *control* (a healthy region of the same size inpainted
instead). With ``P_x`` the probability of class ``c`` on image ``x``:

* ``delta_drop = P_orig − P_removed`` (seed 004's Delta-Drop: large and positive when the output
  rests on the lesion);
* ``delta_focus = P_only`` (Delta-Focus: the output the lesion alone sustains);
* ``control_drop = P_orig − P_control`` (what inpainting as such costs);
* ``corrected_drop = delta_drop − control_drop = P_control − P_removed`` (the control-corrected
  drop: the part of the drop owed to the lesion rather than to inpainting).

Classification models are read as their class probabilities (softmax or sigmoid). A
segmentation model is read as its mean foreground probability over the edited region (the
dilated lesion mask, the same voxels in all four images), so ``delta_drop`` is how much of the
lesion it stops segmenting once the lesion is gone, and ``control_drop`` how much inpainting
elsewhere moves that readout.

Conventions (never a silent NaN): a case without lesion gets status ``no_lesion`` and only
``p_orig``; a case where no control region fits gets ``no_control_region`` and empty control
columns. Empty cells are empty in ``probe.csv`` and ``None`` in JSON; summary means skip them.
The control's placement is drawn from ``derive_seed(seed, exam_id, "causal-probe")``, so a
case's probe does not depend on batch order, sharding or resuming.

Truth: ``target`` is the original's label; ``target_removed`` the label the removal declares for
the edited image (``Operator.changes``; empty where it cannot state it). The edited region is
always taken from the original's mask, never from a counterfactual's (whose mask describes the
edited image: after removal, no lesion).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from c3_core.batch import Batch, concat
from c3_core.model import ModelBundle
from c3_core.seeding import derive_seed, generator_from_seed

ROLES = ("removed", "only", "control")
PROBE_KEY = "probe"  # the case-row key that carries a case's probe rows through the store
STATUS_OK, STATUS_NO_LESION, STATUS_NO_CONTROL = "ok", "no_lesion", "no_control_region"
DEFINITIONS = {
    "delta_drop": "P_orig - P_removed (lesion inpainted)",
    "delta_focus": "P_only (background suppressed)",
    "control_drop": "P_orig - P_control (a healthy region of the same size inpainted)",
    "corrected_drop": "delta_drop - control_drop = P_control - P_removed",
    "segmentation_readout": "mean foreground probability over the edited (dilated lesion) region",
    "target_removed": "the removed image's truth as the removal declares it (its label; for segmentation "
                      "its lesion mask); empty where the editor cannot state it",
}


class ProbeUnavailable(LookupError):
    """The modality has no mask-guided editors (or its data no lesion mask) to probe with."""


@dataclass(frozen=True)
class ProbeEditors:
    """The three interventional editors of one modality and the margin (mm) they use."""

    removed: Any
    only: Any
    control: Any
    margin_mm: float

    def ids(self) -> dict[str, str]:
        return {role: getattr(self, role).id for role in ROLES}


def find_probe_editors(host: Any, modality: str) -> ProbeEditors:
    """The modality's editors whose class declares ``probe_role`` "removed", "only", "control".

    Roles are read from the plugins' shipped catalogues (:func:`c3_core.plugins.catalogue.editor_roles`),
    so only the three editors found are imported, never every editor (diffusers included). The
    control must not declare that it changes the label (the corrected drop assumes it keeps it).
    The margin is the editors' first non-zero severity level (mm), else their extreme.
    Raises :class:`ProbeUnavailable` naming what is missing.
    """
    from c3_core.plugins.catalogue import editor_roles

    found: dict[str, Any] = {}
    for role, c in editor_roles(host, modality).items():
        if role not in ROLES:
            continue
        try:
            found[role] = c.load()
        except Exception:  # noqa: BLE001 - reported below as a missing role
            continue
    missing = [r for r in ROLES if r not in found]
    if missing:
        raise ProbeUnavailable(
            f"--probe causal: no {modality} editor declares probe_role {', '.join(repr(m) for m in missing)} "
            f"(mask-guided interventions are not installed for {modality})"
        )
    if "label" in getattr(found["control"], "changes", frozenset()):
        raise ProbeUnavailable(f"--probe causal: the control {found['control'].id} declares that it changes the label")
    sev = found["removed"].severity
    levels = [v for v in sev.levels if v != sev.identity]
    return ProbeEditors(found["removed"](), found["only"](), found["control"](), float(levels[0] if levels else sev.extreme))


def _readout(bundle: ModelBundle, probs: Tensor, regions: Tensor) -> Tensor:
    """``(N, C)`` class probabilities; for segmentation, the mean over each case's region."""
    if bundle.task != "segmentation":
        return probs.double()
    w = regions.unsqueeze(1).to(probs.dtype)
    area = w.flatten(2).sum(2).clamp_min(1.0)
    return ((probs * w).flatten(2).sum(2) / area).double()


def _targets(bundle: ModelBundle, batch: Batch, has_lesion: list[bool]) -> list[list[float | None]]:
    """Per case and class: 1/0 for the class being (one of) the case's label(s), None where
    unknown (NaN, or class -1: see :mod:`c3_core.truth`); for segmentation, whether
    the case has a lesion."""
    from c3_core.truth import UNKNOWN_CLASS

    n_cls = len(bundle.class_names)
    if bundle.task == "segmentation":
        return [[1.0 if has else 0.0] * n_cls for has in has_lesion]
    if batch.label is None:
        return [[None] * n_cls for _ in has_lesion]
    if bundle.task == "multiclass":
        return [[None if int(y) == UNKNOWN_CLASS else 1.0 if int(y) == c else 0.0 for c in range(n_cls)] for y in batch.label.tolist()]
    return [[None if v != v else float(v) for v in row] for row in batch.label.double().tolist()]


def probe_batch(
    bundle: ModelBundle, batch: Batch, editors: ProbeEditors, seed: int, chunk: int | None = None,
    written_ids: Sequence[str] | None = None,
) -> list[list[dict[str, Any]]]:
    """The probe rows of every case of ``batch`` (one row per class), in batch order; rows name
    each exam by ``written_ids`` (its pseudonym) when given."""
    b = batch.size
    ids = list(written_ids) if written_ids is not None else list(batch.exam_ids)
    info = [batch.case_info(i) for i in range(b)]
    margin = editors.margin_mm
    gens = [generator_from_seed(derive_seed(seed, exam, "causal-probe")) for exam in batch.exam_ids]
    p_rm = [editors.removed.sample_params(info[i], gens[i], margin) for i in range(b)]
    p_only = [editors.only.sample_params(info[i], gens[i], margin) for i in range(b)]
    p_ctl = [editors.control.sample_params(info[i], gens[i], margin) for i in range(b)]
    removed = editors.removed.apply(batch, p_rm)
    only = editors.only.apply(batch, p_only)
    control = editors.control.apply(batch, p_ctl)
    no_control = editors.control.check(batch, control, p_ctl)
    regions = torch.stack([editors.removed.edit_region(batch, i, margin) for i in range(b)])
    has_lesion = regions.flatten(1).any(1).tolist()
    images = concat([batch, removed, only, control]).image
    if chunk is None or images.shape[0] <= chunk:
        probs = bundle.probabilities(bundle.logits(images))
    else:
        probs = bundle.probabilities(torch.cat([bundle.logits(images[i : i + chunk]) for i in range(0, images.shape[0], chunk)]))
    p = _readout(bundle, probs, regions.repeat(4, *[1] * batch.spatial_dims)).view(4, b, -1).tolist()
    targets = _targets(bundle, batch, has_lesion)
    # the removed image's truth is what the removal declares (its returned label, its lesion mask);
    # where the lesion was, and so the readout region, is the original's mask
    left = editors.removed.lesion_mask(removed).flatten(1).any(1).tolist()
    targets_removed = _targets(bundle, removed, left)
    voxels = regions.flatten(1).sum(1).tolist()
    out: list[list[dict[str, Any]]] = []
    for i in range(b):
        voxel_size = float(torch.tensor(batch.spacing[i], dtype=torch.float64).prod())
        status = STATUS_OK if has_lesion[i] else STATUS_NO_LESION
        if status == STATUS_OK and no_control[i] is not None:
            status = STATUS_NO_CONTROL
        rows = []
        for c, name in enumerate(bundle.class_names):
            orig = p[0][i][c]
            rm = p[1][i][c] if has_lesion[i] else None
            focus = p[2][i][c] if has_lesion[i] else None
            ctl = p[3][i][c] if status == STATUS_OK else None
            drop = None if rm is None else orig - rm
            ctl_drop = None if ctl is None else orig - ctl
            rows.append(
                {
                    "exam_id": ids[i],
                    "class": name,
                    "target": targets[i][c],
                    "target_removed": targets_removed[i][c] if has_lesion[i] else None,
                    "status": status,
                    "margin_mm": margin,
                    "edited_voxels": int(voxels[i]),
                    "edited_size": int(voxels[i]) * voxel_size,
                    "p_orig": orig,
                    "p_removed": rm,
                    "p_only": focus,
                    "p_control": ctl,
                    "delta_drop": drop,
                    "delta_focus": focus,
                    "control_drop": ctl_drop,
                    "corrected_drop": None if drop is None or ctl_drop is None else drop - ctl_drop,
                    "control_seed": p_ctl[i].placement_seed,
                }
            )
        out.append(rows)
    return out


# -- aggregation and output ---------------------------------------------------------------------
def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _stats(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    def col(key: str) -> list[float]:
        return [float(r[key]) for r in rows if r[key] is not None]

    drops = col("delta_drop")
    return {
        "n": len(drops),
        "delta_drop_mean": _mean(drops),
        "delta_focus_mean": _mean(col("delta_focus")),
        "control_drop_mean": _mean(col("control_drop")),
        "corrected_drop_mean": _mean(col("corrected_drop")),
        "share_positive_corrected_drop": _mean([1.0 if v > 0 else 0.0 for v in col("corrected_drop")]),
    }


def summarise_probe(case_rows: Iterable[Sequence[Mapping[str, Any]]], class_names: Sequence[str], editor_ids: Mapping[str, str]) -> dict[str, Any]:
    """``summary.json["probe"]``: per class (all lesion cases, and those where the class is the
    label) and over the true class of each case (seed 004's definition)."""
    per_class: dict[str, list[Mapping[str, Any]]] = {n: [] for n in class_names}
    status: dict[str, int] = {STATUS_OK: 0, STATUS_NO_LESION: 0, STATUS_NO_CONTROL: 0}
    n_cases = 0
    for rows in case_rows:
        n_cases += 1
        if rows:
            status[rows[0]["status"]] = status.get(rows[0]["status"], 0) + 1
        for r in rows:
            per_class.setdefault(r["class"], []).append(r)
    true_rows = [r for rows in per_class.values() for r in rows if r["target"] == 1.0]
    margin = next((r["margin_mm"] for rows in per_class.values() for r in rows), None)
    return {
        "editors": dict(editor_ids),
        "margin_mm": margin,
        "n_cases": n_cases,
        "n_by_status": status,
        "true_class": _stats(true_rows),
        "per_class": {
            name: {"all": _stats(rows), "label_positive": _stats([r for r in rows if r["target"] == 1.0])}
            for name, rows in per_class.items()
        },
        "definitions": DEFINITIONS,
    }


def split_probe(case_rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Case rows without their probe entries (for ``cases.csv``)."""
    for row in case_rows:
        yield {k: v for k, v in row.items() if k != PROBE_KEY}


def probe_rows(case_rows: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The flat probe rows (one per case and class) carried by case rows."""
    for row in case_rows:
        yield from row.get(PROBE_KEY) or []


def write_probe_csv(out: Path, modality: str, case_rows: Iterable[Mapping[str, Any]]) -> tuple[Path, int]:
    """Write ``<modality>/probe.csv`` atomically, streamed; returns the path and row count."""
    from c3_core.evaluation.output import write_csv_stream

    return write_csv_stream(out, f"{modality}/probe.csv", probe_rows(case_rows))
