"""Measure ``mri.lesion_volume``: Seg-CFT fine-tuned vs untuned vs regressor-guided generators.

On the ``mri.demo`` training sites (left-right flipped copies added) fit once the measuring
instruments: a guiding segmentor, a *separate judge segmentor* (its own seed, used only to
measure) and a volume regressor. Per seed: fit the conditional VAE, then fine-tune its decoder
twice — against the guiding segmentor (Seg-CFT) and against the regressor (baseline). Evaluate on the ``val`` split (sites A
and B, never trained on) with every ratio: MAPE and MAE (mL) of the judge's lesion volume
against ratio x its volume of the original, and leakage (share of |change| outside the dilated
lesion), with the editor's region bound (``region_vox``) and without it (``raw``).

Seg-CFT fine-tunes on the editor's objective (``TuneSettings.target`` and ``sharpness``) unless
``--target`` / ``--sharpness`` say otherwise; ``--also TARGET:SHARPNESS ...`` adds Seg-CFT
variants fine-tuned from the same generator in the same run (e.g. ``--also scale:1``, the first
version's objective), so objectives compare on the same instruments and generators. Before the
seeds, the guiding segmentor's soft volume (``sum sigmoid(s * logit)``) is set against its hard
volume (voxels with logit > 0) on the val cases, with where the soft mass lies; each Seg-CFT
variant is also judged by the guide itself (``guide-judged`` rows: did it hit its own target?).

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
from typing import Any

import torch
from torch import Tensor, nn


@torch.no_grad()
def guide_diagnosis(seg: nn.Module, u: Tensor, masks: Tensor, sharpnesses: list[float], shell: int = 2) -> dict[str, Any]:
    """The guiding segmentor's soft vs hard volume (in working voxels) on ``u``: per case the hard
    volume (logit > 0), the true volume (``masks``), and per sharpness ``s`` the soft volume
    ``sum sigmoid(s * logit)`` split into the part on the hard mask, in the ``shell`` voxels around
    it and beyond; with the median logit on and off the hard mask."""
    from c3_core.editors.volume_structure_kernels import dilate

    cases = []
    for x, m in zip(u.split(1), masks.split(1)):
        logit = seg(x)[:, :1].double()
        hard = (logit > 0).double()
        near = dilate(hard, shell) - hard
        far = 1.0 - hard - near
        row: dict[str, Any] = {"hard": float(hard.sum()), "true": float(m[:, :1].sum()),
                               "logit_median_on": float(logit[hard > 0].median()) if bool(hard.any()) else float("nan"),
                               "logit_median_off": float(logit[hard == 0].median())}  # fmt: skip
        for s in sharpnesses:
            p = torch.sigmoid(s * logit)
            row[f"soft_s{s:g}"] = {"total": float(p.sum()), "on": float((p * hard).sum()), "shell": float((p * near).sum()),
                                   "beyond": float((p * far).sum())}  # fmt: skip
        cases.append(row)
    total = {"hard": sum(c["hard"] for c in cases), "true": sum(c["true"] for c in cases)}
    for s in sharpnesses:
        k = f"soft_s{s:g}"
        total[k] = {part: sum(c[k][part] for c in cases) for part in ("total", "on", "shell", "beyond")}
    return {"shell_voxels": shell, "cases": cases, "total": total}


def print_diagnosis(d: dict[str, Any], sharpnesses: list[float]) -> None:
    t = d["total"]
    print(f"guide on the val cases (working voxels): hard volume {t['hard']:.0f}, true {t['true']:.0f}", flush=True)
    for s in sharpnesses:
        k = f"soft_s{s:g}"
        v = t[k]
        print(f"  sigmoid({s:g} logit): soft {v['total']:.1f} = {v['total'] / max(t['hard'], 1e-9):.2f} x hard; on the hard mask "
              f"{v['on']:.1f}, within {d['shell_voxels']} voxels {v['shell']:.1f}, beyond {v['beyond']:.1f}", flush=True)
    for i, c in enumerate(d["cases"]):
        parts = ", ".join(f"s{s:g} {c[f'soft_s{s:g}']['total']:.1f} (beyond {c[f'soft_s{s:g}']['beyond']:.1f})" for s in sharpnesses)
        print(f"  case {i}: hard {c['hard']:.0f}, true {c['true']:.0f}, median logit on {c['logit_median_on']:.2f} / off "
              f"{c['logit_median_off']:.2f}; soft {parts}", flush=True)


@torch.no_grad()
def achieved_ratios(gen: nn.Module, guide: nn.Module, judge: nn.Module, u: Tensor, mean: Tensor, std: Tensor, ratios: list[float],
                    region_vox: int | None = 1) -> dict[str, float]:
    """Per asked ratio, the mean achieved one, ``judge volume of the edit / judge volume of the
    original`` over the cases the judge segments (the editor's edit, as in the evaluation), and the
    generator's raw change ``decode(z, c') - decode(z, c)`` averaged on the guide's lesion voxels
    (``<r> on``) and on the other voxels (``<r> off``), in model units."""
    from c3_core.editors.volume_structure_kernels import hard_voxels, region_weight

    out: dict[str, list[float]] = {f"{r:g}{part}": [] for r in ratios for part in ("", " on", " off")}
    for x in u.split(1):
        g_logits = guide(x)
        frac = hard_voxels(g_logits).to(x.dtype) / float(g_logits[0, 0].numel())
        base = float(hard_voxels(judge(x))[0, 0])
        if base == 0:
            continue
        z = gen.abduct(x)
        recon = gen.decode(z, (frac - mean) / std)
        weight = 1.0 if region_vox is None else region_weight(g_logits[:, :1] > 0, region_vox)
        for r in ratios:
            change = gen.decode(z, (frac * r - mean) / std) - recon
            out[f"{r:g}"].append(float(hard_voxels(judge(x + change * weight))[0, 0]) / base)
            lesion = g_logits[:, :1] > 0
            if bool(lesion.any()):
                out[f"{r:g} on"].append(float(change[lesion].mean()))
            out[f"{r:g} off"].append(float(change[~lesion].mean()))
    return {k: statistics.mean(v) if v else float("nan") for k, v in out.items()}


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and population sd (NaN, NaN when any value is NaN: a seed with nothing to judge)."""
    if any(v != v for v in values):
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.pstdev(values)


