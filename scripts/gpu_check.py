"""Check every installed operator's GPU path against its CPU path (run on a machine with CUDA).

For each registered operator, two cases of its modality's demo cohort are taken, parameters are
drawn once on the CPU (severity: the operator's extreme), and ``apply`` runs on the CPU and on
``cuda``. Reported per operator: whether the output stayed on the device, dtype and shape kept,
and the largest difference relative to the image's range. Random draws inside ``apply`` come from
per-case generators on the batch's device, so stochastic operators (noise, speckle) are compared
on their deterministic parts only where the CPU and CUDA generators differ: those rows say so.

Usage: ``python scripts/gpu_check.py [--device cuda] [--json OUT.json]``; exit 1 if any operator
raised or left the device.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any


def main(argv: list[str] | None = None) -> int:
    import torch

    from c3_core.batch import collate
    from c3_core.plugins.host import PluginHost
    from c3_core.seeding import generator_from_seed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    host = PluginHost().load()
    rows: list[dict[str, Any]] = []
    batches: dict[str, Any] = {}
    for c in host.registry("operators"):
        op = c.load()()
        row: dict[str, Any] = {"id": c.id}
        try:
            if op.modality == "ct" and "ct" not in batches:  # no CT demo cohort: the shipped CT examples
                from c3_cxr.data.ct_examples import ct_batch

                batches["ct"] = ct_batch(spatial_dims=3, size=96, depth=6)
            if op.modality not in batches:
                demo = host.demo_dataset(op.modality).load()(split="test")
                batches[op.modality] = collate([demo[0], demo[1]])
            batch = batches[op.modality]
            if batch.domain != op.domain:
                row["status"] = f"skipped: demo is {batch.domain.value}, operator takes {op.domain.value}"
                rows.append(row)
                continue
            params = [op.sample_params(batch.case_info(i), generator_from_seed(i), op.severity.extreme) for i in range(batch.size)]
            cpu = op.apply(batch, params).image
            gpu_batch = batch.to(args.device)
            gpu = op.apply(gpu_batch, params).image
            span = float(cpu.max() - cpu.min()) or 1.0
            row.update(
                on_device=gpu.device.type == torch.device(args.device).type,
                dtype_kept=gpu.dtype == gpu_batch.image.dtype,
                shape_kept=tuple(gpu.shape) == tuple(gpu_batch.image.shape),
                max_rel_diff=float((gpu.cpu().double() - cpu.double()).abs().max()) / span,
                status="ok",
            )
        except Exception as exc:  # noqa: BLE001 - reported per operator
            row["status"] = f"error: {type(exc).__name__}: {exc}"
            row["trace"] = traceback.format_exc(limit=3)
        rows.append(row)
    bad = 0
    for r in rows:
        if r["status"] == "ok":
            flag = "" if r["on_device"] and r["dtype_kept"] and r["shape_kept"] else "  <-- LEFT DEVICE / CHANGED DTYPE"
            bad += bool(flag)
            print(f"{r['id']:<24} ok   max |gpu-cpu| / range = {r['max_rel_diff']:.2e}{flag}")
        else:
            bad += r["status"].startswith("error")
            print(f"{r['id']:<24} {r['status']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
