"""Measure ``mri.lesion_volume``: Seg-CFT fine-tuned vs untuned vs regressor-guided generators.

On the ``mri.demo`` training sites (left-right flipped copies added) fit once the measuring
instruments: a guiding segmentor, a *separate judge segmentor* (its own seed, used only to
measure) and a volume regressor. Per seed: fit the conditional VAE, then fine-tune its decoder
twice — against the guiding segmentor (Seg-CFT) and against the regressor (baseline). Evaluate on the ``val`` split (sites A
and B, never trained on) with every ratio: MAPE and MAE (mL) of the judge's lesion volume
against ratio x its volume of the original, and leakage (share of |change| outside the dilated
lesion), with the editor's region bound (``region_vox``) and without it (``raw``).

    .venv/bin/python scripts/measure_lesion_volume.py --seeds 0 1 2 --out lesion_volume_metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace

import torch


def main(argv: list[str] | None = None) -> int:
    from c3_core.editors.structure_stages import (
        fine_tune_stage,
        generator_stage,
        regressor_measure,
        regressor_stage,
        run_stages,
        segmentor_measure,
        segmentor_stage,
    )
    from c3_core.editors.volume_structure_kernels import voxel_volume_ml
    from c3_core.editors.volume_structure_metrics import evaluate_volume_interventions
    from c3_core.editors.volume_structure_model import _quiet, check_volume_data, volume_statistics
    from c3_core.editors.volume_structure_nets import (
        VolumeCVAE,
        VolumeRegressor,
        VolumeSegmentor,
        init_parameters3d,
        init_segmentor3d,
    )
    from c3_mri.editors.lesion_volume import CONFIG, MIN_VOLUME_ML, TUNE, demo_arrays

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cases", type=int, default=24, help="training cases rendered (doubled by the flip)")
    ap.add_argument("--val-cases", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=None, help="epochs of every network (default: the editor's)")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the editor's)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate of every network (default: the editor's)")
    ap.add_argument("--tune-batch-size", type=int, default=None, help="fine-tuning minibatch (default: the editor's)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.7, 0.85, 1.15, 1.3])
    ap.add_argument("--instrument-seed", type=int, default=100, help="seed of the guiding segmentor (judge: +1000, regressor: +2000)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="write the rows and summary as JSON here")
    a = ap.parse_args(argv)

    cfg = CONFIG
    if a.epochs is not None:
        cfg = replace(cfg, gen_epochs=a.epochs, seg_epochs=a.epochs, reg_epochs=a.epochs)
    if a.batch_size is not None:
        cfg = replace(cfg, batch_size=a.batch_size)
    if a.lr is not None:
        cfg = replace(cfg, lr=a.lr)
    tune = TUNE if a.steps is None else replace(TUNE, steps=a.steps, epochs=min(TUNE.epochs, a.steps))
    if a.tune_batch_size is not None:
        tune = replace(tune, batch_size=a.tune_batch_size)
    t0 = time.time()
    u, m, spacing = demo_arrays("train", a.cases, cfg, flip=True)
    uv, mv, _ = demo_arrays("val", a.val_cases, cfg)
    check_volume_data(u, m, cfg)
    dev = torch.device(a.device)
    u, m, uv, mv = u.to(dev), m.to(dev), uv.to(dev), mv.to(dev)
    frac = m.flatten(2).mean(2)
    mean, std = volume_statistics(frac)
    voxel_ml = voxel_volume_ml(spacing, (72, 80, 40), cfg.grid)
    print(f"data: {u.shape[0]} training volumes, {uv.shape[0]} val at grid {cfg.grid} ({voxel_ml * 1000:.0f} mm³/voxel), "
          f"floor {MIN_VOLUME_ML} mL, {time.time() - t0:.0f} s", flush=True)

    def seg_make() -> VolumeSegmentor:
        return _quiet(lambda: VolumeSegmentor(cfg))

    # the measuring instruments, fitted once: the guiding segmentor, the judge (its own seed, used
    # only to measure) and the regressor of the baseline
    ts = time.time()

    def progress(n: str, e: int, loss: float) -> None:
        print(f"  {n} epoch {e}: {loss:.4f} ({time.time() - ts:.0f} s)", flush=True)

    def stages_for(g: torch.Generator, which: str) -> list:
        return {
            "seg": [("seg", lambda d: segmentor_stage(seg_make, init_segmentor3d, u, m, cfg.seg_epochs_effective(), cfg.batch_size, cfg.lr, g,
                                                            patch=cfg.seg_patch))],
            "judge": [("judge", lambda d: segmentor_stage(seg_make, init_segmentor3d, u, m, cfg.seg_epochs_effective(), cfg.batch_size,
                                                          cfg.lr, g, patch=cfg.seg_patch))],
            "reg": [("reg", lambda d: regressor_stage(lambda: _quiet(lambda: VolumeRegressor(cfg)), init_parameters3d, u, frac, mean, std,
                                                      cfg.reg_epochs, cfg.batch_size, cfg.lr, g))],
        }[which]  # fmt: skip

    inst = {}
    for which, s in (("seg", a.instrument_seed), ("judge", a.instrument_seed + 1000), ("reg", a.instrument_seed + 2000)):
        inst.update(run_stages(stages_for(torch.Generator().manual_seed(s), which), torch.Generator().manual_seed(s), progress=progress)[0])
    rows = []
    for seed in a.seeds:
        g = torch.Generator().manual_seed(int(seed))
        stages = [
            ("gen", lambda d, g=g: generator_stage(lambda: _quiet(lambda: VolumeCVAE(cfg)), init_parameters3d, u, (frac - mean) / std,
                                                   cfg.beta, cfg.gen_epochs, cfg.batch_size, cfg.lr, g)),
            ("segcft", lambda d, g=g: fine_tune_stage(d["gen"], segmentor_measure(inst["seg"]), u, frac, m, mean, std, tune, g)),
            ("regcft", lambda d, g=g: fine_tune_stage(d["gen"], regressor_measure(inst["reg"], mean, std), u, frac, m, mean, std, tune, g)),
        ]  # fmt: skip
        done, _ = run_stages(stages, g, progress=progress)
        for method, gen in (("untuned", done["gen"]), ("segcft", done["segcft"]), ("regressor", done["regcft"])):
            for bound, rv in (("editor", 1), ("raw", None)):
                r = evaluate_volume_interventions(gen, inst["seg"], inst["judge"], uv, mv, mean, std, structure=0, name="lesion",
                                                  ratios=a.ratios, voxel_ml=voxel_ml, margin=tune.margin, region_vox=rv)  # fmt: skip
                rows.append({"seed": seed, "method": method, "bound": bound, **r.as_row()})
                print(f"  seed {seed} {method:9s} {bound:6s} n={r.n} MAPE {r.mape_percent:.1f} % MAE {r.mae_ml:.4f} mL leakage {r.leakage:.3f}", flush=True)
    summary = {}
    for method in ("untuned", "segcft", "regressor"):
        for bound in ("editor", "raw"):
            sel = [r for r in rows if r["method"] == method and r["bound"] == bound]
            summary[f"{method}/{bound}"] = {
                k: (statistics.mean(r[k] for r in sel), statistics.pstdev(r[k] for r in sel)) for k in ("mape_percent", "mae_ml", "leakage")
            }
    wall = time.time() - t0
    print("\n| method | bound | MAPE % | MAE mL | leakage |\n|---|---|---|---|---|")
    for key, v in summary.items():
        method, bound = key.split("/")
        print(f"| {method} | {bound} | {v['mape_percent'][0]:.1f} ± {v['mape_percent'][1]:.1f} | "
              f"{v['mae_ml'][0]:.4f} ± {v['mae_ml'][1]:.4f} | {v['leakage'][0]:.3f} ± {v['leakage'][1]:.3f} |")
    print(f"\nwall {wall:.0f} s on {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs), load {os.getloadavg()}")
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump({"args": vars(a), "config": cfg.to_json(), "tune": tune.__dict__, "rows": rows, "summary": summary,
                       "wall_s": wall, "loadavg": os.getloadavg()}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