def parse_variant(text: str) -> tuple[str, float]:
    """``"TARGET:SHARPNESS"`` (e.g. ``scale:1``) -> ``("scale", 1.0)``."""
    target, _, sharp = text.partition(":")
    if target not in ("scale", "shift") or not sharp:
        raise argparse.ArgumentTypeError(f"expected TARGET:SHARPNESS with TARGET scale or shift, got {text!r}")
    return target, float(sharp)


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
    ap.add_argument("--tune-lr", type=float, default=None, help="fine-tuning peak learning rate (default: the editor's)")
    ap.add_argument("--tune-batch-size", type=int, default=None, help="fine-tuning minibatch (default: the editor's)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.7, 0.85, 1.15, 1.3])
    ap.add_argument("--target", choices=("scale", "shift"), default=TUNE.target, help=f"Seg-CFT target (default: the editor's, {TUNE.target})")
    ap.add_argument("--sharpness", type=float, default=TUNE.sharpness, help=f"Seg-CFT measure sigmoid(s * logit) (default: the editor's, {TUNE.sharpness:g})")
    ap.add_argument("--also", type=parse_variant, nargs="*", default=[], metavar="TARGET:SHARPNESS",
                    help="further Seg-CFT variants from the same generators (e.g. scale:1, the first version)")
    ap.add_argument("--diagnose-sharpness", type=float, nargs="+", default=[1.0, 4.0, 8.0], help="sharpnesses of the guide diagnosis")
    ap.add_argument("--instrument-seed", type=int, default=100, help="seed of the guiding segmentor (judge: +1000, regressor: +2000)")
    ap.add_argument("--eval-on-train", action="store_true",
                    help="evaluate on the first --val-cases training volumes instead of val (does the fine-tuning fit at all?)")
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
    if a.tune_lr is not None:
        tune = replace(tune, lr=a.tune_lr)
    tune = replace(tune, target=a.target, sharpness=a.sharpness)
    variants = {"segcft": tune}
    for target, sharp in a.also:
        name = f"segcft[{target}:{sharp:g}]"
        if (target, sharp) != (tune.target, tune.sharpness):
            variants[name] = replace(tune, target=target, sharpness=sharp)
    t0 = time.time()
    u, m, spacing = demo_arrays("train", a.cases, cfg, flip=True)
    uv, mv, _ = demo_arrays("val", a.val_cases, cfg)
    if a.eval_on_train:
        uv, mv = u[: a.val_cases], m[: a.val_cases]
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
    sharps = sorted({*a.diagnose_sharpness, *(v.sharpness for v in variants.values())})
    diagnosis = {"val": guide_diagnosis(inst["seg"], uv, mv, sharps), "train": guide_diagnosis(inst["seg"], u, m, sharps)["total"]}
    print_diagnosis(diagnosis["val"], sharps)
    t = diagnosis["train"]
    print(f"  (training volumes: hard {t['hard']:.0f}, true {t['true']:.0f}, "
          + ", ".join(f"soft s{s:g} {t[f'soft_s{s:g}']['total']:.1f}" for s in sharps) + ")", flush=True)
    print("Seg-CFT variants: " + ", ".join(f"{k} (target {v.target}, sharpness {v.sharpness:g})" for k, v in variants.items()), flush=True)
    rows: list[dict[str, Any]] = []
    achieved: list[dict[str, Any]] = []
    for seed in a.seeds:
        g = torch.Generator().manual_seed(int(seed))
        gen_stage = ("gen", lambda d, g=g: generator_stage(lambda: _quiet(lambda: VolumeCVAE(cfg)), init_parameters3d, u, (frac - mean) / std,
                                                           cfg.beta, cfg.gen_epochs, cfg.batch_size, cfg.lr, g))  # fmt: skip
        done, _ = run_stages([gen_stage], g, progress=progress)
        start = g.get_state()
        for name, vt in variants.items():  # every variant draws the same minibatches and ratios
            gv = torch.Generator()
            gv.set_state(start)
            stage = (name, lambda d, vt=vt, gv=gv, gen=done["gen"]: fine_tune_stage(gen, segmentor_measure(inst["seg"], vt.sharpness), u, frac,
                                                                                    m, mean, std, vt, gv))  # fmt: skip
            done.update(run_stages([stage], gv, progress=progress)[0])
        g.set_state(gv.get_state())  # the regressor-guided fine-tuning then draws what it did when Seg-CFT ran before it on g
        reg_stage = ("regcft", lambda d, g=g, gen=done["gen"]: fine_tune_stage(gen, regressor_measure(inst["reg"], mean, std), u, frac, m, mean, std,
                                                              replace(tune, target="scale", sharpness=1.0), g))  # fmt: skip
        done.update(run_stages([reg_stage], g, progress=progress)[0])
        evals = []
        for name, key in (("untuned", "gen"), ("regressor", "regcft"), *((v, v) for v in variants)):
            evals.append((name, done[key], inst["judge"], (("editor", 1), ("raw", None))))
            evals.append((name, done[key], inst["seg"], (("guide-judged", 1),)))
            for who in ("judge", "seg"):
                ach = achieved_ratios(done[key], inst["seg"], inst[who], uv, mean, std, a.ratios)
                achieved.append({"seed": seed, "method": name, "by": "guide" if who == "seg" else "judge", **ach})
                print(f"  seed {seed} {name:18s} achieved by the {'guide' if who == 'seg' else 'judge'}: "
                      + ", ".join(f"{k} -> {v:.2f}" if " " not in k else f"{k} {v:+.3f}" for k, v in ach.items()), flush=True)
        for method, gen, judge, bounds in evals:
            for bound, rv in bounds:
                r = evaluate_volume_interventions(gen, inst["seg"], judge, uv, mv, mean, std, structure=0, name="lesion",
                                                  ratios=a.ratios, voxel_ml=voxel_ml, margin=tune.margin, region_vox=rv)  # fmt: skip
                rows.append({"seed": seed, "method": method, "bound": bound, **r.as_row()})
                print(f"  seed {seed} {method:18s} {bound:12s} n={r.n} MAPE {r.mape_percent:.1f} % MAE {r.mae_ml:.4f} mL "
                      f"leakage {r.leakage:.3f} ({time.time() - t0:.0f} s)", flush=True)
    summary = {}
    for method in ("untuned", "regressor", *variants):
        for bound in ("editor", "raw", "guide-judged"):
            sel = [r for r in rows if r["method"] == method and r["bound"] == bound]
            if not sel:
                continue
            summary[f"{method}/{bound}"] = {k: mean_sd([r[k] for r in sel]) for k in ("mape_percent", "mae_ml", "leakage")}
    wall = time.time() - t0
    print("\n| method | bound | MAPE % | MAE mL | leakage |\n|---|---|---|---|---|")
    for key, v in summary.items():
        method, bound = key.split("/")
        print(f"| {method} | {bound} | {v['mape_percent'][0]:.1f} ± {v['mape_percent'][1]:.1f} | "
              f"{v['mae_ml'][0]:.4f} ± {v['mae_ml'][1]:.4f} | {v['leakage'][0]:.3f} ± {v['leakage'][1]:.3f} |")
    print(f"\nwall {wall:.0f} s on {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs), load {os.getloadavg()}")
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump({"args": vars(a), "config": cfg.to_json(), "tune": {k: v.__dict__ for k, v in variants.items()}, "rows": rows,
                       "achieved": achieved, "summary": summary, "diagnosis": diagnosis, "wall_s": wall, "loadavg": os.getloadavg()}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
