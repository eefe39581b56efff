"""Seg-CFT experiment on the CXR demo cohort: segmentor-guided vs regressor-guided vs untuned generator.

1. Working grid 64 x 64 (model units: log attenuation / 4). Train on the demo training split, per
   seed: the guiding segmentor (lungs, heart), an area regressor (the baseline's guide), the
   conditional VAE; then two fine-tuned copies of its decoder from the same start and draws —
   *Seg-CFT* against the frozen segmentor's soft areas, *regressor-guided* against the regressor.
2. A *judge* segmentor trained with another seed (never used for guidance) measures every
   counterfactual of the held-out demo test split: each structure, ratios 0.8, 0.9, 1.1, 1.2.
3. Report per structure: MAPE (%), MAE (mm²) and leakage (share of |change| outside the dilated
   structure), for an edit that changes nothing, the untuned generator, both fine-tuned ones, and
   Seg-CFT as the editor applies it (the change blended to zero beyond ``region_px + 4`` px of the
   guiding segmentor's mask).

    python plugins/cxr/scripts/structure_experiment.py --seeds 0 1 2 --out structure.json [--device cuda]

``--target scale --sharpness 1`` fine-tunes as the first version did (``ratio`` times the plain
soft area) instead of as the editor does (``FineTuneConfig``: the soft area of
``sigmoid(4 * logit)`` moved by ``ratio - 1`` times the segmented area), to compare.

Everything is seeded; on one device the same arguments give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from c3_core.editors.structure import (
    area_statistics,
    evaluate_interventions,
    fine_tune,
    freeze,
    pixel_area_mm2,
    region_weight,
    regressor_measure,
    segmentor_measure,
    train_generator,
    train_regressor,
    train_segmentor,
)
from c3_cxr.editors.structure import CONFIG, STRUCTURES, TUNE, demo_arrays

RATIOS = (0.8, 0.9, 1.1, 1.2)
JUDGE_SEED_OFFSET = 1000
REGION_PX = 4  # the structure editors' default region_px


NO_CHANGE = "no change"
VARIANTS = (NO_CHANGE, "untuned", "regressor-guided", "Seg-CFT", f"Seg-CFT, editor (region_px {REGION_PX})")


def run_seed(seed: int, device: str, n_train: int | None, n_test: int | None, target: str = TUNE.target,
             sharpness: float = TUNE.sharpness) -> list[dict]:
    """Every row (variant x structure) of one seed."""
    tune = replace(TUNE, target=target, sharpness=sharpness)
    u, masks, _ = demo_arrays("train", CONFIG.size, n_train)
    ut, mt, spacing_t = demo_arrays("test", CONFIG.size, n_test)
    u, masks, ut, mt = (t.to(device) for t in (u, masks, ut, mt))
    frac, frac_t = masks.flatten(2).mean(2), mt.flatten(2).mean(2)
    mean, std = area_statistics(frac)
    g = torch.Generator().manual_seed(seed)
    seg = train_segmentor(u, masks, CONFIG, g)
    reg = train_regressor(u, frac, CONFIG, g)
    gen = train_generator(u, frac, mean, std, CONFIG, g)
    state = g.get_state()
    tuned_seg = fine_tune(gen, segmentor_measure(seg, tune.sharpness), u, frac, masks, mean, std, tune, g)
    g.set_state(state)  # the same minibatches, structures and ratios for the baseline
    tuned_reg = fine_tune(gen, regressor_measure(reg), u, frac, masks, mean, std, tune, g)
    judge = freeze(train_segmentor(u, masks, CONFIG, torch.Generator().manual_seed(seed + JUDGE_SEED_OFFSET)))
    px_mm2 = pixel_area_mm2(spacing_t, _image_shape(), CONFIG.size)
    with torch.no_grad():  # what the editor does by default: the change kept near the guide's segmentation
        guide = seg(ut) > 0
    bound = torch.cat([region_weight(guide[:, k : k + 1], REGION_PX) for k in range(len(STRUCTURES))], 1)
    rows = []
    variants = ((NO_CHANGE, gen, torch.zeros_like(bound)), ("untuned", gen, None), ("regressor-guided", tuned_reg, None),
                ("Seg-CFT", tuned_seg, None), (VARIANTS[-1], tuned_seg, bound))  # fmt: skip
    for variant, net, b in variants:
        net.eval()
        for m in evaluate_interventions(net, judge, ut, frac_t, mt, mean, std, structures=STRUCTURES,
                                        ratios=RATIOS, pixel_mm2=px_mm2, margin_px=tune.margin_px, bound=b):  # fmt: skip
            rows.append({"seed": seed, "variant": variant, **m.as_row()})
    return rows


def _mean_sd(vals: list[float], digits: int) -> str:
    """``mean`` (one value) or ``mean ± sd`` over seeds, rounded to ``digits``."""
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _image_shape() -> tuple[int, int]:
    from c3_cxr.data.demo import ChestDemo

    return tuple(ChestDemo("test", n=1)[0].image.shape[-2:])  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-train", type=int, default=None, help="only the first N training cases")
    ap.add_argument("--n-test", type=int, default=None, help="only the first N test cases")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the rows (not overwritten)")
    ap.add_argument("--target", choices=("shift", "scale"), default=TUNE.target,
                    help="fine-tuning target (default: the editor's; scale: the first version's)")
    ap.add_argument("--sharpness", type=float, default=TUNE.sharpness,
                    help="the guiding soft area is mean sigmoid(SHARPNESS * logit) (default: the editor's; 1: the first version's)")
    args = ap.parse_args(argv)
    if args.out is not None and args.out.exists():
        print(f"error: --out {args.out} exists; choose another", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = [r for s in args.seeds for r in run_seed(s, args.device, args.n_train, args.n_test, args.target, args.sharpness)]
    print("| structure | generator | MAPE % | MAE mm² | leakage | seeds |")
    print("|---|---|---|---|---|---|")
    for structure in STRUCTURES:
        for variant in VARIANTS:
            sel = [r for r in rows if r["structure"] == structure and r["variant"] == variant]
            cells = [_mean_sd([r[k] for r in sel], d) for k, d in (("mape_percent", 1), ("mae_mm2", 0), ("leakage", 3))]
            print(f"| {structure} | {variant} | {' | '.join(cells)} | {len(sel)} |")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.out is not None:
        args.out.write_text(json.dumps({"ratios": RATIOS, "target": args.target, "sharpness": args.sharpness, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
