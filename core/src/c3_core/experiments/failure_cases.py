"""One model's failure signals and held-out-shift failures on one cohort, computed batch by batch.

Everything here is computed from the clean in-domain exam except the failures themselves:

* the gated default neighbourhood (K draws per case; a counterfactual whose plan uses an operator
  of a held-out shift's family is left out of that shift's signals, so the study never sees the
  shift it predicts);
* a severity scan: every single-operator member of the default neighbourhood at each of its
  declared levels (mildest first), one parameter draw per (case, operator);
* a generic-corruption neighbourhood at matched strength
  (:mod:`c3_core.experiments.generic_neighbourhood`), gated by the same teacher;
* TTA views, ensemble members and the model's own probabilities;
* each held-out shift applied once per case; a unit *fails* when its decision under the shift
  differs from its clean decision, and is *wrong under shift* when that decision disagrees with
  the recorded label.

This is the classification pass; segmentation models go through
:mod:`c3_core.experiments.failure_segmentation`, which takes the same :class:`FailureInputs` and
returns the same :class:`SeedTables`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from c3_core.batch import Batch, collate
from c3_core.evaluation.scoring import GateSettings, case_scores, gate_counterfactuals
from c3_core.experiments.generic_neighbourhood import GenericNeighbourhood
from c3_core.metrics import margins as S
from c3_core.model import ModelBundle
from c3_core.neighbourhood import Neighbourhood, NeighbourhoodSpec, Plan
from c3_core.seeding import derive_seed, generator_from_seed
from c3_core.utility import shift_stable_utility


@dataclass
class ScanPlan:
    """The severity scan: operators, their levels (mildest first) and the fractions of their range."""

    ops: list[Any]
    levels: list[list[float]]
    fractions: Tensor  # (O, L); rows shorter than L are padded by repeating the last level

    @classmethod
    def from_spec(cls, spec: NeighbourhoodSpec, make_operator: Callable[..., Any]) -> ScanPlan:
        ops: list[Any] = []
        levels: list[list[float]] = []
        for m in spec.members:
            if len(m.steps) != 1 or not m.steps[0].levels:
                continue
            step = m.steps[0]
            op = make_operator(step.op, step.options)
            if any(o.id == op.id for o in ops):
                continue
            lv = sorted(step.levels, key=lambda v: op.severity.fraction(v))
            ops.append(op)
            levels.append(lv)
        width = max((len(v) for v in levels), default=0)
        levels = [v + [v[-1]] * (width - len(v)) for v in levels]
        fr = torch.tensor([[op.severity.fraction(v) for v in lv] for op, lv in zip(ops, levels)], dtype=torch.float64)
        return cls(ops, levels, fr.reshape(len(ops), width))

    def realise(self, batch: Batch, seed: int, o: int) -> tuple[Batch, list[str | None]]:
        """Operator ``o`` at each of its levels for every case: ``(B * L rows, case-major; rejections)``.

        One parameter draw per (case, operator), made from the same seed at every level, so the
        levels differ only in severity."""
        op, levels = self.ops[o], self.levels[o]
        rep = batch.repeat_interleave(len(levels))
        params = []
        for i in range(batch.size):
            info = batch.case_info(i)
            s = derive_seed(seed, "severity-scan", info.exam_id, op.id)
            params += [op.sample_params(info, generator_from_seed(s), sev) for sev in levels]
        cf = op.apply(rep, params)
        return cf, op.check(rep, cf, params)


@dataclass
class SeedTables:
    """Per-unit arrays of one model seed: ``signals[name]`` and ``failures[shift][kind]``, each
    ``(B, *U)``; ``labels`` the recorded truth (NaN where unknown)."""

    task: str
    signals: dict[str, Tensor] = field(default_factory=dict)
    failures: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def chunked_probabilities(bundle: ModelBundle, image: Tensor, chunk: int) -> Tensor:
    """The model's probabilities on ``image`` (``chunk`` images per forward), float32 on the CPU."""
    with torch.no_grad():
        outs = [bundle.probabilities(bundle.logits(image[i : i + chunk])) for i in range(0, image.shape[0], chunk)]
    return torch.cat(outs, 0).float().cpu()


