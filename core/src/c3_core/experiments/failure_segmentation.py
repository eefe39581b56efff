"""One segmentation model's failure signals and held-out-shift failures on a cohort of volumes.

The segmentation arm of the failure-prediction study (issue 17 §3, "MRI follows at the same
design"): the same inputs (:class:`~c3_core.experiments.failure_cases.FailureInputs`) and the
same tables (:class:`~c3_core.experiments.failure_cases.SeedTables`) as the classification pass
in :mod:`c3_core.experiments.failure_cases`, with the volume as the unit and the signal names of
:data:`c3_core.experiments.failure_signals.SEGMENTATION`. Masks are the model's lesion
probability ``>= threshold``; Dice is :func:`c3_core.metrics.margins.mask_dice` (1 when both
masks are empty).

**Failure** (per held-out shift; the shift applied once per volume, seeded per exam): the volume
*fails* when its lesion Dice against the ground-truth mask drops by at least :data:`MIN_DROP`
(0.1) from the clean volume to the shifted one (``failures[shift]["flip"]``, 0/1). The risk of
the risk-coverage curve and AURC is the continuous ``1 - lesion Dice under shift``
(``failures[shift]["wrong"]``, in [0, 1]; Zenk et al. 2024), not a thresholded "wrong".

**Signals**, all from the clean volume, higher = more likely to fail:

* ``c3_consistency`` -- *the verdict*: 1 - the worst self-consistency over the gated default
  neighbourhood, i.e. 1 - min(1, min over admitted counterfactuals k of Dice(m(x'_k), T_k m(x))),
  where m(x) is the clean predicted mask and T_k m(x) that mask moved by the counterfactual's
  spatial change (carried through the neighbourhood as a second mask channel, so a B0
  distortion moves it like the ground truth; intensity operators leave it in place). The
  analogue of the 2-D arm's worst decision margin; 0 when nothing is admitted.
* ``c3_changes``: admitted counterfactuals whose self-consistency Dice is below
  :data:`SAME_DICE` (0.9, the rule by which ``c3 evaluate`` counts a segmentation as changed).
* ``c3_drop``: s(x) - U(x) with s the clean lesion Dice and U the worst Dice (against the moved
  ground truth) over the clean volume and the admitted counterfactuals (uses the mask).
* ``severity_margin``: per operator of the default neighbourhood, the mildest declared severity
  (as a fraction of the operator's range) at which an admitted counterfactual's self-consistency
  Dice falls below 0.9 (1.25 when none does), averaged over operators; negated.
* ``confidence``: 1 - mean max(p, 1 - p) over the voxels predicted as lesion (0.5 when none is).
* ``entropy``: mean binary voxel entropy (nats) over the head (:func:`c3_core.metrics.margins.foreground`).
* ``tta_disagreement``: 1 - mean pairwise Dice of the predictions on ``tta_views`` views (view 0
  the volume; odd views mirrored along :data:`FLIP_AXIS`; views 1.. circularly shifted by whole
  voxels, up to 3 % of each axis), each mapped back to the original grid before comparing.
* ``ensemble_disagreement``: 1 - mean pairwise Dice of the M ensemble members' masks (Zenk et al.
  2024's strong baseline).
* ``generic_consistency`` / ``generic_changes``: the same as the first two on the generic
  corruption neighbourhood (Gaussian noise, blur and contrast in display space at matched
  strength; no JPEG for volumes), gated by the same teacher.

Each C³ signal is stored per held-out shift without the shift's operator families
(``"<name>|<shift>"``) and with every operator (``"<name>|all"``). ``signals["lesion_dice"]`` and
``failures[shift]["dice"]`` keep the clean and shifted Dice for the report. Volumes go through
the passes :data:`VOLUMES_PER_PASS` at a time (results do not depend on it: every draw is seeded
per exam).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from c3_core.batch import Batch, collate
from c3_core.experiments.failure_cases import (
    FailureInputs,
    ScanPlan,
    SeedTables,
    chunked_probabilities,
    family_mask,
    put_severity_margins,
)
from c3_core.gate import SegmentationGate
from c3_core.metrics import margins as S
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood
from c3_core.seeding import derive_seed, generator_from_seed
from c3_core.truth import mask_known
from c3_core.utility import shift_stable_utility

MIN_DROP = 0.1  # Dice points: a volume fails when its lesion Dice drops by at least this much under the shift
SAME_DICE = 0.9  # self-consistency Dice below which a counterfactual counts as a changed segmentation
VOLUMES_PER_PASS = 4  # volumes drawn and scored together (bounds memory: K counterfactuals per volume)
FORWARD_CHUNK = 8  # volumes per network forward
FLIP_AXIS = 0  # spatial axis mirrored by odd TTA views (the axis the mri.demo recipe flips in training)
MAX_SHIFT = 0.03  # TTA shifts: up to this share of each spatial size, in whole voxels


# -- TTA views: functional kernels ---------------------------------------------------------------


def tta_plan(spatial: Sequence[int], n: int, g: torch.Generator, max_shift: float = MAX_SHIFT) -> list[tuple[bool, tuple[int, ...]]]:
    """``n`` views as ``(mirrored, voxel shift per spatial axis)``: view 0 the identity; view i
    mirrored when i is odd and shifted by a whole number of voxels drawn from ``g`` (at most
    ``max_shift`` of the axis, at least 1)."""
    limits = [max(1, round(max_shift * s)) for s in spatial]
    plan = [(False, tuple(0 for _ in spatial))]
    for i in range(1, n):
        shifts = tuple(int(torch.randint(-m, m + 1, (1,), generator=g)) for m in limits)
        plan.append((i % 2 == 1, shifts))
    return plan


def apply_view(x: Tensor, mirrored: bool, shifts: Sequence[int], flip_axis: int = FLIP_AXIS) -> Tensor:
    """``x (B, C, *sp)`` mirrored along spatial ``flip_axis`` (if asked), then rolled by ``shifts``."""
    d = x.ndim - 2
    y = x.flip(2 + flip_axis) if mirrored else x
    return y.roll(tuple(int(s) for s in shifts), tuple(range(2, 2 + d))) if any(shifts) else y


def undo_view(y: Tensor, mirrored: bool, shifts: Sequence[int], flip_axis: int = FLIP_AXIS) -> Tensor:
    """The inverse of :func:`apply_view` (exact: rolls and mirrors are permutations of voxels)."""
    d = y.ndim - 2
    z = y.roll(tuple(-int(s) for s in shifts), tuple(range(2, 2 + d))) if any(shifts) else y
    return z.flip(2 + flip_axis) if mirrored else z


# -- the pass -----------------------------------------------------------------------------------


def _probs(bundle: ModelBundle, image: Tensor, chunk: int) -> Tensor:
    """Lesion probabilities ``(N, 1, *sp)`` on the CPU, ``chunk`` volumes per forward."""
    return chunked_probabilities(bundle, image, chunk)[:, :1]


def _admitted(teacher: ModelBundle | None, teacher_ref: Tensor | None, cf_image: Tensor, b: int, k: int, gate: Any,
              rejections: Sequence[Sequence[str | None]], chunk: int) -> Tensor:
    """``(B, K)`` bool: the teacher-mask IoU test of :class:`~c3_core.gate.SegmentationGate` (the
    clean volumes' teacher masks computed once) and the operators' own checks."""
    if teacher is None or teacher_ref is None:
        adm = torch.ones(b, k, dtype=torch.bool)
    else:
        t_cf = _probs(teacher, cf_image, chunk)
        decision = SegmentationGate(tau=gate.tau, threshold=gate.threshold)(teacher_ref, t_cf.reshape(b, k, *teacher_ref.shape[1:]))
        adm = decision.admitted.bool().cpu()
    extra = torch.tensor([[r is None for r in row] for row in rejections], dtype=torch.bool).reshape(b, k)
    return adm & extra


def _carrier(batch: Batch, pred: Tensor) -> Batch:
    """``batch`` whose mask holds the ground truth (channel 0) and the clean prediction (channel 1)."""
    gt = batch.mask[:, :1].float()  # type: ignore[index]
    return batch.replace(mask=torch.cat([gt, pred.to(gt.dtype)], 1))


def _moved(cf: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """The counterfactuals' moved ground truth and clean prediction (bool ``(N, 1, *sp)``) and
    ``(N,)`` whether both are still known (an edit that declares a new mask leaves them NaN)."""
    mask = cf.mask  # type: ignore[union-attr]
    known = mask_known(mask).all(1).cpu()  # type: ignore[arg-type]
    return (mask[:, :1] >= 0.5).cpu(), (mask[:, 1:2] >= 0.5).cpu(), known  # type: ignore[index]


def _consistency(pred_cf: Tensor, moved_pred: Tensor, admitted: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(1 - worst self-consistency Dice, admitted changes, self-consistency (B, K))``."""
    b, k = admitted.shape
    cons = S.mask_dice(pred_cf, moved_pred).view(b, k)
    worst = S.worst_margin(torch.ones(b, dtype=torch.float64), cons, admitted)
    return 1 - worst, S.admitted_flips(cons - SAME_DICE, admitted), cons


def compute_segmentation_tables(cases: Sequence[Any], inputs: FailureInputs, batch_size: int,
                                progress: Callable[[int, int], None] | None = None) -> SeedTables:
    """Every signal and failure of ``cases`` (Samples with ground-truth masks) for one model seed."""
    from c3_core.experiments.shifts import shift_spec

    if inputs.model.task != "segmentation":
        raise ValueError(f"compute_segmentation_tables: a segmentation model is needed, got task {inputs.model.task!r}")
    thr = inputs.gate.threshold
    chunk = max(1, min(inputs.chunk, FORWARD_CHUNK))
    nb = Neighbourhood(inputs.spec.with_overrides(seed=inputs.seed), inputs.make_operator)
    scan = ScanPlan.from_spec(inputs.spec, inputs.make_operator)
    shift_nbs = [Neighbourhood(shift_spec(h).with_overrides(seed=derive_seed(inputs.seed, "held-out", h.name) % 2**31),
                               inputs.make_operator) for h in inputs.shifts]
    families = [set(h.family) for h in inputs.shifts]
    parts: dict[str, list[Tensor]] = {}
    fails: dict[str, dict[str, list[Tensor]]] = {h.name: {"flip": [], "wrong": [], "dice": []} for h in inputs.shifts}
    g_tta = generator_from_seed(derive_seed(inputs.seed, "tta"))
    k = nb.k
    step = max(1, min(int(batch_size), VOLUMES_PER_PASS))

    def put(name: str, value: Tensor) -> None:
        parts.setdefault(name, []).append(value.double().cpu())

    for start in range(0, len(cases), step):
        batch = collate(list(cases[start : start + step]))
        if batch.mask is None:
            raise ValueError("the segmentation failure study needs ground-truth masks")
        b = batch.size
        gt = (batch.mask[:, :1] >= 0.5).cpu()
        p = _probs(inputs.model, batch.image, chunk)
        pred = p >= thr
        dice_clean = S.mask_dice(pred, gt)
        put("lesion_dice", dice_clean)
        put("confidence", S.region_uncertainty(p, pred))
        put("entropy", S.region_entropy(p, S.foreground(batch.image).cpu()))
        carrier = _carrier(batch, pred.to(batch.image.device))
        t_ref = None if inputs.teacher is None else _probs(inputs.teacher, batch.image, chunk)

        # default neighbourhood, gated; the clean prediction moves with each counterfactual
        cf, plans, rejections = nb.draw(carrier)
        pred_cf = _probs(inputs.model, cf.image, chunk) >= thr
        moved_gt, moved_pred, known = _moved(cf)
        admitted = _admitted(inputs.teacher, t_ref, cf.image, b, k, inputs.gate, rejections, chunk) & known.view(b, k)
        score_cf = S.mask_dice(pred_cf, moved_gt).view(b, k)
        del cf
        for tag, keep in [("all", torch.ones_like(admitted))] + [(h.name, family_mask(plans, fam)) for h, fam in zip(inputs.shifts, families)]:
            adm = admitted & keep
            verdict, changes, _cons = _consistency(pred_cf, moved_pred, adm)
            put(f"c3_consistency|{tag}", verdict)
            put(f"c3_changes|{tag}", changes)
            put(f"c3_drop|{tag}", dice_clean - shift_stable_utility(dice_clean, score_cf, adm).utility)
            put(f"n_admitted|{tag}", adm.sum(1))

        # severity scan, one operator at a time; margin = self-consistency Dice - 0.9
        if scan.ops:
            o_n, lv = scan.fractions.shape
            ms_parts, adm_parts = [], []
            for o in range(o_n):
                scf, srej = scan.realise(carrier, inputs.seed, o)
                ps = _probs(inputs.model, scf.image, chunk) >= thr
                _sgt, s_pred, s_known = _moved(scf)
                rej = [srej[i * lv : (i + 1) * lv] for i in range(b)]
                adm_parts.append(_admitted(inputs.teacher, t_ref, scf.image, b, lv, inputs.gate, rej, chunk) & s_known.view(b, lv))
                ms_parts.append(S.mask_dice(ps, s_pred).view(b, lv) - SAME_DICE)
            ms = torch.stack(ms_parts, 1)
            sadm = torch.stack(adm_parts, 1)
            put_severity_margins(put, scan, ms, sadm, inputs.shifts, families)

        # generic corruptions at matched strength (intensity only: the clean prediction stays in place)
        gimg, _labels = inputs.generic.draw(batch)
        kg = inputs.generic.k
        pg = _probs(inputs.model, gimg, chunk) >= thr
        no_rejections = [[None] * kg for _ in range(b)]
        gadm = _admitted(inputs.teacher, t_ref, gimg, b, kg, inputs.gate, no_rejections, chunk)
        g_verdict, g_changes, _gc = _consistency(pg, pred.repeat_interleave(kg, 0), gadm)
        put("generic_consistency", g_verdict)
        put("generic_changes", g_changes)
        del gimg

        # TTA views and ensemble members
        views = tta_plan(batch.image.shape[2:], inputs.tta_views, g_tta)
        tta = [undo_view(_probs(inputs.model, apply_view(batch.image, m, s), chunk) >= thr, m, s) for m, s in views]
        put("tta_disagreement", 1 - S.pairwise_dice(torch.stack(tta)))
        put("ensemble_disagreement", 1 - S.pairwise_dice(torch.stack([_probs(mb, batch.image, chunk) >= thr for mb in inputs.members])))

        # the held-out shifts: the failures
        for h, snb in zip(inputs.shifts, shift_nbs):
            shifted, _pl, _rej = snb.draw(batch)
            psh = _probs(inputs.model, shifted.image, chunk) >= thr
            dice_sh = S.mask_dice(psh, (shifted.mask[:, :1] >= 0.5).cpu())  # type: ignore[index]
            fails[h.name]["flip"].append(S.dice_drop_failure(dice_clean, dice_sh, MIN_DROP))
            fails[h.name]["wrong"].append(1 - dice_sh)
            fails[h.name]["dice"].append(dice_sh)
        if progress is not None:
            progress(min(start + step, len(cases)), len(cases))

    out = SeedTables("segmentation")
    out.signals = {name: torch.cat(v, 0) for name, v in parts.items()}
    out.failures = {h: {kind: torch.cat(v, 0) for kind, v in d.items()} for h, d in fails.items()}
    out.stats = {"k": k, "scan_ops": [op.id for op in scan.ops], "scan_levels": scan.levels}
    return out