def _tta_views(image: Tensor, n: int, g: torch.Generator, max_shift: float = 0.03) -> list[Tensor]:
    """View 0 the image; then horizontal flips and whole-pixel shifts of up to ``max_shift`` of the size."""
    views = [image]
    limits = [max(1, round(max_shift * s)) for s in image.shape[2:]]
    for i in range(1, n):
        x = image.flip(-1) if i % 2 else image
        shifts = [int(torch.randint(-m, m + 1, (1,), generator=g)) for m in limits]
        pads: list[int] = []
        for s in reversed(shifts):
            pads += [max(s, 0), max(-s, 0)]
        x = F.pad(x, pads, mode="replicate")
        idx = tuple(slice(max(-s, 0), max(-s, 0) + size) for s, size in zip(shifts, image.shape[2:]))
        views.append(x[(slice(None), slice(None), *idx)])
    return views


def _per_unit(v: Tensor, shape_u: Sequence[int]) -> Tensor:
    """A per-exam value ``(B,)`` repeated for every unit of the exam."""
    return v.view(-1, *([1] * len(shape_u))).expand(v.shape[0], *shape_u) if len(shape_u) else v


def family_mask(plans: Sequence[Sequence[Plan]], family: set[str]) -> Tensor:
    """``(B, K)`` bool: True where counterfactual k of case b uses no operator of ``family``."""
    return torch.tensor([[not ({s.operator.id for s in p.steps} & family) for p in case] for case in plans], dtype=torch.bool)


@dataclass
class FailureInputs:
    """What one seed's pass needs (resolved by the study)."""

    model: ModelBundle
    members: Sequence[ModelBundle]
    teacher: ModelBundle | None
    gate: GateSettings
    spec: NeighbourhoodSpec
    make_operator: Callable[..., Any]
    shifts: Sequence[Any]  # HeldOutShift
    generic: GenericNeighbourhood
    seed: int
    tta_views: int = 8
    chunk: int = 256


def put_severity_margins(put: Callable[[str, Tensor], None], scan: ScanPlan, margins: Tensor, admitted: Tensor,
                         shifts: Sequence[Any], families: Sequence[set[str]]) -> None:
    """``severity_margin|all`` and, per held-out shift, ``severity_margin|<shift>`` over the scanned
    operators outside the shift's family (negated: higher = more likely to fail). ``margins`` and
    ``admitted`` are ``(B, operators, levels, ...)``, as :meth:`ScanPlan.realise` draws them."""
    for tag, fam in [("all", set())] + [(h.name, f) for h, f in zip(shifts, families)]:
        keep = [i for i, op in enumerate(scan.ops) if op.id not in fam]
        if keep:
            put(f"severity_margin|{tag}", -S.severity_margin(margins[:, keep], admitted[:, keep], scan.fractions[keep]))


def compute_seed_tables(cases: Sequence[Any], inputs: FailureInputs, batch_size: int,
                        progress: Callable[[int, int], None] | None = None) -> SeedTables:
    """Every signal and failure of ``cases`` (Samples) for one model seed."""
    from c3_core.experiments.shifts import shift_spec

    task, thr = inputs.model.task, inputs.gate.threshold
    nb = Neighbourhood(inputs.spec.with_overrides(seed=inputs.seed), inputs.make_operator)
    scan = ScanPlan.from_spec(inputs.spec, inputs.make_operator)
    shift_nbs = [Neighbourhood(shift_spec(h).with_overrides(seed=derive_seed(inputs.seed, "held-out", h.name) % 2**31),
                               inputs.make_operator) for h in inputs.shifts]
    families = [set(h.family) for h in inputs.shifts]
    parts: dict[str, list[Tensor]] = {}
    fails: dict[str, dict[str, list[Tensor]]] = {h.name: {"flip": [], "wrong": []} for h in inputs.shifts}
    g_tta = generator_from_seed(derive_seed(inputs.seed, "tta"))
    k = nb.k

    def put(name: str, value: Tensor) -> None:
        parts.setdefault(name, []).append(value)

    for start in range(0, len(cases), batch_size):
        batch = collate(list(cases[start : start + batch_size]))
        b = batch.size
        p = chunked_probabilities(inputs.model, batch.image, inputs.chunk)
        ref = S.reference_decision(task, p, thr)
        m0 = S.decision_margin(task, p, ref, thr)
        put("confidence", -m0)
        put("entropy", S.predictive_entropy(task, p))
        score = case_scores(task, p, batch, thr)

        # default neighbourhood, gated
        # the teacher forwards originals and counterfactuals as drawn, in one tensor
        stacked, cf, plans, rejections = nb.draw_beside(batch, stack=inputs.teacher is not None)
        pcf = chunked_probabilities(inputs.model, cf.image, inputs.chunk)
        decision = gate_counterfactuals(task, batch, cf, b, k, inputs.gate, inputs.teacher, inputs.model.class_names,
                                        inputs.chunk, stacked=stacked)
        admitted = decision.with_extra_rejections(rejections).admitted.bool().cpu()
        mcf = S.decision_margin(task, pcf, ref.repeat_interleave(k, 0), thr).view(b, k, *m0.shape[1:])
        score_cf = case_scores(task, pcf, batch.repeat_interleave(k), thr).view(b, k)
        shape_u = m0.shape[1:]

        for tag, keep in [("all", torch.ones_like(admitted))] + [(h.name, family_mask(plans, fam)) for h, fam in zip(inputs.shifts, families)]:
            adm = admitted & keep
            put(f"c3_margin|{tag}", -S.worst_margin(m0, mcf, adm))
            put(f"c3_flips|{tag}", S.admitted_flips(mcf, adm))
            util = shift_stable_utility(score, score_cf, adm).utility
            put(f"c3_drop|{tag}", _per_unit((score - util).float(), shape_u))
            put(f"n_admitted|{tag}", _per_unit(adm.sum(1).float(), shape_u))

        # severity scan, one operator at a time
        if scan.ops:
            o_n, lv = scan.fractions.shape
            ms_parts, adm_parts = [], []
            for o in range(o_n):
                scf, srej = scan.realise(batch, inputs.seed, o)
                ps = chunked_probabilities(inputs.model, scf.image, inputs.chunk)
                sdec = gate_counterfactuals(task, batch, scf, b, lv, inputs.gate, inputs.teacher, inputs.model.class_names, inputs.chunk)
                adm_parts.append(sdec.with_extra_rejections([srej[i * lv : (i + 1) * lv] for i in range(b)]).admitted.bool().cpu())
                ms_parts.append(S.decision_margin(task, ps, ref.repeat_interleave(lv, 0), thr).view(b, lv, *shape_u))
            ms = torch.stack(ms_parts, 1)
            sadm = torch.stack(adm_parts, 1)
            put_severity_margins(put, scan, ms, sadm, inputs.shifts, families)

        # generic corruptions at matched strength, gated by the same teacher
        gimg, _labels = inputs.generic.draw(batch)
        kg = inputs.generic.k
        gcf = batch.repeat_interleave(kg).replace(image=gimg)
        pg = chunked_probabilities(inputs.model, gimg, inputs.chunk)
        gdec = gate_counterfactuals(task, batch, gcf, b, kg, inputs.gate, inputs.teacher, inputs.model.class_names, inputs.chunk)
        gadm = gdec.admitted.bool().cpu()
        mg = S.decision_margin(task, pg, ref.repeat_interleave(kg, 0), thr).view(b, kg, *shape_u)
        put("generic_margin", -S.worst_margin(m0, mg, gadm))
        put("generic_flips", S.admitted_flips(mg, gadm))

        # TTA and ensemble
        views = _tta_views(batch.image, inputs.tta_views, g_tta)
        put("tta_variance", S.spread(task, torch.stack([chunked_probabilities(inputs.model, v, inputs.chunk) for v in views])))
        put("ensemble_variance", S.spread(task, torch.stack([chunked_probabilities(mb, batch.image, inputs.chunk) for mb in inputs.members])))

        # the held-out shifts: the failures
        for h, snb in zip(inputs.shifts, shift_nbs):
            shifted, _pl, _rej = snb.draw(batch)
            psh = chunked_probabilities(inputs.model, shifted.image, inputs.chunk)
            dsh = S.reference_decision(task, psh, thr)
            if task == "multiclass":
                flip = (dsh != ref).float()
                wrong = (dsh != batch.label.long().cpu()).float()  # type: ignore[union-attr]
            else:
                flip = (dsh != ref).float()
                lab = batch.label.float().cpu()  # type: ignore[union-attr]
                wrong = torch.where(torch.isnan(lab), lab, (dsh.float() != (lab >= 0.5).float()).float())
            fails[h.name]["flip"].append(flip)
            fails[h.name]["wrong"].append(wrong)
        if progress is not None:
            progress(min(start + batch_size, len(cases)), len(cases))

    out = SeedTables(task)
    out.signals = {name: torch.cat(v, 0) for name, v in parts.items()}
    out.failures = {h: {kind: torch.cat(v, 0) for kind, v in d.items()} for h, d in fails.items()}
    out.stats = {"k": k, "scan_ops": [op.id for op in scan.ops], "scan_levels": scan.levels}
    return out
